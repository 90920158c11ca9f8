//! Flatten: [N, H, W, C] -> [N, H*W*C] in NHWC order (as TensorFlow flattens); backward
//! reshapes the gradient back. No data moves.

use super::{check_input, Layer, Mode};
use crate::error::Result;
use crate::tensor::Tensor;

pub struct FlattenLayer {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
}

impl FlattenLayer {
    pub fn new(name: String, input: &[usize]) -> FlattenLayer {
        FlattenLayer { name, input: input.to_vec(), output: vec![input.iter().product()] }
    }
}

impl Layer for FlattenLayer {
    fn kind(&self) -> &'static str {
        "flatten"
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        check_input(&self.name, x, &self.input)?;
        x.clone().reshape(&[x.shape()[0], self.output[0]])
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        dy.clone().reshape(&[&[dy.shape()[0]], &self.input[..]].concat())
    }
}
