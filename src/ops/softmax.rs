//! Softmax cross-entropy on logits, fused and numerically stable.
//!   log p[k] = z[k] - logsumexp(z),  logsumexp(z) = m + ln sum_k e^(z[k] - m),  m = max z
//!   loss     = mean over the batch of -log p[label]
//!   dz       = (p - onehot(label)) / N
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
    let (n, k) = logits.dims2("softmax_cross_entropy")?;
    if labels.len() != n {
        return Err(Error::shape("softmax_cross_entropy", format!("{n} labels"), format!("{}", labels.len())));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::invalid("softmax_cross_entropy", format!("label {bad} is out of range for {k} classes")));
    }
    let mut grad = softmax(logits)?;
    let mut loss = 0.0f64;
    for ((row, z), &label) in grad.data_mut().chunks_exact_mut(k).zip(logits.data().chunks_exact(k)).zip(labels) {
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m as f64 + z.iter().map(|&v| ((v - m) as f64).exp()).sum::<f64>().ln();
        loss += lse - z[label] as f64;
        row[label] -= 1.0;
        row.iter_mut().for_each(|v| *v /= n as f32);
    }
    Ok(((loss / n as f64) as f32, grad))
}
