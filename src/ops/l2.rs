//! L2 weight penalty, as tf.nn.l2_loss(W) * lambda:  lambda / 2 * sum(W^2);  gradient lambda * W.

use rayon::prelude::*;

use crate::chunks::VALUES_PER_CHUNK as CHUNK;

/// Independent partial sums within a task, so the additions overlap instead of waiting on
/// each other (a single running sum is one long chain of dependent additions).
const LANES: usize = 8;

/// The penalty of one weight tensor. Squares are summed in f64: a dense layer has a million
/// weights, and an f32 running sum would lose the small ones.
pub fn l2_penalty(w: &[f32], lambda: f32) -> f32 {
    let partials: Vec<f64> = w
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut lanes = [0.0f64; LANES];
            let mut rows = chunk.chunks_exact(LANES);
            for row in rows.by_ref() {
                for (acc, &v) in lanes.iter_mut().zip(row) {
                    *acc += (v as f64) * (v as f64);
                }
            }
            for (acc, &v) in lanes.iter_mut().zip(rows.remainder()) {
                *acc += (v as f64) * (v as f64);
            }
            lanes.iter().sum::<f64>()
        })
        .collect();
    (0.5 * lambda as f64 * partials.iter().sum::<f64>()) as f32
}

/// Adds the penalty's gradient, lambda * W, to `grad` (elementwise, so the threads cannot
/// change a bit of it).
pub fn l2_backward(w: &[f32], lambda: f32, grad: &mut [f32]) {
    grad.par_chunks_mut(CHUNK).zip(w.par_chunks(CHUNK)).for_each(|(grad, w)| {
        grad.iter_mut().zip(w).for_each(|(g, &v)| *g += lambda * v);
    });
}
