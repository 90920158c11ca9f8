//! Fully connected layer: y = x W + b (or x W without a bias).
//! Shapes: x `[N, in]`, W `[in, out]`, b `[out]` -> y `[N, out]`.
//!   dX = dY W^T,   dW = X^T dY,   db = sum over the batch of dY.
//! dW is taken chunk by chunk of images (`chunks::DENSE_IMAGES_PER_CHUNK`), the partials added
//! in order, so that the ranks of a distributed step can continue one another's sum; in one
//! process the same sums are taken a block of dW's rows at a time, in cache.

use rayon::prelude::*;

use super::gemm::{gemm as gemm_one_thread, gemm_parallel as gemm};
use crate::chunks::DENSE_IMAGES_PER_CHUNK as CHUNK;
use crate::error::{Error, Result};
use crate::ops::Precision;
use crate::tensor::Tensor;
use crate::threads::with_thread_scratch;

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
    dense_forward_into(x, w, Some(b), Precision::F32, &mut y)?;
    Ok(y)
}

/// `dense_forward` into a reused buffer; with `b` None, y = x W. `precision` is the products'
/// (`ops::precision`).
pub fn dense_forward_into(x: &Tensor, w: &Tensor, b: Option<&Tensor>, precision: Precision, y: &mut Tensor) -> Result<()> {
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
    gemm(precision, n, fin, fout, x.data(), false, w.data(), false, beta, y.data_mut());
    Ok(())
}

/// Returns (dX, dW, db).
pub fn dense_backward(x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (mut dx, mut dw, mut db) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
    dense_backward_into(x, w, dy, Precision::F32, Some(&mut dx), &mut dw, Some(&mut db))?;
    Ok((dx, dw, db))
}

/// `dense_backward` into reused buffers; with `dx` None the input gradient is skipped, with `db`
/// None (a layer without a bias) the bias gradient.
pub fn dense_backward_into(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    precision: Precision,
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
        gemm(precision, n, fout, fin, dy.data(), false, w.data(), true, 0.0, dx.data_mut());
    }
    dw.resize(&[fin, fout]);
    if crate::dist::in_group() {
        weight_grad_all_partials(x.data(), dy.data(), (n, fin, fout), precision, dw.data_mut());
    } else {
        weight_grad_by_row_blocks(x.data(), dy.data(), (n, fin, fout), precision, dw.data_mut());
    }
    if let Some(db) = db {
        db.resize(&[fout]);
        crate::dist::ordered_fold(&mut [db.data_mut()], |acc| {
            for row in dy.data().chunks_exact(fout) {
                acc[0].iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
        });
    }
    Ok(())
}

/// dW = sum over chunks of images of X_c^T dY_c, for a distributed step: each chunk's partial by
/// its own GEMM, all of them before the step waits for the previous ranks' sum, then added in
/// chunk order.
fn weight_grad_all_partials(x: &[f32], dy: &[f32], (n, fin, fout): (usize, usize, usize), precision: Precision, dw: &mut [f32]) {
    let chunks = n.div_ceil(CHUNK);
    PARTIALS.with(|p| {
        let mut partials = p.borrow_mut();
        partials.resize(chunks * fin * fout, 0.0);
        for (c, part) in partials.chunks_exact_mut(fin * fout).enumerate() {
            let rows = c * CHUNK..n.min((c + 1) * CHUNK);
            let (x_c, dy_c) = (&x[rows.start * fin..rows.end * fin], &dy[rows.start * fout..rows.end * fout]);
            gemm(precision, fin, rows.len(), fout, x_c, true, dy_c, false, 0.0, part);
        }
        crate::dist::ordered_fold(&mut [dw], |acc| {
            for part in partials.chunks_exact(fin * fout) {
                acc[0].iter_mut().zip(part).for_each(|(a, v)| *a += v);
            }
        });
    });
}

/// The rows of dW a task computes at a time: a block's partial (128 x fout floats) stays in the
/// core's cache while it is added.
const DW_ROWS_PER_BLOCK: usize = 128;

/// dW in one process, the same sums as `weight_grad_all_partials` (each chunk's partial by a
/// GEMM, added in chunk order to zero), so the same bits, but block of rows by block of rows in
/// parallel: a block's partials are added while still in cache, where whole partials (4 MB each
/// for the seed network's 4096 x 256 weight) went through memory twice.
fn weight_grad_by_row_blocks(x: &[f32], dy: &[f32], (n, fin, fout): (usize, usize, usize), precision: Precision, dw: &mut [f32]) {
    dw.par_chunks_mut(DW_ROWS_PER_BLOCK * fout).enumerate().for_each(|(block, dw_block)| {
        let first = block * DW_ROWS_PER_BLOCK;
        let block_rows = dw_block.len() / fout;
        dw_block.fill(0.0);
        with_thread_scratch(|x_block, part| {
            part.resize(block_rows * fout, 0.0);
            for c in 0..n.div_ceil(CHUNK) {
                let images = c * CHUNK..n.min((c + 1) * CHUNK);
                // X_c's columns first..first + block_rows, one image's values after another: the
                // block of X_c^T that this block of dW multiplies, stored transposed.
                x_block.clear();
                for image in images.clone() {
                    x_block.extend_from_slice(&x[image * fin + first..][..block_rows]);
                }
                let dy_c = &dy[images.start * fout..images.end * fout];
                gemm_one_thread(precision, block_rows, images.len(), fout, x_block, true, dy_c, false, 0.0, part);
                dw_block.iter_mut().zip(part.iter()).for_each(|(a, v)| *a += v);
            }
        });
    });
}

thread_local! {
    /// The partial weight gradients of `dense_backward_into`, reused from step to step.
    static PARTIALS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
