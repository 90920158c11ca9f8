//! Local response normalisation layer (TensorFlow's tf.nn.lrn). Keeps the scale for the
//! backward pass; see `ops::lrn` for the formulas.

use super::{check_backward, check_input, Layer, Mode};
use crate::error::{Error, Result};
use crate::ops::lrn::{lrn_backward_into, lrn_forward_into, LrnParams};
use crate::tensor::Tensor;

pub struct LrnLayer {
    name: String,
    pub params: LrnParams,
    shape: Vec<usize>,
    y: Tensor,
    scale: Tensor,
    dx: Tensor,
}

impl LrnLayer {
    pub fn new(name: String, input: &[usize], params: LrnParams) -> Result<LrnLayer> {
        params.validate().map_err(|e| Error::invalid(&name, e.to_string()))?;
        Ok(LrnLayer { name, params, shape: input.to_vec(), y: Tensor::empty(), scale: Tensor::empty(), dx: Tensor::empty() })
    }
}

impl Layer for LrnLayer {
    fn kind(&self) -> &'static str {
        "lrn"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.shape)?;
        lrn_forward_into(x, &self.params, &mut self.y, &mut self.scale)
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            lrn_backward_into(x, &self.y, &self.scale, dy, &self.params, &mut self.dx)?;
        }
        Ok(())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
}
