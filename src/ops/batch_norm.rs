//! Batch normalisation over the channels (the last axis): statistics are taken over every
//! other axis (N, H, W for images; N for features).
//!
//! ```text
//!   train:    mean[c], var[c] over the batch (biased);  xhat = (x - mean) / sqrt(var + eps)
//!             y = gamma * xhat + beta
//!             running_mean = (1 - m) running_mean + m mean;  running_var likewise with the
//!             unbiased variance (as PyTorch; m = momentum)
//!   eval:     y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
//!   backward: d_beta = sum dy;  d_gamma = sum dy * xhat
//!             dx = gamma / sqrt(var + eps) / M * (M dy - d_beta - xhat d_gamma),  M = rows
//! ```
//!
//! Sums run over fixed chunks of rows reduced in order, in f64: the same result on any number
//! of threads.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

use crate::chunks::ROWS_PER_CHUNK as ROWS;

fn channels(x: &Tensor) -> Result<usize> {
    match x.shape().last() {
        Some(&c) if c > 0 && x.shape().len() >= 2 => Ok(c),
        _ => Err(Error::shape("batch_norm", "[N, ..., C]", format!("{:?}", x.shape()))),
    }
}

/// Per-channel sums of f(row values) over all rows, in a fixed order.
fn channel_sums(data: &[f32], c: usize, f: impl Fn(usize, f32) -> f64 + Sync) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = data
        .par_chunks(ROWS * c)
        .map(|chunk| {
            let mut s = vec![0.0f64; c];
            for row in chunk.chunks_exact(c) {
                for (ch, (acc, &v)) in s.iter_mut().zip(row).enumerate() {
                    *acc += f(ch, v);
                }
            }
            s
        })
        .collect();
    let mut total = vec![0.0f64; c];
    for p in &partials {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    total
}

/// What the training forward pass keeps for the backward pass.
#[derive(Default)]
pub struct BatchNormCache {
    pub xhat: Tensor,
    pub inv_std: Vec<f32>,
}

/// The running statistics a training pass updates, and how fast: new = (1 - m) old + m batch.
pub struct RunningStats<'a> {
    pub mean: &'a mut [f32],
    pub var: &'a mut [f32],
    pub momentum: f32,
}

/// Training forward: normalises with the batch statistics and updates the running ones.
pub fn batch_norm_forward_train(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    running: RunningStats,
    eps: f32,
    y: &mut Tensor,
    cache: &mut BatchNormCache,
) -> Result<()> {
    let RunningStats { mean: running_mean, var: running_var, momentum } = running;
    let c = channels(x)?;
    let rows = x.len() / c;
    if rows < 2 {
        return Err(Error::invalid("batch_norm", format!("training needs more than one value per channel, got input {:?}", x.shape())));
    }
    let sums = channel_sums(x.data(), c, |_, v| v as f64);
    let mean: Vec<f64> = sums.iter().map(|s| s / rows as f64).collect();
    let sq = channel_sums(x.data(), c, |ch, v| (v as f64 - mean[ch]).powi(2));
    let var: Vec<f64> = sq.iter().map(|s| s / rows as f64).collect();
    cache.inv_std = var.iter().map(|v| (1.0 / (v + eps as f64).sqrt()) as f32).collect();
    for ch in 0..c {
        running_mean[ch] = (1.0 - momentum) * running_mean[ch] + momentum * mean[ch] as f32;
        let unbiased = var[ch] * rows as f64 / (rows - 1) as f64;
        running_var[ch] = (1.0 - momentum) * running_var[ch] + momentum * unbiased as f32;
    }
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    y.resize(x.shape());
    cache.xhat.resize(x.shape());
    let inv_std = &cache.inv_std;
    y.data_mut().par_chunks_mut(ROWS * c).zip(cache.xhat.data_mut().par_chunks_mut(ROWS * c)).zip(x.data().par_chunks(ROWS * c)).for_each(
        |((y, xhat), x)| {
            for ((y, xh), x) in y.chunks_exact_mut(c).zip(xhat.chunks_exact_mut(c)).zip(x.chunks_exact(c)) {
                for ch in 0..c {
                    xh[ch] = (x[ch] - mean32[ch]) * inv_std[ch];
                    y[ch] = gamma[ch] * xh[ch] + beta[ch];
                }
            }
        },
    );
    Ok(())
}

/// Evaluation forward with the running statistics.
pub fn batch_norm_forward_eval(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    y: &mut Tensor,
) -> Result<()> {
    let c = channels(x)?;
    // y = x * a + b with a = gamma / sqrt(var + eps), b = beta - mean * a.
    let a: Vec<f32> = (0..c).map(|ch| gamma[ch] / (running_var[ch] + eps).sqrt()).collect();
    let b: Vec<f32> = (0..c).map(|ch| beta[ch] - running_mean[ch] * a[ch]).collect();
    y.resize(x.shape());
    y.data_mut().par_chunks_mut(ROWS * c).zip(x.data().par_chunks(ROWS * c)).for_each(|(y, x)| {
        for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for ch in 0..c {
                y[ch] = x[ch] * a[ch] + b[ch];
            }
        }
    });
    Ok(())
}

/// Backward of the training forward: fills dx, d_gamma and d_beta.
pub fn batch_norm_backward(
    dy: &Tensor,
    gamma: &[f32],
    cache: &BatchNormCache,
    dx: Option<&mut Tensor>,
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) -> Result<()> {
    let c = channels(dy)?;
    if cache.xhat.shape() != dy.shape() {
        return Err(Error::shape("batch_norm backward", format!("dy {:?}", cache.xhat.shape()), format!("{:?}", dy.shape())));
    }
    let rows = dy.len() / c;
    let xhat = cache.xhat.data();
    let db = channel_sums(dy.data(), c, |_, v| v as f64);
    // sum dy * xhat: index the matching xhat value through the row position.
    let dg = {
        let partials: Vec<Vec<f64>> = dy
            .data()
            .par_chunks(ROWS * c)
            .zip(xhat.par_chunks(ROWS * c))
            .map(|(d, xh)| {
                let mut s = vec![0.0f64; c];
                for (d, xh) in d.chunks_exact(c).zip(xh.chunks_exact(c)) {
                    for ch in 0..c {
                        s[ch] += d[ch] as f64 * xh[ch] as f64;
                    }
                }
                s
            })
            .collect();
        let mut total = vec![0.0f64; c];
        for p in &partials {
            total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
        total
    };
    for ch in 0..c {
        d_beta[ch] = db[ch] as f32;
        d_gamma[ch] = dg[ch] as f32;
    }
    if let Some(dx) = dx {
        dx.resize(dy.shape());
        let m = rows as f32;
        let k: Vec<f32> = (0..c).map(|ch| gamma[ch] * cache.inv_std[ch] / m).collect();
        dx.data_mut().par_chunks_mut(ROWS * c).zip(dy.data().par_chunks(ROWS * c)).zip(xhat.par_chunks(ROWS * c)).for_each(
            |((dx, dy), xh)| {
                for ((dx, dy), xh) in dx.chunks_exact_mut(c).zip(dy.chunks_exact(c)).zip(xh.chunks_exact(c)) {
                    for ch in 0..c {
                        dx[ch] = k[ch] * (m * dy[ch] - d_beta[ch] - xh[ch] * d_gamma[ch]);
                    }
                }
            },
        );
    }
    Ok(())
}

/// The training forward pass in plain loops, straight from the formulas (the tests' oracle).
pub fn batch_norm_forward_ref(x: &Tensor, gamma: &[f32], beta: &[f32], eps: f32) -> Result<Tensor> {
    let c = channels(x)?;
    let rows = x.len() / c;
    let mut y = vec![0.0f32; x.len()];
    for ch in 0..c {
        let values: Vec<f64> = (0..rows).map(|r| x.data()[r * c + ch] as f64).collect();
        let mean = values.iter().sum::<f64>() / rows as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
        for (r, v) in values.iter().enumerate() {
            y[r * c + ch] = gamma[ch] * ((v - mean) / (var + eps as f64).sqrt()) as f32 + beta[ch];
        }
    }
    Tensor::from_vec(x.shape(), y)
}
