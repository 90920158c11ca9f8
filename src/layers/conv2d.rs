//! Convolution layer: y = conv(x, W) + b, optionally with ReLU fused into the same pass.
//! Shapes: x [N, H, W, C_in] -> y [N, oh, ow, C_out]; W [kh, kw, C_in, C_out], b [C_out].
//! Keeps x (and y when ReLU is fused) for the backward pass; see `ops::conv2d` for the formulas.

use super::{cached, check_input, Layer, Mode, Param};
use crate::error::Result;
use crate::ops::activation::Activation;
use crate::ops::conv2d::{conv2d_backward, conv2d_forward, conv2d_geometry};
use crate::ops::Window;
use crate::tensor::Tensor;

pub struct Conv2dLayer {
    name: String,
    window: Window,
    input: Vec<usize>,
    output: Vec<usize>,
    pub weight: Param,
    pub bias: Param,
    /// ReLU applied in the forward pass (a following relu layer folded in).
    pub relu: bool,
    x: Option<Tensor>,
    y: Option<Tensor>,
}

impl Conv2dLayer {
    /// `input` is [H, W, C_in]; `weight` is [kh, kw, C_in, C_out].
    pub fn new(name: String, input: &[usize], window: Window, weight: Param, bias: Param) -> Result<Conv2dLayer> {
        let x_shape = [&[1], input].concat();
        let (g, _, _, c_out) = conv2d_geometry(&x_shape, weight.value.shape(), Some(bias.value.shape()), &window)
            .map_err(|e| crate::Error::invalid(&name, e.to_string()))?;
        Ok(Conv2dLayer { output: vec![g.oh, g.ow, c_out], input: input.to_vec(), name, window, weight, bias, relu: false, x: None, y: None })
    }
}

impl Layer for Conv2dLayer {
    fn kind(&self) -> &'static str {
        "conv2d"
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        check_input(&self.name, x, &self.input)?;
        let y = conv2d_forward(x, &self.weight.value, &self.bias.value, &self.window, self.relu)?;
        if mode == Mode::Train {
            self.x = Some(x.clone());
            self.y = if self.relu { Some(y.clone()) } else { None };
        }
        Ok(y)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let x = cached(&self.x, &self.name)?;
        let mut dz = dy.clone();
        if self.relu {
            Activation::Relu.backward(cached(&self.y, &self.name)?.data(), dz.data_mut());
        }
        let g = conv2d_backward(x, &self.weight.value, &dz, &self.window)?;
        self.weight.grad = g.d_weight;
        self.bias.grad = g.d_bias;
        Ok(g.d_input)
    }
    fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
    fn flops(&self) -> u64 {
        let k: usize = self.weight.value.shape()[..3].iter().product();
        2 * (self.output.iter().product::<usize>() * k) as u64
    }
}
