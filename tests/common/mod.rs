//! Shared test helpers: seeded random tensors, a finite-difference gradient checker, and a
//! relative comparison of two tensors.
#![allow(dead_code)]

use convnet::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut r = rng(seed);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| r.gen_range(-1.0..1.0)).collect()).unwrap()
}

/// Values that are all at least 0.05 apart (a shuffled ramp), so that a max never changes its
/// winner under a small perturbation.
pub fn distinct(shape: &[usize], seed: u64) -> Tensor {
    use rand::seq::SliceRandom;
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    v.shuffle(&mut rng(seed));
    Tensor::from_vec(shape, v).unwrap()
}

/// max |a - b| / max(|b|, 1e-6) over the tensors: the relative error of `a` against `b`.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let diff = a.data().iter().zip(b.data()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    let scale = b.data().iter().map(|y| y.abs()).fold(0.0, f32::max).max(1e-6);
    diff / scale
}

pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    let e = rel_err(a, b);
    assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
}

/// Checks `analytic` = d/dx of L(x) = sum(f(x) * r) against central differences, where `r` is
/// a fixed random weighting (so every output contributes). Every coordinate of x is checked.
/// A coordinate passes when |analytic - numeric| <= tol * max(|analytic|, |numeric|, 1).
pub fn check_gradient(name: &str, x: &Tensor, r: &Tensor, eps: f32, tol: f32, analytic: &Tensor, f: impl Fn(&Tensor) -> Tensor) {
    let loss = |t: &Tensor| -> f64 { f(t).data().iter().zip(r.data()).map(|(&y, &w)| y as f64 * w as f64).sum() };
    assert_eq!(analytic.shape(), x.shape(), "{name}: gradient shape");
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        let mut plus = x.clone();
        plus.data_mut()[i] += eps;
        let mut minus = x.clone();
        minus.data_mut()[i] -= eps;
        let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
        let a = analytic.data()[i] as f64;
        let err = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1.0);
        worst = worst.max(err);
        assert!(err <= tol as f64, "{name}: d/dx[{i}] analytic {a} vs numeric {numeric} (error {err:e})");
    }
    eprintln!("{name}: worst gradient error {worst:.2e}");
}
