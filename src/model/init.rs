//! Weight initialisers. Biases start at zero; weights as the config says.
//! fan_in = kh*kw*C_in (conv) or in (dense); fan_out = kh*kw*C_out or out.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use super::spec::Init;
use crate::tensor::Tensor;

pub fn init_weight(init: Init, shape: &[usize], fan_in: usize, fan_out: usize, rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match init {
        Init::TruncatedNormal { stddev } => truncated_normal(n, stddev, rng),
        Init::He => normal(n, (2.0 / fan_in as f32).sqrt(), rng),
        Init::Xavier => {
            let a = (6.0 / (fan_in + fan_out) as f32).sqrt();
            let u = Uniform::new_inclusive(-a, a);
            (0..n).map(|_| u.sample(rng)).collect()
        }
        Init::FanInUniform => {
            let a = 1.0 / (fan_in as f32).sqrt();
            let u = Uniform::new_inclusive(-a, a);
            (0..n).map(|_| u.sample(rng)).collect()
        }
    };
    Tensor::from_vec(shape, data).unwrap_or_else(|_| Tensor::zeros(shape))
}

fn normal(n: usize, stddev: f32, rng: &mut impl Rng) -> Vec<f32> {
    match Normal::new(0.0, stddev) {
        Ok(d) => (0..n).map(|_| d.sample(rng)).collect(),
        Err(_) => vec![0.0; n],
    }
}

/// tf.truncated_normal: values more than two standard deviations out are drawn again.
fn truncated_normal(n: usize, stddev: f32, rng: &mut impl Rng) -> Vec<f32> {
    let Ok(d) = Normal::new(0.0f32, stddev) else { return vec![0.0; n] };
    (0..n)
        .map(|_| loop {
            let v = d.sample(rng);
            if v.abs() <= 2.0 * stddev {
                break v;
            }
        })
        .collect()
}
