//! Multiplication by a constant: y = factor x, so dx = factor dy. The fast CIFAR-10 recipe
//! scales its logits by 1/9 (a fixed temperature: its dense layer's outputs would otherwise be
//! too large for the softmax at its learning rate).

use rayon::prelude::*;

use super::{check_backward, check_input, Layer, Mode};
use crate::chunks::VALUES_PER_CHUNK;
use crate::error::Result;
use crate::tensor::Tensor;

/// The factor must be finite and not zero (a zero would cut every gradient); checked by the
/// model spec before a layer is built.
pub fn check_factor(factor: f32) -> std::result::Result<(), String> {
    if factor.is_finite() && factor != 0.0 {
        Ok(())
    } else {
        Err(format!("factor must be a finite number other than 0, got {factor}"))
    }
}

pub struct ScaleLayer {
    name: String,
    shape: Vec<usize>,
    pub factor: f32,
    y: Tensor,
    dx: Tensor,
}

impl ScaleLayer {
    pub fn new(name: String, input: &[usize], factor: f32) -> ScaleLayer {
        ScaleLayer { name, shape: input.to_vec(), factor, y: Tensor::empty(), dx: Tensor::empty() }
    }
}

/// out = factor * v, elementwise, in chunks on every core.
fn scaled(out: &mut Tensor, v: &Tensor, factor: f32) {
    out.resize(v.shape());
    let chunks = out.data_mut().par_chunks_mut(VALUES_PER_CHUNK).zip(v.data().par_chunks(VALUES_PER_CHUNK));
    chunks.for_each(|(o, v)| o.iter_mut().zip(v).for_each(|(o, &v)| *o = factor * v));
}

impl Layer for ScaleLayer {
    fn kind(&self) -> &'static str {
        "scale"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.shape)?;
        scaled(&mut self.y, x, self.factor);
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            scaled(&mut self.dx, dy, self.factor);
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
    fn recomputable(&self) -> bool {
        true
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
}
