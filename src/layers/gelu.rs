//! GELU layer (exact, erf-based; see `ops::gelu` for the formula). The backward pass reads the
//! forward input x, which the layer before still holds, so nothing is kept but the output.

use rayon::prelude::*;

use super::{check_backward, check_input, Layer, Mode};
use crate::chunks::VALUES_PER_CHUNK;
use crate::error::Result;
use crate::ops::gelu::{gelu_backward_into, gelu_forward_into};
use crate::tensor::Tensor;

pub struct GeluLayer {
    name: String,
    shape: Vec<usize>,
    y: Tensor,
    dx: Tensor,
}

impl GeluLayer {
    pub fn new(name: String, input: &[usize]) -> GeluLayer {
        GeluLayer { name, shape: input.to_vec(), y: Tensor::empty(), dx: Tensor::empty() }
    }
}

impl Layer for GeluLayer {
    fn kind(&self) -> &'static str {
        "gelu"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.shape)?;
        self.y.resize(x.shape());
        let chunks = self.y.data_mut().par_chunks_mut(VALUES_PER_CHUNK).zip(x.data().par_chunks(VALUES_PER_CHUNK));
        chunks.for_each(|(y, x)| gelu_forward_into(x, y));
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            self.dx.resize(dy.shape());
            let chunks = self.dx.data_mut().par_chunks_mut(VALUES_PER_CHUNK).zip(dy.data().par_chunks(VALUES_PER_CHUNK));
            chunks.zip(x.data().par_chunks(VALUES_PER_CHUNK)).for_each(|((dx, dy), x)| gelu_backward_into(x, dy, dx));
        }
        Ok(())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn backward_reads_output(&self) -> bool {
        false
    }
    fn recomputable(&self) -> bool {
        true
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
    fn take_output(&mut self, y: &mut Tensor) {
        std::mem::swap(&mut self.y, y);
    }
}
