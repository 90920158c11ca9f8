//! L2 weight penalty, as tf.nn.l2_loss(W) * lambda:  lambda / 2 * sum(W^2);  gradient lambda * W.

/// The penalty of one weight tensor.
pub fn l2_penalty(w: &[f32], lambda: f32) -> f32 {
    let sum: f64 = w.iter().map(|&v| (v as f64) * (v as f64)).sum();
    (0.5 * lambda as f64 * sum) as f32
}

/// Adds the penalty's gradient, lambda * W, to `grad`.
pub fn l2_backward(w: &[f32], lambda: f32, grad: &mut [f32]) {
    grad.iter_mut().zip(w).for_each(|(g, &v)| *g += lambda * v);
}
