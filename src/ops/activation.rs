//! Elementwise activations. Each backward pass needs only the forward output y:
//!   relu:    y = max(x, 0)          dy/dx = 1 if y > 0 else 0
//!   sigmoid: y = 1 / (1 + e^-x)     dy/dx = y (1 - y)
//!   tanh:    y = tanh(x)            dy/dx = 1 - y^2

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    /// Applies the activation in place.
    pub fn forward(self, x: &mut [f32]) {
        match self {
            // `v < 0` rather than `max`: a NaN stays NaN, so divergence shows in the loss.
            Activation::Relu => x.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
            // Written as 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) otherwise: no overflow either way.
            Activation::Sigmoid => x.iter_mut().for_each(|v| {
                *v = if *v >= 0.0 {
                    1.0 / (1.0 + (-*v).exp())
                } else {
                    let e = v.exp();
                    e / (1.0 + e)
                }
            }),
            Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
        }
    }

    /// Turns the output gradient `dy` into the input gradient, in place, given the output `y`.
    pub fn backward(self, y: &[f32], dy: &mut [f32]) {
        let pairs = dy.iter_mut().zip(y);
        match self {
            Activation::Relu => pairs.for_each(|(d, &y)| {
                if y <= 0.0 {
                    *d = 0.0
                }
            }),
            Activation::Sigmoid => pairs.for_each(|(d, &y)| *d *= y * (1.0 - y)),
            Activation::Tanh => pairs.for_each(|(d, &y)| *d *= 1.0 - y * y),
        }
    }

    /// `backward` into a separate buffer: dx = the input gradient for output gradient `dy`.
    /// ReLU in one pass (a conv layer's fused ReLU runs this on every backward step).
    pub fn backward_into(self, y: &[f32], dy: &[f32], dx: &mut [f32]) {
        match self {
            Activation::Relu => dx.iter_mut().zip(dy).zip(y).for_each(|((d, &g), &y)| *d = if y <= 0.0 { 0.0 } else { g }),
            _ => {
                dx.copy_from_slice(dy);
                self.backward(y, dx);
            }
        }
    }
}
