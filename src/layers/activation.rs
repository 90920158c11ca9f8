//! Elementwise activation layer (relu, sigmoid, tanh). The backward pass needs only its own
//! output y; see `ops::activation` for the derivatives.

use super::{check_backward, check_input, Layer, Mode};
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
        self.y.copy_from(x);
        self.activation.forward(self.y.data_mut());
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            self.dx.copy_from(dy);
            self.activation.backward(self.y.data(), self.dx.data_mut());
        }
        Ok(())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
}
