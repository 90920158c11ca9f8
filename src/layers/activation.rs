//! Elementwise activation layer (relu, sigmoid, tanh). The backward pass needs only its own
//! output y; see `ops::activation` for the derivatives.

use rayon::prelude::*;

use super::{check_backward, check_input, Layer, Mode};
use crate::chunks::VALUES_PER_CHUNK;
use crate::error::Result;
use crate::ops::activation::Activation;
use crate::tensor::Tensor;

pub struct ActivationLayer {
    name: String,
    pub activation: Activation,
    shape: Vec<usize>,
    y: Tensor,
    dx: Tensor,
}

impl ActivationLayer {
    pub fn new(name: String, input: &[usize], activation: Activation) -> ActivationLayer {
        ActivationLayer { name, activation, shape: input.to_vec(), y: Tensor::empty(), dx: Tensor::empty() }
    }
}

impl Layer for ActivationLayer {
    fn kind(&self) -> &'static str {
        self.activation.name()
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.shape)?;
        // One pass (copy and activate per chunk, while the chunk is in cache), on every core.
        self.y.resize(x.shape());
        self.y.data_mut().par_chunks_mut(VALUES_PER_CHUNK).zip(x.data().par_chunks(VALUES_PER_CHUNK)).for_each(|(y, x)| {
            y.copy_from_slice(x);
            self.activation.forward(y);
        });
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            let activation = self.activation;
            self.dx.resize(dy.shape());
            let chunks = self.dx.data_mut().par_chunks_mut(VALUES_PER_CHUNK).zip(dy.data().par_chunks(VALUES_PER_CHUNK));
            chunks.zip(self.y.data().par_chunks(VALUES_PER_CHUNK)).for_each(|((dx, dy), y)| activation.backward_into(y, dy, dx));
        }
        Ok(())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn recomputable(&self) -> bool {
        true
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
}
