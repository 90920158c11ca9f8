//! Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay,
//! following PyTorch's `torch.optim.SGD` (with `dampening = 0`). Per element, at learning rate `lr`:
//!
//! ```text
//! g = g + wd * w               (weight decay, coupled: only for params with decay = true)
//! v = mu * v + g               (velocity; starts at 0, so the first step gives v = g)
//! u = g + mu * v  if nesterov
//!   = v           otherwise
//! w = w - lr * u
//! ```
//!
//! With `mu = 0` there is no velocity and this is plain SGD: `w = w - lr * g`.

use super::Param;

/// The SGD update rule. The per-parameter state is one velocity buffer, kept by the caller
/// (`Optimizer`) and only when `momentum > 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

impl Sgd {
    /// Whether this rule keeps a velocity buffer per parameter.
    pub fn has_momentum(&self) -> bool {
        self.momentum != 0.0
    }

    /// Updates one parameter tensor in place. `velocity` must be the same length as its value
    /// when `has_momentum()`, and is ignored (may be empty) otherwise.
    pub fn update(&self, p: &mut Param, velocity: &mut [f32], lr: f32) {
        let Param { value, grad, decay, .. } = p;
        let (value, grad, decay) = (&mut **value, &**grad, *decay);
        debug_assert_eq!(value.len(), grad.len());
        let mu = self.momentum;
        // Zero decay is skipped rather than multiplied in, so that wd = 0 is bit-identical to
        // having no decay term at all.
        let wd = if decay && self.weight_decay != 0.0 { Some(self.weight_decay) } else { None };
        let decayed = |g: f32, w: f32| match wd {
            Some(wd) => g + wd * w,
            None => g,
        };

        if !self.has_momentum() {
            for (w, &g) in value.iter_mut().zip(grad) {
                let g = decayed(g, *w);
                *w -= lr * g;
            }
            return;
        }

        debug_assert_eq!(velocity.len(), value.len());
        for ((w, &g), v) in value.iter_mut().zip(grad).zip(velocity.iter_mut()) {
            let g = decayed(g, *w);
            *v = mu * *v + g;
            let u = if self.nesterov { g + mu * *v } else { *v };
            *w -= lr * u;
        }
    }
}
