//! Softmax cross-entropy on logits, fused and numerically stable.
//! ```text
//!   log p[k] = z[k] - logsumexp(z),  logsumexp(z) = m + ln sum_k e^(z[k] - m),  m = max z
//!   loss     = mean over the batch of -log p[label]
//!   dz       = (p - onehot(label)) / N
//! ```
//! The network's last layer outputs raw logits: the softmax lives only here (the tutorial's
//! code applied it twice).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Row-wise softmax probabilities of logits [N, K].
pub fn softmax(logits: &Tensor) -> Result<Tensor> {
    let (_, k) = logits.dims2("softmax")?;
    let mut p = logits.clone();
    for row in p.data_mut().chunks_exact_mut(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
    Ok(p)
}

/// Mean cross-entropy of `logits` [N, K] against `labels` (each < K), and d loss / d logits.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)> {
    softmax_cross_entropy_smoothed(logits, labels, 0.0)
}

/// Cross-entropy against smoothed targets q = (1 - eps) onehot(label) + eps / K (label
/// smoothing, as PyTorch's `label_smoothing`):
/// ```text
///   loss = mean over the batch of -sum_k q[k] log p[k],   dz = (p - q) / N
/// ```
pub fn softmax_cross_entropy_smoothed(logits: &Tensor, labels: &[usize], eps: f32) -> Result<(f32, Tensor)> {
    let (n, k) = logits.dims2("softmax_cross_entropy")?;
    if labels.len() != n {
        return Err(Error::shape("softmax_cross_entropy", format!("{n} labels"), format!("{}", labels.len())));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::invalid("softmax_cross_entropy", format!("label {bad} is out of range for {k} classes")));
    }
    if !(0.0..1.0).contains(&eps) {
        return Err(Error::invalid("softmax_cross_entropy", format!("label smoothing must be in [0, 1), got {eps}")));
    }
    let mut grad = softmax(logits)?;
    // N is the whole batch's size: in a distributed step, this rank's images are part of it
    // and its loss continues the previous ranks' sum (crate::dist).
    let batch = crate::dist::batch_count(n);
    let mut loss = [0.0f64];
    let off = eps as f64 / k as f64;
    crate::dist::ordered_fold(&mut [&mut loss], |acc| {
        let loss = &mut acc[0][0];
        for ((row, z), &label) in grad.data_mut().chunks_exact_mut(k).zip(logits.data().chunks_exact(k)).zip(labels) {
            let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = m as f64 + z.iter().map(|&v| ((v - m) as f64).exp()).sum::<f64>().ln();
            // -sum_k q[k] (z[k] - lse) = lse - (1 - eps) z[label] - eps/K sum_k z[k]
            let z_sum: f64 = if eps > 0.0 { z.iter().map(|&v| v as f64).sum() } else { 0.0 };
            *loss += lse - (1.0 - eps as f64) * z[label] as f64 - off * z_sum;
            row[label] -= 1.0 - eps;
            if eps > 0.0 {
                row.iter_mut().for_each(|v| *v -= off as f32);
            }
            row.iter_mut().for_each(|v| *v /= batch as f32);
        }
    });
    Ok(((loss[0] / batch as f64) as f32, grad))
}
