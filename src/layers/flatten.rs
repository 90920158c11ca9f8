//! Flatten: [N, H, W, C] -> [N, H*W*C] in NHWC order (as TensorFlow flattens); backward
//! reshapes the gradient back. The values do not change, only the shape.

use super::{check_input, Layer, Mode};
use crate::error::Result;
use crate::tensor::Tensor;

pub struct FlattenLayer {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    y: Tensor,
    dx: Tensor,
}

impl FlattenLayer {
    pub fn new(name: String, input: &[usize]) -> FlattenLayer {
        FlattenLayer { name, input: input.to_vec(), output: vec![input.iter().product()], y: Tensor::empty(), dx: Tensor::empty() }
    }
}

impl Layer for FlattenLayer {
    fn kind(&self) -> &'static str {
        "flatten"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        self.y.resize(&[x.shape()[0], self.output[0]]);
        self.y.data_mut().copy_from_slice(x.data());
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        if need_input_grad {
            self.dx.resize(x.shape());
            self.dx.data_mut().copy_from_slice(dy.data());
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
