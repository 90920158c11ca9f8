//! Adam and AdamW, following PyTorch's `torch.optim.Adam` / `torch.optim.AdamW` (no amsgrad).
//! Per element, on the `t`-th step (t = 1, 2, ...) at learning rate `lr`:
//!
//! ```text
//! w = w * (1 - lr * wd)                  (AdamW only: decoupled decay, decay = true params)
//! g = g + wd * w                         (Adam only: coupled decay, decay = true params)
//! m = beta1 * m + (1 - beta1) * g        (first moment; starts at 0)
//! v = beta2 * v + (1 - beta2) * g * g    (second moment; starts at 0)
//! m_hat = m / (1 - beta1^t)              (bias correction: undoes the pull towards the zero start)
//! v_hat = v / (1 - beta2^t)
//! w = w - lr * m_hat / (sqrt(v_hat) + eps)
//! ```
//!
//! The last line is evaluated as PyTorch does, with the bias corrections folded into scalars:
//! `w -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)`. On the first step
//! m_hat = g and v_hat = g^2, so every weight moves by about `lr * sign(g)`.

use super::Param;

/// The Adam / AdamW update rule. The per-parameter state is the two moment buffers `m` and `v`,
/// kept by the caller (`Optimizer`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// true: AdamW (decay shrinks the weights directly); false: Adam (decay is added to the
    /// gradient, and so gets rescaled by the adaptive denominator like any other gradient).
    pub decoupled: bool,
}

impl Adam {
    /// Updates one parameter tensor in place. `m` and `v` are its moment buffers (the same length
    /// as its value); `t` is the 1-based number of this step, which sets the bias corrections.
    pub fn update(&self, p: &mut Param, m: &mut [f32], v: &mut [f32], t: u64, lr: f32) {
        let Param { value, grad, decay, .. } = p;
        let (value, grad, decay) = (&mut **value, &**grad, *decay);
        debug_assert!(t >= 1);
        debug_assert!(value.len() == grad.len() && m.len() == value.len() && v.len() == value.len());
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);

        // Scalars in f64 (PyTorch computes them in Python floats), then rounded once to f32.
        let bias1 = 1.0 - (b1 as f64).powf(t as f64);
        let bias2 = 1.0 - (b2 as f64).powf(t as f64);
        let step_size = (lr as f64 / bias1) as f32;
        let bias2_sqrt = bias2.sqrt() as f32;

        // Zero decay is skipped rather than multiplied in, so that wd = 0 is bit-identical to
        // having no decay term at all.
        let wd = if decay && self.weight_decay != 0.0 { self.weight_decay } else { 0.0 };
        let shrink = (wd != 0.0 && self.decoupled).then_some(1.0 - lr * wd);
        let coupled = (wd != 0.0 && !self.decoupled).then_some(wd);

        // Elementwise, so splitting it over threads cannot change a single bit of the result.
        use crate::chunks::VALUES_PER_CHUNK as CHUNK;
        use rayon::prelude::*;
        value.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(
            |(((value, grad), m), v)| {
                for (((w, &g), m), v) in value.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
                    if let Some(s) = shrink {
                        *w *= s;
                    }
                    let g = match coupled {
                        Some(wd) => g + wd * *w,
                        None => g,
                    };
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    let denom = v.sqrt() / bias2_sqrt + eps;
                    // m / denom first, then the scale: the order of PyTorch's `addcdiv_`.
                    *w -= step_size * (*m / denom);
                }
            },
        );
    }
}
