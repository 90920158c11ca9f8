//! Residual block: y = F(x) + shortcut(x), where F is a sub-list of layers and the shortcut is
//! x itself, or a 1x1 convolution (the projection) when F changes the shape.
//!   backward: dx = dF/dx(dy) + d shortcut/dx(dy)   (the gradient flows through both paths)
//! A ReLU after the addition, as in ResNet, is an ordinary relu layer after the block.

use super::{check_backward, check_input, Layer, Mode, Param};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub struct ResidualLayer {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    body: Vec<Box<dyn Layer>>,
    projection: Option<Box<dyn Layer>>,
    y: Tensor,
    dx: Tensor,
}

impl ResidualLayer {
    /// `body` maps `input` to some shape; `projection` (a 1x1 conv) must map `input` to the same
    /// shape, or be None when the body keeps the shape.
    pub fn new(
        name: String,
        input: &[usize],
        mut body: Vec<Box<dyn Layer>>,
        mut projection: Option<Box<dyn Layer>>,
    ) -> Result<ResidualLayer> {
        let output = match body.last() {
            Some(l) => l.output_shape().to_vec(),
            None => return Err(Error::invalid(&name, "a residual block needs at least one layer")),
        };
        let shortcut = projection.as_ref().map_or(input.to_vec(), |p| p.output_shape().to_vec());
        if shortcut != output {
            return Err(Error::shape(&name, format!("the shortcut's shape {shortcut:?}"), format!("the body's output {output:?}")));
        }
        // Sub-layer parameters are named by their place in the block: "0.conv2d.weight".
        for (j, layer) in body.iter_mut().enumerate() {
            let kind = layer.kind();
            for p in layer.params_mut() {
                p.name = format!("{j}.{kind}.{}", p.name);
            }
        }
        if let Some(p) = projection.as_mut() {
            for param in p.params_mut() {
                param.name = format!("shortcut.{}", param.name);
            }
        }
        Ok(ResidualLayer { name, input: input.to_vec(), output, body, projection, y: Tensor::empty(), dx: Tensor::empty() })
    }

    pub fn body(&self) -> &[Box<dyn Layer>] {
        &self.body
    }
}

impl Layer for ResidualLayer {
    fn kind(&self) -> &'static str {
        "residual"
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn set_seed(&mut self, seed: u64) {
        for (j, l) in self.body.iter_mut().enumerate() {
            l.set_seed(crate::seeds::block_layer_seed(seed, j));
        }
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        for i in 0..self.body.len() {
            let (before, rest) = self.body.split_at_mut(i);
            rest[0].forward(before.last().map_or(x, |l| l.output()), mode)?;
        }
        let shortcut = match self.projection.as_mut() {
            Some(p) => {
                p.forward(x, mode)?;
                p.output()
            }
            None => x,
        };
        let body_out = self.body.last().map(|l| l.output()).unwrap_or(x);
        self.y.resize(body_out.shape());
        for ((y, a), b) in self.y.data_mut().iter_mut().zip(body_out.data()).zip(shortcut.data()) {
            *y = a + b;
        }
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        for i in (0..self.body.len()).rev() {
            let (before, rest) = self.body.split_at_mut(i);
            let (current, after) = rest.split_at_mut(1);
            let input = before.last().map_or(x, |l| l.output());
            let d = after.first().map_or(dy, |l| l.input_grad());
            current[0].backward(input, d, i > 0 || need_input_grad)?;
        }
        if let Some(p) = self.projection.as_mut() {
            p.backward(x, dy, need_input_grad)?;
        }
        if need_input_grad {
            let d_body = self.body[0].input_grad();
            let d_short = self.projection.as_ref().map_or(dy, |p| p.input_grad());
            self.dx.resize(x.shape());
            for ((d, a), b) in self.dx.data_mut().iter_mut().zip(d_body.data()).zip(d_short.data()) {
                *d = a + b;
            }
        }
        Ok(())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn params(&self) -> Vec<&Param> {
        let mut v: Vec<&Param> = self.body.iter().flat_map(|l| l.params()).collect();
        if let Some(p) = &self.projection {
            v.extend(p.params());
        }
        v
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut v: Vec<&mut Param> = self.body.iter_mut().flat_map(|l| l.params_mut()).collect();
        if let Some(p) = self.projection.as_mut() {
            v.extend(p.params_mut());
        }
        v
    }
    fn flops(&self) -> u64 {
        self.body.iter().map(|l| l.flops()).sum::<u64>() + self.projection.as_ref().map_or(0, |p| p.flops())
    }
}
