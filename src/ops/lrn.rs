//! Local response normalisation across channels, with TensorFlow's definition (tf.nn.lrn):
//!
//! ```text
//!   sqr_sum[c] = sum_{c' = c - r .. c + r, inside 0..C} x[c']^2      (r = depth_radius)
//!   scale[c]   = bias + alpha * sqr_sum[c]
//!   y[c]       = x[c] * scale[c]^(-beta)
//! ```
//!
//! and its exact gradient (the window is symmetric, so c' is in c's window iff c is in c''s):
//! ```text
//!   dx[c] = dy[c] * scale[c]^(-beta)
//!           - 2 * alpha * beta * x[c] * sum_{c' in window(c)} dy[c'] * x[c'] * scale[c']^(-beta - 1)
//! where x[c'] * scale[c']^(-beta - 1) = y[c'] / scale[c'].
//! ```
//!
//! PyTorch's nn.LocalResponseNorm divides alpha by the window size: TF's alpha = torch's
//! alpha / (2r + 1). Shapes: any [.., C] with channels last; the op works on rows of C values.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::simd::simd_dispatch;
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
    /// bias > 0, alpha >= 0, beta >= 0, all finite; the message names the key.
    pub fn check(&self) -> std::result::Result<(), String> {
        // Written so that NaN fails: it compares false with everything.
        if !(self.bias > 0.0 && self.bias.is_finite()) {
            return Err(format!("bias must be a positive finite number, got {}", self.bias));
        }
        for (key, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{key} must be a non-negative finite number, got {v}"));
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|detail| Error::invalid("lrn", detail))
    }

    /// The same normalisation over `c` channels with the radius capped at `c`: a window that
    /// reaches past every channel sums the same squares, and the kernels' scratch and shifted
    /// sums grow with the radius (a radius of 2^34 from a config would otherwise ask for 64 GB).
    fn for_channels(&self, c: usize) -> LrnParams {
        LrnParams { depth_radius: self.depth_radius.min(c), ..*self }
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
    let p = &p.for_channels(c);
    y.resize(x.shape());
    scale.resize(x.shape());
    let chunk = ROWS_PER_TASK * c;
    y.data_mut()
        .par_chunks_mut(chunk)
        .zip(scale.data_mut().par_chunks_mut(chunk))
        .zip(x.data().par_chunks(chunk))
        .for_each_init(|| vec![0.0f32; c + 2 * p.depth_radius], |padded, ((y, scale), x)| lrn_rows(x, p, y, scale, padded));
    Ok(())
}

simd_dispatch! {
    /// Rows of `c` channels (one pixel each); AVX2 + FMA where the SIMD level allows (8 lanes instead
    /// of SSE's 4 for the window sums, square roots and divisions).
    fn lrn_rows => lrn_rows_plain(x: &[f32], p: &LrnParams, y: &mut [f32], scale: &mut [f32], padded: &mut [f32])
}

#[inline(always)]
fn lrn_rows_plain(x: &[f32], p: &LrnParams, y: &mut [f32], scale: &mut [f32], padded: &mut [f32]) {
    let c = padded.len() - 2 * p.depth_radius;
    for ((y, scale), x) in y.chunks_exact_mut(c).zip(scale.chunks_exact_mut(c)).zip(x.chunks_exact(c)) {
        lrn_row(x, p, y, scale, padded);
    }
}

/// One pixel: window sums of squares, then the scale and y, in straight loops that vectorise.
/// `padded` is scratch of length c + 2r.
#[inline(always)]
fn lrn_row(x: &[f32], p: &LrnParams, y: &mut [f32], scale: &mut [f32], padded: &mut [f32]) {
    let r = p.depth_radius;
    padded[r..r + x.len()].iter_mut().zip(x).for_each(|(s, v)| *s = v * v);
    window_sums(padded, r, scale);
    scale.iter_mut().for_each(|s| *s = p.bias + p.alpha * *s);
    y.copy_from_slice(x);
    mul_pow_neg(y, scale, p.beta);
}

/// out[c] = sum of values[c - r ..= c + r], where `padded` holds the values with r zeros on
/// each side: 2r + 1 shifted vector adds instead of a sequential running sum.
#[inline(always)]
fn window_sums(padded: &[f32], r: usize, out: &mut [f32]) {
    let c = out.len();
    out.copy_from_slice(&padded[..c]);
    for d in 1..=2 * r {
        out.iter_mut().zip(&padded[d..d + c]).for_each(|(o, v)| *o += v);
    }
}

/// v[i] *= s[i]^(-beta); the tutorial's beta = 0.75 without powf: s^-0.75 = 1 / sqrt(s sqrt(s)).
#[inline(always)]
fn mul_pow_neg(v: &mut [f32], s: &[f32], beta: f32) {
    if beta == 0.75 {
        v.iter_mut().zip(s).for_each(|(v, &s)| *v /= (s * s.sqrt()).sqrt());
    } else {
        v.iter_mut().zip(s).for_each(|(v, &s)| *v *= s.powf(-beta));
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
    let p = &p.for_channels(c);
    let r = p.depth_radius;
    dx.data_mut().par_chunks_mut(chunk).enumerate().for_each_init(
        || (vec![0.0f32; c + 2 * r], vec![0.0f32; c]),
        |(padded, window), (task, dx)| {
            let at = task * chunk..task * chunk + dx.len();
            let rows =
                BackwardRows { x: &x.data()[at.clone()], y: &y.data()[at.clone()], scale: &scale.data()[at.clone()], dy: &dy.data()[at] };
            lrn_backward_rows(&rows, p, dx, padded, window);
        },
    );
    Ok(())
}

/// The inputs of the backward pass for a run of pixels.
struct BackwardRows<'a> {
    x: &'a [f32],
    y: &'a [f32],
    scale: &'a [f32],
    dy: &'a [f32],
}

simd_dispatch! {
    /// The backward pass over a run of pixels; AVX2 + FMA where the SIMD level allows.
    fn lrn_backward_rows => lrn_backward_rows_plain(rows: &BackwardRows, p: &LrnParams, dx: &mut [f32], padded: &mut [f32], window: &mut [f32])
}

#[inline(always)]
fn lrn_backward_rows_plain(rows: &BackwardRows, p: &LrnParams, dx: &mut [f32], padded: &mut [f32], window: &mut [f32]) {
    let (r, c) = (p.depth_radius, window.len());
    let k = 2.0 * p.alpha * p.beta;
    for (row, dx) in dx.chunks_exact_mut(c).enumerate() {
        let at = row * c..row * c + c;
        let (x, y, s, dy) = (&rows.x[at.clone()], &rows.y[at.clone()], &rows.scale[at.clone()], &rows.dy[at]);
        // t[c'] = dy[c'] * y[c'] / scale[c'], summed over each channel's window.
        for (ch, t) in padded[r..r + c].iter_mut().enumerate() {
            *t = dy[ch] * y[ch] / s[ch];
        }
        window_sums(padded, r, window);
        dx.copy_from_slice(dy);
        mul_pow_neg(dx, s, p.beta);
        for ((d, &x), &w) in dx.iter_mut().zip(x).zip(window.iter()) {
            *d -= k * x * w;
        }
    }
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
