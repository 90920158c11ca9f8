//! Fully connected layer: y = x W + b (or x W without a bias).
//! Shapes: x `[N, in]`, W `[in, out]`, b `[out]` -> y `[N, out]`.
//!   dX = dY W^T,   dW = X^T dY,   db = sum over the batch of dY.

use super::gemm::gemm_parallel as gemm;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn check(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    let (n, fin) = x.dims2("dense")?;
    let (win, fout) = w.dims2("dense")?;
    if fin != win {
        return Err(Error::invalid("dense", format!("input {:?} has {fin} features but weight {:?} expects {win}", x.shape(), w.shape())));
    }
    Ok((n, fin, fout))
}

pub fn dense_forward(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let mut y = Tensor::empty();
    dense_forward_into(x, w, Some(b), &mut y)?;
    Ok(y)
}

/// `dense_forward` into a reused buffer; with `b` None, y = x W.
pub fn dense_forward_into(x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &mut Tensor) -> Result<()> {
    let (n, fin, fout) = check(x, w)?;
    y.resize(&[n, fout]);
    let beta = match b {
        Some(b) if b.shape() != [fout] => return Err(Error::shape("dense", format!("bias [{fout}]"), format!("{:?}", b.shape()))),
        Some(b) => {
            for row in y.data_mut().chunks_exact_mut(fout) {
                row.copy_from_slice(b.data());
            }
            1.0
        }
        None => 0.0,
    };
    gemm(n, fin, fout, x.data(), false, w.data(), false, beta, y.data_mut());
    Ok(())
}

/// Returns (dX, dW, db).
pub fn dense_backward(x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (mut dx, mut dw, mut db) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
    dense_backward_into(x, w, dy, Some(&mut dx), &mut dw, Some(&mut db))?;
    Ok((dx, dw, db))
}

/// `dense_backward` into reused buffers; with `dx` None the input gradient is skipped, with `db`
/// None (a layer without a bias) the bias gradient.
pub fn dense_backward_into(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    dx: Option<&mut Tensor>,
    dw: &mut Tensor,
    db: Option<&mut Tensor>,
) -> Result<()> {
    let (n, fin, fout) = check(x, w)?;
    if dy.shape() != [n, fout] {
        return Err(Error::shape("dense backward", format!("dy [{n}, {fout}]"), format!("{:?}", dy.shape())));
    }
    if let Some(dx) = dx {
        dx.resize(&[n, fin]);
        gemm(n, fout, fin, dy.data(), false, w.data(), true, 0.0, dx.data_mut());
    }
    dw.resize(&[fin, fout]);
    gemm(fin, n, fout, x.data(), true, dy.data(), false, 0.0, dw.data_mut());
    if let Some(db) = db {
        db.resize(&[fout]);
        db.data_mut().fill(0.0);
        for row in dy.data().chunks_exact(fout) {
            db.data_mut().iter_mut().zip(row).for_each(|(a, v)| *a += v);
        }
    }
    Ok(())
}
