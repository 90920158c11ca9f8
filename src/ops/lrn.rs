//! Local response normalisation across channels, with TensorFlow's definition (tf.nn.lrn):
//!
//!   sqr_sum[c] = sum_{c' = c - r .. c + r, inside 0..C} x[c']^2      (r = depth_radius)
//!   scale[c]   = bias + alpha * sqr_sum[c]
//!   y[c]       = x[c] * scale[c]^(-beta)
//!
//! and its exact gradient (the window is symmetric, so c' is in c's window iff c is in c''s):
//!   dx[c] = dy[c] * scale[c]^(-beta)
//!           - 2 * alpha * beta * x[c] * sum_{c' in window(c)} dy[c'] * x[c'] * scale[c']^(-beta - 1)
//! where x[c'] * scale[c']^(-beta - 1) = y[c'] / scale[c'].
//!
//! PyTorch's nn.LocalResponseNorm divides alpha by the window size: TF's alpha = torch's
//! alpha / (2r + 1). Shapes: any [.., C] with channels last; the op works on rows of C values.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrnParams {
    pub depth_radius: usize,
    pub bias: f32,
    pub alpha: f32,
    pub beta: f32,
}

impl LrnParams {
    pub fn validate(&self) -> Result<()> {
        let valid = self.bias > 0.0 && self.alpha >= 0.0 && self.beta >= 0.0; // false for NaN too
        if !valid {
            return Err(Error::invalid("lrn", format!("bias must be > 0 and alpha, beta >= 0, got {self:?}")));
        }
        Ok(())
    }
}

/// Pixels per parallel task.
const ROWS_PER_TASK: usize = 64;

fn channels(op: &str, x: &Tensor) -> Result<usize> {
    match x.shape().last() {
        Some(&c) if c > 0 => Ok(c),
        _ => Err(Error::shape(op, "a tensor with channels last", format!("{:?}", x.shape()))),
    }
}

/// Returns y and the scale (kept for the backward pass).
pub fn lrn_forward(x: &Tensor, p: &LrnParams) -> Result<(Tensor, Tensor)> {
    let (mut y, mut scale) = (Tensor::empty(), Tensor::empty());
    lrn_forward_into(x, p, &mut y, &mut scale)?;
    Ok((y, scale))
}

/// `lrn_forward` into reused buffers.
pub fn lrn_forward_into(x: &Tensor, p: &LrnParams, y: &mut Tensor, scale: &mut Tensor) -> Result<()> {
    p.validate()?;
    let c = channels("lrn", x)?;
    y.resize(x.shape());
    scale.resize(x.shape());
    let chunk = ROWS_PER_TASK * c;
    y.data_mut()
        .par_chunks_mut(chunk)
        .zip(scale.data_mut().par_chunks_mut(chunk))
        .zip(x.data().par_chunks(chunk))
        .for_each(|((y, scale), x)| {
            for ((y, scale), x) in y.chunks_exact_mut(c).zip(scale.chunks_exact_mut(c)).zip(x.chunks_exact(c)) {
                lrn_row(x, p, y, scale);
            }
        });
    Ok(())
}

/// One pixel: a sliding window sum of squares over the channels.
fn lrn_row(x: &[f32], p: &LrnParams, y: &mut [f32], scale: &mut [f32]) {
    let c = x.len();
    let r = p.depth_radius;
    let mut sum: f32 = x[..(r + 1).min(c)].iter().map(|v| v * v).sum();
    for ch in 0..c {
        let s = p.bias + p.alpha * sum;
        scale[ch] = s;
        y[ch] = x[ch] * pow_neg(s, p.beta);
        // Slide: channel ch + r + 1 enters, channel ch - r leaves.
        if ch + r + 1 < c {
            sum += x[ch + r + 1] * x[ch + r + 1];
        }
        if ch >= r {
            sum -= x[ch - r] * x[ch - r];
        }
        // Re-anchor to avoid drift from the running sum cancelling large values.
        if ch % 16 == 15 {
            sum = x[(ch + 1).saturating_sub(r)..(ch + r + 2).min(c)].iter().map(|v| v * v).sum();
        }
    }
}

/// s^(-beta), with the tutorial's beta = 0.75 computed without powf.
#[inline]
fn pow_neg(s: f32, beta: f32) -> f32 {
    if beta == 0.75 {
        1.0 / (s * s.sqrt()).sqrt()
    } else {
        s.powf(-beta)
    }
}

pub fn lrn_backward(x: &Tensor, y: &Tensor, scale: &Tensor, dy: &Tensor, p: &LrnParams) -> Result<Tensor> {
    let mut dx = Tensor::empty();
    lrn_backward_into(x, y, scale, dy, p, &mut dx)?;
    Ok(dx)
}

/// `lrn_backward` into a reused buffer.
pub fn lrn_backward_into(x: &Tensor, y: &Tensor, scale: &Tensor, dy: &Tensor, p: &LrnParams, dx: &mut Tensor) -> Result<()> {
    let c = channels("lrn backward", x)?;
    if dy.shape() != x.shape() || y.shape() != x.shape() || scale.shape() != x.shape() {
        return Err(Error::shape("lrn backward", format!("{:?}", x.shape()), format!("{:?}", dy.shape())));
    }
    dx.resize(x.shape());
    let chunk = ROWS_PER_TASK * c;
    dx.data_mut().par_chunks_mut(chunk).enumerate().for_each(|(task, dx)| {
        let mut t = vec![0.0f32; c];
        let off = task * chunk;
        let rows = dx.len() / c;
        for row in 0..rows {
            let at = off + row * c;
            let (x, y, s, dy) = (&x.data()[at..at + c], &y.data()[at..at + c], &scale.data()[at..at + c], &dy.data()[at..at + c]);
            for ch in 0..c {
                t[ch] = dy[ch] * y[ch] / s[ch];
            }
            let dx = &mut dx[row * c..][..c];
            let r = p.depth_radius;
            for ch in 0..c {
                let window: f32 = t[ch.saturating_sub(r)..(ch + r + 1).min(c)].iter().sum();
                dx[ch] = dy[ch] * pow_neg(s[ch], p.beta) - 2.0 * p.alpha * p.beta * x[ch] * window;
            }
        }
    });
    Ok(())
}

/// Plain loops straight from the formulas above: the oracle for the tests.
pub fn lrn_forward_ref(x: &Tensor, p: &LrnParams) -> Result<Tensor> {
    let c = channels("lrn", x)?;
    let r = p.depth_radius;
    let mut y = Tensor::zeros(x.shape());
    for (xr, yr) in x.data().chunks_exact(c).zip(y.data_mut().chunks_exact_mut(c)) {
        for ch in 0..c {
            let lo = ch.saturating_sub(r);
            let hi = (ch + r).min(c - 1);
            let sqr_sum: f32 = (lo..=hi).map(|k| xr[k] * xr[k]).sum();
            yr[ch] = xr[ch] / (p.bias + p.alpha * sqr_sum).powf(p.beta);
        }
    }
    Ok(y)
}

pub fn lrn_backward_ref(x: &Tensor, dy: &Tensor, p: &LrnParams) -> Result<Tensor> {
    let c = channels("lrn backward", x)?;
    let r = p.depth_radius as isize;
    let mut dx = Tensor::zeros(x.shape());
    let scale_of = |xr: &[f32], ch: isize| {
        let s: f32 = (ch - r..=ch + r).filter(|&k| k >= 0 && k < c as isize).map(|k| xr[k as usize] * xr[k as usize]).sum();
        p.bias + p.alpha * s
    };
    for ((xr, dyr), dxr) in x.data().chunks_exact(c).zip(dy.data().chunks_exact(c)).zip(dx.data_mut().chunks_exact_mut(c)) {
        // dy_i/dx_j = delta_ij * s_i^-b - 2 a b x_i x_j s_i^(-b-1)  for j in window(i)
        for j in 0..c as isize {
            let mut g = 0.0;
            for i in (j - r)..=(j + r) {
                if i < 0 || i >= c as isize {
                    continue;
                }
                let s = scale_of(xr, i);
                let mut d = -2.0 * p.alpha * p.beta * xr[i as usize] * xr[j as usize] * s.powf(-p.beta - 1.0);
                if i == j {
                    d += s.powf(-p.beta);
                }
                g += dyr[i as usize] * d;
            }
            dxr[j as usize] = g;
        }
    }
    Ok(dx)
}
