//! Max and average pooling, the fast path: NHWC loops with the channel innermost (contiguous),
//! parallel over the batch. TensorFlow semantics for SAME: out = ceil(in / s); padded cells
//! never win a max and are not counted in an average.
//!
//! Shapes: x [N, H, W, C] -> y [N, oh, ow, C].
//!   max:     y = max over the window;        dx[argmax] += dy  (ties: the first cell in
//!            row-major window order wins, as in TensorFlow and PyTorch)
//!   average: y = mean over the window cells inside the image; dx[cell] += dy / count
//! The plain-loop twin used by the tests is `pool_ref`.

use rayon::prelude::*;

use super::window::{Geometry, Padding, Window};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Resolves a pooling window on input shape `x`, returning the geometry and (n, c).
pub fn pool_geometry(op: &str, x: &[usize], window: &Window) -> Result<(Geometry, usize, usize)> {
    let [n, ih, iw, c] = x[..] else {
        return Err(Error::shape(op, "input of rank 4 [N, H, W, C]", format!("{x:?}")));
    };
    if let Padding::Explicit { top, bottom, left, right } = window.padding {
        // A window lying wholly in the padding would have nothing to pool.
        if top.max(bottom) >= window.kh || left.max(right) >= window.kw {
            return Err(Error::invalid(
                op,
                format!("padding {:?} must be smaller than the kernel {}x{}", window.padding, window.kh, window.kw),
            ));
        }
    }
    let g = Geometry::new(op, ih, iw, window)?;
    Ok((g, n, c))
}

/// Max pooling; also returns, for every output value, the index within its image of the input
/// value that won (used by the backward pass).
pub fn max_pool2d_forward(x: &Tensor, window: &Window) -> Result<(Tensor, Vec<u32>)> {
    let (mut y, mut argmax) = (Tensor::empty(), Vec::new());
    max_pool2d_forward_into(x, window, &mut y, &mut argmax)?;
    Ok((y, argmax))
}

/// `max_pool2d_forward` into reused buffers.
pub fn max_pool2d_forward_into(x: &Tensor, window: &Window, y: &mut Tensor, argmax: &mut Vec<u32>) -> Result<()> {
    let (g, n, c) = pool_geometry("max_pool2d", x.shape(), window)?;
    let (in_size, out_size) = (g.ih * g.iw * c, g.oh * g.ow * c);
    y.resize(&[n, g.oh, g.ow, c]);
    argmax.resize(n * out_size, 0);
    y.data_mut()
        .par_chunks_mut(out_size)
        .zip(argmax.par_chunks_mut(out_size))
        .enumerate()
        .for_each(|(img, (y_img, arg_img))| {
            let x_img = &x.data()[img * in_size..][..in_size];
            for oi in 0..g.oh {
                for oj in 0..g.ow {
                    let at = (oi * g.ow + oj) * c;
                    let (best, arg) = (&mut y_img[at..at + c], &mut arg_img[at..at + c]);
                    let mut first = true;
                    for ki in 0..g.kh {
                        let Some(r) = g.in_row(oi, ki) else { continue };
                        for kj in 0..g.kw {
                            let Some(s) = g.in_col(oj, kj) else { continue };
                            let base = (r * g.iw + s) * c;
                            let cell = &x_img[base..base + c];
                            if first {
                                best.copy_from_slice(cell);
                                arg.iter_mut().enumerate().for_each(|(ch, a)| *a = (base + ch) as u32);
                                first = false;
                                continue;
                            }
                            // Selects rather than branches, so the channel loop vectorises.
                            for (ch, ((b, a), &v)) in best.iter_mut().zip(arg.iter_mut()).zip(cell).enumerate() {
                                let take = wins(v, *b);
                                *b = if take { v } else { *b };
                                *a = if take { (base + ch) as u32 } else { *a };
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}

/// Whether `v` replaces the running maximum `best`: strictly greater keeps the first maximum;
/// a NaN always wins so that a diverged input shows in the output instead of vanishing.
#[inline]
pub fn wins(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// Routes each output gradient to the input position that won the max.
pub fn max_pool2d_backward(dy: &Tensor, argmax: &[u32], x_shape: &[usize]) -> Result<Tensor> {
    let mut dx = Tensor::empty();
    max_pool2d_backward_into(dy, argmax, x_shape, &mut dx)?;
    Ok(dx)
}

/// `max_pool2d_backward` into a reused buffer.
pub fn max_pool2d_backward_into(dy: &Tensor, argmax: &[u32], x_shape: &[usize], dx: &mut Tensor) -> Result<()> {
    let n = x_shape[0];
    let in_size: usize = x_shape[1..].iter().product();
    let out_size = dy.len() / n.max(1);
    if argmax.len() != dy.len() || dy.shape()[0] != n {
        return Err(Error::shape("max_pool2d backward", format!("{} gradients", argmax.len()), format!("{:?}", dy.shape())));
    }
    dx.resize(x_shape);
    dx.data_mut().par_chunks_mut(in_size).enumerate().for_each(|(img, dx_img)| {
        dx_img.fill(0.0);
        let dy_img = &dy.data()[img * out_size..][..out_size];
        let arg_img = &argmax[img * out_size..][..out_size];
        for (d, &a) in dy_img.iter().zip(arg_img) {
            dx_img[a as usize] += d;
        }
    });
    Ok(())
}

/// Number of window cells inside the image at output (oi, oj): the average's divisor.
fn inside_count(g: &Geometry, oi: usize, oj: usize) -> usize {
    let rows = (0..g.kh).filter(|&ki| g.in_row(oi, ki).is_some()).count();
    let cols = (0..g.kw).filter(|&kj| g.in_col(oj, kj).is_some()).count();
    rows * cols
}

/// Average pooling over the window cells inside the image.
pub fn avg_pool2d_forward(x: &Tensor, window: &Window) -> Result<Tensor> {
    let mut y = Tensor::empty();
    avg_pool2d_forward_into(x, window, &mut y)?;
    Ok(y)
}

/// `avg_pool2d_forward` into a reused buffer.
pub fn avg_pool2d_forward_into(x: &Tensor, window: &Window, y: &mut Tensor) -> Result<()> {
    let (g, n, c) = pool_geometry("avg_pool2d", x.shape(), window)?;
    let (in_size, out_size) = (g.ih * g.iw * c, g.oh * g.ow * c);
    y.resize(&[n, g.oh, g.ow, c]);
    y.data_mut().par_chunks_mut(out_size).enumerate().for_each(|(img, y_img)| {
        y_img.fill(0.0);
        let x_img = &x.data()[img * in_size..][..in_size];
        for oi in 0..g.oh {
            for oj in 0..g.ow {
                let acc = &mut y_img[(oi * g.ow + oj) * c..][..c];
                for ki in 0..g.kh {
                    let Some(r) = g.in_row(oi, ki) else { continue };
                    for kj in 0..g.kw {
                        let Some(s) = g.in_col(oj, kj) else { continue };
                        acc.iter_mut().zip(&x_img[(r * g.iw + s) * c..][..c]).for_each(|(a, v)| *a += v);
                    }
                }
                let inv = 1.0 / inside_count(&g, oi, oj) as f32;
                acc.iter_mut().for_each(|a| *a *= inv);
            }
        }
    });
    Ok(())
}

/// Spreads each output gradient evenly over the cells it averaged.
pub fn avg_pool2d_backward(dy: &Tensor, x_shape: &[usize], window: &Window) -> Result<Tensor> {
    let mut dx = Tensor::empty();
    avg_pool2d_backward_into(dy, x_shape, window, &mut dx)?;
    Ok(dx)
}

/// `avg_pool2d_backward` into a reused buffer.
pub fn avg_pool2d_backward_into(dy: &Tensor, x_shape: &[usize], window: &Window, dx: &mut Tensor) -> Result<()> {
    let (g, n, c) = pool_geometry("avg_pool2d", x_shape, window)?;
    if dy.shape() != [n, g.oh, g.ow, c] {
        return Err(Error::shape("avg_pool2d backward", format!("dy {:?}", [n, g.oh, g.ow, c]), format!("{:?}", dy.shape())));
    }
    let (in_size, out_size) = (g.ih * g.iw * c, g.oh * g.ow * c);
    dx.resize(x_shape);
    dx.data_mut().par_chunks_mut(in_size).enumerate().for_each(|(img, dx_img)| {
        dx_img.fill(0.0);
        let dy_img = &dy.data()[img * out_size..][..out_size];
        for oi in 0..g.oh {
            for oj in 0..g.ow {
                let inv = 1.0 / inside_count(&g, oi, oj) as f32;
                let d = &dy_img[(oi * g.ow + oj) * c..][..c];
                for ki in 0..g.kh {
                    let Some(r) = g.in_row(oi, ki) else { continue };
                    for kj in 0..g.kw {
                        let Some(s) = g.in_col(oj, kj) else { continue };
                        dx_img[(r * g.iw + s) * c..][..c].iter_mut().zip(d).for_each(|(a, v)| *a += v * inv);
                    }
                }
            }
        }
    });
    Ok(())
}
