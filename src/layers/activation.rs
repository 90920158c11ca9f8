//! Elementwise activation layer (relu, sigmoid, tanh). Keeps its output y for the backward
//! pass; see `ops::activation` for the derivatives.

use super::{cached, check_input, Layer, Mode};
use crate::error::Result;
use crate::ops::activation::Activation;
use crate::tensor::Tensor;

pub struct ActivationLayer {
    name: String,
    pub activation: Activation,
    shape: Vec<usize>,
    y: Option<Tensor>,
}

impl ActivationLayer {
    pub fn new(name: String, input: &[usize], activation: Activation) -> ActivationLayer {
        ActivationLayer { name, activation, shape: input.to_vec(), y: None }
    }
}

impl Layer for ActivationLayer {
    fn kind(&self) -> &'static str {
        self.activation.name()
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        check_input(&self.name, x, &self.shape)?;
        let mut y = x.clone();
        self.activation.forward(y.data_mut());
        if mode == Mode::Train {
            self.y = Some(y.clone());
        }
        Ok(y)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let mut dx = dy.clone();
        self.activation.backward(cached(&self.y, &self.name)?.data(), dx.data_mut());
        Ok(dx)
    }
}
