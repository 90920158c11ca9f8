//! GELU, the exact (erf-based) form, as PyTorch's `nn.GELU()` default and ONNX's `Gelu`:
//!
//!   y     = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
//!   dy/dx = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//!
//! Unlike relu, sigmoid and tanh (`ops::activation`), the backward pass needs the input x:
//! GELU is not monotonic (its minimum is near x = -0.75), so y does not determine x.
//! Not the tanh approximation (`approximate="tanh"` in PyTorch): its values differ by up to
//! 4.7e-4 (near x = -2.7).

use std::f32::consts::FRAC_1_SQRT_2;

/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Phi(x), the standard normal distribution function.
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2))
}

/// GELU of one value.
pub fn gelu(x: f32) -> f32 {
    x * normal_cdf(x)
}

/// dGELU/dx at `x`.
pub fn gelu_derivative(x: f32) -> f32 {
    let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
    normal_cdf(x) + x * pdf
}

/// y = GELU(x), elementwise.
pub fn gelu_forward_into(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = gelu(x));
}

/// dx = dy GELU'(x), elementwise, from the forward input x.
pub fn gelu_backward_into(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.iter_mut().zip(dy).zip(x).for_each(|((dx, &dy), &x)| *dx = dy * gelu_derivative(x));
}
