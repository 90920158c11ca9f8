//! Fully connected layer: y = x W + b. Shapes: x [N, in] -> y [N, out]; W [in, out], b [out].
//! Keeps x for the backward pass; see `ops::dense` for the formulas.

use super::{cached, check_input, Layer, Mode, Param};
use crate::error::{Error, Result};
use crate::ops::dense::{dense_backward, dense_forward};
use crate::tensor::Tensor;

pub struct DenseLayer {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    pub weight: Param,
    pub bias: Param,
    x: Option<Tensor>,
}

impl DenseLayer {
    /// `input` must be [features]: a flatten layer goes before a dense layer on images.
    pub fn new(name: String, input: &[usize], weight: Param, bias: Param) -> Result<DenseLayer> {
        let (fin, fout) = weight.value.dims2(&name)?;
        if input != [fin] {
            return Err(Error::shape(
                &name,
                format!("input [{fin}] (put a flatten layer before dense on images)"),
                format!("{input:?}"),
            ));
        }
        Ok(DenseLayer { name, input: input.to_vec(), output: vec![fout], weight, bias, x: None })
    }
}

impl Layer for DenseLayer {
    fn kind(&self) -> &'static str {
        "dense"
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        check_input(&self.name, x, &self.input)?;
        let y = dense_forward(x, &self.weight.value, &self.bias.value)?;
        if mode == Mode::Train {
            self.x = Some(x.clone());
        }
        Ok(y)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let (dx, dw, db) = dense_backward(cached(&self.x, &self.name)?, &self.weight.value, dy)?;
        self.weight.grad = dw;
        self.bias.grad = db;
        Ok(dx)
    }
    fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
    fn flops(&self) -> u64 {
        2 * self.weight.value.len() as u64
    }
}
