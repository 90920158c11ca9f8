//! Residual block: y = F(x) + shortcut(x), where F is a sequence of layers (the body) and the
//! shortcut is x itself, or a 1x1 convolution (the projection) when F changes the shape.
//!   backward: dx = dF/dx(dy) + d shortcut/dx(dy)   (the gradient flows through both paths)
//! A ReLU after the addition, as in ResNet, is an ordinary relu layer after the block.

use rayon::prelude::*;

use super::Sequential;
use super::{check_backward, check_input, Layer, Mode, Param};
use crate::chunks::VALUES_PER_CHUNK;
use crate::error::{Error, Result};
use crate::ops::Precision;
use crate::tensor::Tensor;

pub struct ResidualLayer {
    name: String,
    input: Vec<usize>,
    body: Sequential,
    projection: Option<Box<dyn Layer>>,
    y: Tensor,
    dx: Tensor,
}

impl ResidualLayer {
    /// `body` maps `input` to some shape; `projection` (a 1x1 conv) must map `input` to the same
    /// shape, or be None when the body keeps the shape.
    pub fn new(name: String, input: &[usize], body: Sequential, projection: Option<Box<dyn Layer>>) -> Result<ResidualLayer> {
        let output = body.output_shape();
        let shortcut = projection.as_ref().map_or(input, |p| p.output_shape());
        if shortcut != output {
            return Err(Error::shape(&name, format!("the shortcut's shape {shortcut:?}"), format!("the body's output {output:?}")));
        }
        Ok(ResidualLayer { name, input: input.to_vec(), body, projection, y: Tensor::empty(), dx: Tensor::empty() })
    }

    pub fn body(&self) -> &Sequential {
        &self.body
    }
}

impl Layer for ResidualLayer {
    fn kind(&self) -> &'static str {
        "residual"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        self.body.output_shape()
    }
    fn set_precision(&mut self, precision: Precision) {
        self.body.set_precision(precision);
        if let Some(p) = self.projection.as_mut() {
            p.set_precision(precision);
        }
    }
    fn set_seed(&mut self, seed: u64) {
        self.body.set_seeds(|j| crate::seeds::block_layer_seed(seed, j));
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        self.body.forward(x, mode)?;
        let shortcut = match self.projection.as_mut() {
            Some(p) => {
                p.forward(x, mode)?;
                p.output()
            }
            None => x,
        };
        let body_out = self.body.output();
        self.y.resize(body_out.shape());
        add_into(self.y.data_mut(), body_out.data(), shortcut.data());
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        self.body.backward(x, dy, need_input_grad)?;
        if let Some(p) = self.projection.as_mut() {
            p.backward(x, dy, need_input_grad)?;
        }
        if need_input_grad {
            let d_body = self.body.input_grad();
            let d_short = self.projection.as_ref().map_or(dy, |p| p.input_grad());
            self.dx.resize(x.shape());
            add_into(self.dx.data_mut(), d_body.data(), d_short.data());
        }
        Ok(())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn backward_reads_output(&self) -> bool {
        false
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
    fn params(&self) -> Vec<&Param> {
        let mut v = self.body.params();
        if let Some(p) = &self.projection {
            v.extend(p.params());
        }
        v
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut v = self.body.params_mut();
        if let Some(p) = self.projection.as_mut() {
            v.extend(p.params_mut());
        }
        v
    }
    fn flops(&self) -> u64 {
        self.body.flops() + self.projection.as_ref().map_or(0, |p| p.flops())
    }
}

/// out = a + b, elementwise, on every core.
fn add_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    let chunks = out.par_chunks_mut(VALUES_PER_CHUNK).zip(a.par_chunks(VALUES_PER_CHUNK));
    chunks.zip(b.par_chunks(VALUES_PER_CHUNK)).for_each(|((out, a), b)| {
        out.iter_mut().zip(a).zip(b).for_each(|((o, a), b)| *o = a + b);
    });
}
