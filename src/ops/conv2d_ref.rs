//! 2-D convolution in plain loops, as the tutorial writes it in NumPy. Slow and obvious: the
//! oracle that the fast path in `conv2d.rs` is tested against. Same shapes and conventions.

use super::conv2d::Conv2dGrads;
use super::conv_shape::ConvShape;
use super::window::Window;
use crate::error::Result;
use crate::tensor::Tensor;

/// `Z[n, i, j, o] = sum over the window of a_slice_prev * W[..., o] + b[o]` (conv_single_step).
pub fn conv_forward(x: &Tensor, w: &Tensor, b: &Tensor, window: &Window) -> Result<Tensor> {
    let ConvShape { geometry: g, batch: n, c_in, c_out } = ConvShape::of(x.shape(), w.shape(), Some(b.shape()), window)?;
    let (xd, wd) = (x.data(), w.data());
    let mut z = Tensor::zeros(&[n, g.oh, g.ow, c_out]);
    let zd = z.data_mut();
    for img in 0..n {
        for i in 0..g.oh {
            for j in 0..g.ow {
                for o in 0..c_out {
                    let mut s = b.data()[o];
                    for ki in 0..g.kh {
                        for kj in 0..g.kw {
                            // Zero padding: cells outside the image contribute nothing.
                            let (Some(r), Some(c)) = (g.in_row(i, ki), g.in_col(j, kj)) else { continue };
                            for ch in 0..c_in {
                                s += xd[((img * g.ih + r) * g.iw + c) * c_in + ch] * wd[((ki * g.kw + kj) * c_in + ch) * c_out + o];
                            }
                        }
                    }
                    zd[((img * g.oh + i) * g.ow + j) * c_out + o] = s;
                }
            }
        }
    }
    Ok(z)
}

/// dA_prev += W * dZ (scattered over each patch), dW += a_slice * dZ, db += dZ.
pub fn conv_backward(x: &Tensor, w: &Tensor, dz: &Tensor, window: &Window) -> Result<Conv2dGrads> {
    let ConvShape { geometry: g, batch: n, c_in, c_out } = ConvShape::of(x.shape(), w.shape(), None, window)?;
    let (xd, wd, dzd) = (x.data(), w.data(), dz.data());
    // Plain vectors, made tensors at the end: a tensor's data_mut() marks a new version.
    let (mut dx, mut dw, mut db) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()], vec![0.0f32; c_out]);
    for img in 0..n {
        for i in 0..g.oh {
            for j in 0..g.ow {
                for o in 0..c_out {
                    let d = dzd[((img * g.oh + i) * g.ow + j) * c_out + o];
                    db[o] += d;
                    for ki in 0..g.kh {
                        for kj in 0..g.kw {
                            let (Some(r), Some(c)) = (g.in_row(i, ki), g.in_col(j, kj)) else { continue };
                            for ch in 0..c_in {
                                let xi = ((img * g.ih + r) * g.iw + c) * c_in + ch;
                                let wi = ((ki * g.kw + kj) * c_in + ch) * c_out + o;
                                dx[xi] += wd[wi] * d;
                                dw[wi] += xd[xi] * d;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Conv2dGrads {
        d_input: Tensor::from_vec(x.shape(), dx)?,
        d_weight: Tensor::from_vec(w.shape(), dw)?,
        d_bias: Tensor::from_vec(&[c_out], db)?,
    })
}
