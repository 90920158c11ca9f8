//! GELU, the exact (erf-based) form, as PyTorch's `nn.GELU()` default and ONNX's `Gelu`:
//!
//!   y     = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
//!   dy/dx = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//!
//! Unlike relu, sigmoid and tanh (`ops::activation`), the backward pass needs the input x:
//! GELU is not monotonic (its minimum is near x = -0.75), so y does not determine x.
//! Not the tanh approximation (`approximate="tanh"` in PyTorch): its values differ by up to
//! 4.7e-4 (near x = -2.7).
//!
//! Two versions. `gelu` and `gelu_derivative` are the reference, one value at a time through
//! libm's `erff` (a scalar call that does not vectorise: about 5 ns a value). The slice kernels
//! (`gelu_forward_into`, `gelu_backward_into`) compute the same functions in straight-line
//! arithmetic that the compiler vectorises:
//!
//! - the forward pass takes erf from a rational function, erf(z) = z P(z^2) / Q(z^2) for z
//!   clamped to [-4, 4] (P of degree 6, Q of degree 4: Eigen's `generic_fast_erf_float`, which
//!   XLA and TVM use for float32 too), clamped to [-1, 1]: 20 vector operations, one a division (34 before), 1.5
//!   times as fast as the form below, which it used until 2026-12-07 (0.39 -> 0.25 ns a value
//!   on one thread in cache, AVX-512). Its error in GELU is at most 2.2e-7 x max(1, |x|) (at
//!   x = 4.64, a fine grid over [-8, 8]); past x = -5.66 (z = -4) it is exactly -0;
//! - the backward pass needs phi's exponential anyway, so it takes Phi from the same
//!   exponential: erfc by Abramowitz and Stegun's formula 7.1.26 (absolute error at most
//!   1.5e-7), exp by range reduction and a polynomial (`Phi` below). The rational form and an
//!   exponential of its own measured slower there (0.45 against 0.41 ns a value).
//!
//! The tests hold both within 3e-7 x max(1, |x|) of erf in f64 and of the libm reference.
//!
//! The polynomials are fused multiply-adds (`mul_add`, one rounding each): a third fewer
//! operations than a multiply and an add, and the same bits on every machine, since a fused
//! multiply-add is exactly rounded wherever it runs (FMA units; libm's `fmaf` on an x86 CPU
//! without them, slowly). The kernels run 16 values a vector on AVX-512 CPUs, 8 on AVX2: GELU
//! is bound by its arithmetic, not by memory (2.7 times a copy's time on the airbench machine
//! before these two changes).

use std::f32::consts::FRAC_1_SQRT_2;

use super::simd::simd_dispatch;

/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Phi(x), the standard normal distribution function, through libm (the reference).
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2))
}

/// GELU of one value (the reference).
pub fn gelu(x: f32) -> f32 {
    x * normal_cdf(x)
}

/// dGELU/dx at `x` (the reference).
pub fn gelu_derivative(x: f32) -> f32 {
    let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
    normal_cdf(x) + x * pdf
}

/// Below this, e^a is taken as 0 (e^-80 = 1.8e-35): it keeps the results clear of subnormal
/// numbers, which are slow on x86, and puts GELU's far left tail at exactly -0.
const EXP_CUTOFF: f32 = -80.0;

/// e^a for a <= 0 (0 below `EXP_CUTOFF`), with no branch and no call, so that it vectorises.
/// a = n ln 2 + r with n = round(a / ln 2) and |r| <= ln 2 / 2; e^r by Cephes' `expf`
/// polynomial (about 1 ulp); 2^n written straight into the exponent bits.
#[inline(always)]
fn exp_non_positive(a: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two: LN2_HI has 9 significant bits, so n LN2_HI is exact for |n| < 2^15.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 x 2^23: adding it rounds to an integer, which lands in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let clamped = a.max(EXP_CUTOFF);
    let shifted = clamped.mul_add(LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, clamped));
    let poly =
        [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5].iter().fold(1.987_569_2e-4, |p: f32, &c| p.mul_add(r, c));
    let e_r = poly.mul_add(r * r, r) + 1.0;
    // n in [-116, 0]: the bits of 2^n are (n + 127) << 23; n sits in `shifted`'s low bits.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if a < EXP_CUTOFF {
        0.0
    } else {
        e_r * two_n
    }
}

/// Phi(x) and phi(x) sqrt(2 pi) = e^(-x^2/2), vectorisable. With z = |x| / sqrt 2,
/// erfc(z) = t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) e^(-z^2), t = 1 / (1 + p z)
/// (Abramowitz and Stegun 7.1.26); Phi(x) = 1 - erfc(z) / 2 for x >= 0 and erfc(z) / 2 below,
/// which keeps the left tail's relative precision.
#[inline(always)]
fn normal_cdf_and_density(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152, 1.061_405_4];
    let z = x.abs() * FRAC_1_SQRT_2;
    let e = exp_non_positive(-(z * z));
    let t = 1.0 / P.mul_add(z, 1.0);
    let poly = A[..4].iter().rev().fold(A[4], |p: f32, &a| p.mul_add(t, a));
    let half_erfc = 0.5 * (t * poly) * e;
    let cdf = if x < 0.0 { half_erfc } else { 1.0 - half_erfc };
    (cdf, e)
}

simd_dispatch! {
    avx512:
    /// y = GELU(x), elementwise.
    pub fn gelu_forward_into => gelu_forward_plain(x: &[f32], y: &mut [f32])
}

#[inline(always)]
fn gelu_forward_plain(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = gelu_value(x));
}

/// GELU of one value as the slice kernels compute it (inlined into a caller's vector loop:
/// `ops::batch_norm`'s evaluation pass with the GELU after it, `ops::epilogue`), the same bits.
#[inline(always)]
pub(crate) fn gelu_value(x: f32) -> f32 {
    x * erf_rational(x * FRAC_1_SQRT_2).mul_add(0.5, 0.5)
}

/// erf(z) = z P(z^2) / Q(z^2), z clamped to [-4, 4] (erf(4) = 1 - 1.5e-8 rounds to 1 in
/// float32), the result clamped to [-1, 1] (near z = 4 the quotient overshoots 1 by a few
/// units in the last place, which would put GELU above x and, on the left, above 0).
/// Coefficients: Eigen's `generic_fast_erf_float` (XLA's and TVM's float32 erf), in Horner
/// form from the highest power.
#[inline(always)]
fn erf_rational(z: f32) -> f32 {
    const P: [f32; 7] = [-2.726_142_4e-10, 2.770_681_5e-8, -2.101_024e-6, -5.692_506_2e-5, -7.349_906_4e-4, -2.954_6e-3, -1.609_603_3e-2];
    const Q: [f32; 5] = [-1.456_607_15e-5, -2.133_740_5e-4, -1.682_827e-3, -7.373_329_3e-3, -1.426_473_9e-2];
    let z = z.clamp(-4.0, 4.0);
    let z2 = z * z;
    let p = P[1..].iter().fold(P[0], |p, &c| p.mul_add(z2, c));
    let q = Q[1..].iter().fold(Q[0], |q, &c| q.mul_add(z2, c));
    (z * p / q).clamp(-1.0, 1.0)
}

simd_dispatch! {
    avx512:
    /// dx = dy GELU'(x), elementwise, from the forward input x.
    pub fn gelu_backward_into => gelu_backward_plain(x: &[f32], dy: &[f32], dx: &mut [f32])
}

#[inline(always)]
fn gelu_backward_plain(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.iter_mut().zip(dy).zip(x).for_each(|((dx, &dy), &x)| {
        let (cdf, e) = normal_cdf_and_density(x);
        *dx = dy * x.mul_add(INV_SQRT_2PI * e, cdf);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 (libm), the yardstick for both versions.
    fn exact(x: f32) -> (f64, f64) {
        let x = x as f64;
        let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        (x * cdf, cdf + x * pdf)
    }

    #[test]
    fn the_vector_form_matches_erf_in_f64_and_the_libm_reference() {
        // Every 1/256 over [-16, 16] (both tails, the cutoff near |x| = 12.6, zero), and the
        // far ends.
        let mut xs: Vec<f32> = (-4096..=4096).map(|i| i as f32 / 256.0).collect();
        xs.extend([-1e30, -100.0, -13.0, 1e-30, -1e-30, 100.0, 1e30]);
        let (mut y, mut dx) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        gelu_forward_into(&xs, &mut y);
        gelu_backward_into(&xs, &vec![1.0; xs.len()], &mut dx);
        for ((&x, &y), &d) in xs.iter().zip(&y).zip(&dx) {
            let (want_y, want_d) = exact(x);
            let tol = 3e-7 * (x.abs() as f64).max(1.0);
            assert!((y as f64 - want_y).abs() <= tol, "gelu({x}) = {y}, want {want_y}");
            assert!((d as f64 - want_d).abs() <= tol, "gelu'({x}) = {d}, want {want_d}");
            assert!((y - gelu(x)).abs() as f64 <= 2.0 * tol, "gelu({x}) = {y}, reference {}", gelu(x));
            assert!((d - gelu_derivative(x)).abs() as f64 <= 2.0 * tol, "gelu'({x}) = {d}, reference {}", gelu_derivative(x));
        }
        // The forward pass on a fine grid over [-8, 8] (every 2^-15): within 2.5e-7 x max(1, |x|)
        // (its worst, 2.2e-7, is near x = 4.64), never above x, never above 0 left of 0 (the
        // clamp of erf to [-1, 1] holds both: near x = 5.6 the quotient overshoots 1).
        let fine: Vec<f32> = (-(1 << 18)..=(1 << 18)).map(|i| i as f32 / 32768.0).collect();
        let mut fine_y = vec![0.0; fine.len()];
        gelu_forward_into(&fine, &mut fine_y);
        for (&x, &y) in fine.iter().zip(&fine_y) {
            let tol = 2.5e-7 * (x.abs() as f64).max(1.0);
            assert!((y as f64 - exact(x).0).abs() <= tol, "gelu({x}) = {y}, want {}", exact(x).0);
            assert!(y <= x.max(0.0), "gelu({x}) = {y} is above max(x, 0)");
        }
        // Past z = -4 (x = -5.66) the forward's left tail is exactly -0; past the exponential's
        // cutoff the backward's slope is 0; no NaN from the far ends.
        let mut far = [0.0; 3];
        gelu_forward_into(&[-5.7, -1e30, 1e30], &mut far);
        assert_eq!(far.map(f32::to_bits), [(-0.0f32).to_bits(), (-0.0f32).to_bits(), 1e30f32.to_bits()]);
        let mut slope = [0.0; 2];
        gelu_backward_into(&[-13.0, 1e30], &[1.0, 1.0], &mut slope);
        assert_eq!(slope, [0.0, 1.0]);
    }

    #[test]
    fn exp_is_within_two_ulp_and_zero_past_the_cutoff() {
        for i in 0..=8000 {
            let a = -(i as f32) / 100.0;
            let got = exp_non_positive(a) as f64;
            let want = (a as f64).exp();
            assert!((got - want).abs() <= 2.0 * f32::EPSILON as f64 * want, "exp({a}) = {got}, want {want}");
        }
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert_eq!(exp_non_positive(-80.5), 0.0);
        assert!(exp_non_positive(-80.0) > 0.0);
    }
}
