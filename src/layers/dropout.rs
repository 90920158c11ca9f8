//! Inverted dropout: in training each value is kept with probability 1 - rate and scaled by
//! 1 / (1 - rate), so evaluation (which passes values through unchanged) needs no rescaling.
//! ```text
//!   forward:  y = x * mask,  mask[i] = 1/(1-rate) with probability 1-rate, else 0
//!   backward: dx = dy * mask
//! ```
//! The mask comes from a seeded RNG set for every step (`set_seed`): runs are reproducible.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{check_backward, check_input, Layer, Mode};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A dropout rate must be in [0, 1): at 1 nothing would be kept, and 1 / (1 - rate) is infinite.
pub fn check_rate(rate: f32) -> std::result::Result<(), String> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("rate must be in [0, 1), got {rate}"))
    }
}

pub struct DropoutLayer {
    name: String,
    rate: f32,
    shape: Vec<usize>,
    seed: u64,
    mask: Vec<f32>,
    y: Tensor,
    dx: Tensor,
}

impl DropoutLayer {
    pub fn new(name: String, input: &[usize], rate: f32) -> Result<DropoutLayer> {
        check_rate(rate).map_err(|detail| Error::invalid(&name, detail))?;
        Ok(DropoutLayer { name, rate, shape: input.to_vec(), seed: 0, mask: Vec::new(), y: Tensor::empty(), dx: Tensor::empty() })
    }
}

impl Layer for DropoutLayer {
    fn kind(&self) -> &'static str {
        "dropout"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.shape)?;
        self.y.copy_from(x);
        if mode == Mode::Train && self.rate > 0.0 {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            // One 32-bit word per value: a rank of a distributed step whose images start at
            // image i of the batch skips the words of the images before it, so each image gets
            // the mask it would get in one process.
            let per_image = x.len() / x.shape()[0].max(1);
            rng.set_word_pos((crate::dist::first_image() * per_image) as u128);
            let keep = 1.0 / (1.0 - self.rate);
            self.mask.clear();
            self.mask.extend((0..x.len()).map(|_| if rng.gen::<f32>() < self.rate { 0.0 } else { keep }));
            self.y.data_mut().iter_mut().zip(&self.mask).for_each(|(v, m)| *v *= m);
        } else {
            self.mask.clear();
        }
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            self.dx.copy_from(dy);
            if !self.mask.is_empty() {
                self.dx.data_mut().iter_mut().zip(&self.mask).for_each(|(v, m)| *v *= m);
            }
        }
        Ok(())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn backward_reads_input(&self) -> bool {
        false
    }
    fn backward_reads_output(&self) -> bool {
        false
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
}
