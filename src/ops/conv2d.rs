//! 2-D convolution, the fast path: im2col + GEMM, parallel over the batch.
//!
//! Shapes: x [N, H, W, C_in], w [kh, kw, C_in, C_out] (HWIO), b [C_out] -> y [N, oh, ow, C_out].
//!   forward:  y[n, i, j, o] = b[o] + sum_{ki, kj, c} x_pad[n, i*sh + ki, j*sw + kj, c] * w[ki, kj, c, o]
//!             per image: Y[oh*ow, C_out] = col(x)[oh*ow, K] · W[K, C_out],  K = kh*kw*C_in
//!   backward: dW = sum_n col(x_n)^T · dY_n     (sum of dZ times the input patch)
//!             db = sum over n, i, j of dY      (sum of dZ)
//!             dX = col2im(dY_n · W^T)          (scatter of W times dZ)
//! The backward pass recomputes col(x) instead of keeping it: it is kh*kw times the input.
//! The plain-loop twin, used by the tests as the oracle, is `conv2d_ref`.

use rayon::prelude::*;

use super::gemm::gemm;
use super::im2col::{col2im, im2col};
use super::window::{Geometry, Window};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Images per parallel task in the backward pass. Fixed (not derived from the thread count) so
/// that the weight-gradient partial sums, and hence the result, are the same on any machine.
pub const BACKWARD_CHUNK: usize = 8;

/// Gradients of a convolution.
#[derive(Debug)]
pub struct Conv2dGrads {
    pub d_input: Tensor,
    pub d_weight: Tensor,
    pub d_bias: Tensor,
}

/// Checks the shapes of input, weight and bias against each other and resolves the window.
/// Returns the geometry and (n, c_in, c_out).
pub fn conv2d_geometry(x: &[usize], w: &[usize], b: Option<&[usize]>, window: &Window) -> Result<(Geometry, usize, usize, usize)> {
    let op = "conv2d";
    let [n, ih, iw, c_in] = x[..] else {
        return Err(Error::shape(op, "input of rank 4 [N, H, W, C_in]", format!("{x:?}")));
    };
    let [kh, kw, wc_in, c_out] = w[..] else {
        return Err(Error::shape(op, "weight of rank 4 [kh, kw, C_in, C_out]", format!("{w:?}")));
    };
    if (kh, kw) != (window.kh, window.kw) {
        return Err(Error::shape(op, format!("weight kernel {}x{}", window.kh, window.kw), format!("{kh}x{kw}")));
    }
    if wc_in != c_in {
        return Err(Error::invalid(
            op,
            format!("channel mismatch: input {x:?} has {c_in} channels but weight {w:?} expects {wc_in}"),
        ));
    }
    if let Some(b) = b {
        if b != [c_out] {
            return Err(Error::shape(op, format!("bias [{c_out}]"), format!("{b:?}")));
        }
    }
    let g = Geometry::new(op, ih, iw, window)?;
    Ok((g, n, c_in, c_out))
}

/// y = conv(x, w) + b, optionally followed by ReLU in the same pass over memory.
pub fn conv2d_forward(x: &Tensor, w: &Tensor, b: &Tensor, window: &Window, relu: bool) -> Result<Tensor> {
    let (g, n, c_in, c_out) = conv2d_geometry(x.shape(), w.shape(), Some(b.shape()), window)?;
    let (m, k) = (g.oh * g.ow, g.kh * g.kw * c_in);
    let mut y = Tensor::zeros(&[n, g.oh, g.ow, c_out]);
    let in_size = g.ih * g.iw * c_in;
    y.data_mut().par_chunks_mut(m * c_out).enumerate().for_each_init(
        || vec![0.0f32; m * k],
        |col, (img, y_img)| {
            im2col(&x.data()[img * in_size..][..in_size], &g, c_in, col);
            for row in y_img.chunks_exact_mut(c_out) {
                row.copy_from_slice(b.data());
            }
            gemm(m, k, c_out, col, false, w.data(), false, 1.0, y_img);
            if relu {
                y_img.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        },
    );
    Ok(y)
}

/// Gradients of a convolution given its input `x`, weight `w` and the output gradient `dy`.
pub fn conv2d_backward(x: &Tensor, w: &Tensor, dy: &Tensor, window: &Window) -> Result<Conv2dGrads> {
    let (g, n, c_in, c_out) = conv2d_geometry(x.shape(), w.shape(), None, window)?;
    if dy.shape() != [n, g.oh, g.ow, c_out] {
        return Err(Error::shape("conv2d backward", format!("dy {:?}", [n, g.oh, g.ow, c_out]), format!("{:?}", dy.shape())));
    }
    let (m, k) = (g.oh * g.ow, g.kh * g.kw * c_in);
    let (in_size, out_size) = (g.ih * g.iw * c_in, m * c_out);
    let mut d_input = Tensor::zeros(x.shape());

    // Each chunk of images yields its own partial dW and db, summed below in chunk order.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = d_input
        .data_mut()
        .par_chunks_mut(BACKWARD_CHUNK * in_size)
        .enumerate()
        .map(|(chunk, dx_chunk)| {
            let mut dw = vec![0.0f32; k * c_out];
            let mut db = vec![0.0f32; c_out];
            let mut col = vec![0.0f32; m * k];
            for (i, dx_img) in dx_chunk.chunks_exact_mut(in_size).enumerate() {
                let img = chunk * BACKWARD_CHUNK + i;
                let dy_img = &dy.data()[img * out_size..][..out_size];
                im2col(&x.data()[img * in_size..][..in_size], &g, c_in, &mut col);
                gemm(k, m, c_out, &col, true, dy_img, false, 1.0, &mut dw);
                for row in dy_img.chunks_exact(c_out) {
                    db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
                }
                // col now becomes d(col) = dY · W^T, then scatters back onto the image.
                gemm(m, c_out, k, dy_img, false, w.data(), true, 0.0, &mut col);
                col2im(&col, &g, c_in, dx_img);
            }
            (dw, db)
        })
        .collect();

    let mut d_weight = Tensor::zeros(w.shape());
    let mut d_bias = Tensor::zeros(&[c_out]);
    for (dw, db) in &partials {
        d_weight.data_mut().iter_mut().zip(dw).for_each(|(a, v)| *a += v);
        d_bias.data_mut().iter_mut().zip(db).for_each(|(a, v)| *a += v);
    }
    Ok(Conv2dGrads { d_input, d_weight, d_bias })
}
