//! Local response normalisation layer (TensorFlow's tf.nn.lrn). Keeps x, y and the scale for
//! the backward pass; see `ops::lrn` for the formulas.

use super::{check_input, Layer, Mode};
use crate::error::{Error, Result};
use crate::ops::lrn::{lrn_backward, lrn_forward, LrnParams};
use crate::tensor::Tensor;

pub struct LrnLayer {
    name: String,
    pub params: LrnParams,
    shape: Vec<usize>,
    cache: Option<(Tensor, Tensor, Tensor)>,
}

impl LrnLayer {
    pub fn new(name: String, input: &[usize], params: LrnParams) -> Result<LrnLayer> {
        params.validate().map_err(|e| Error::invalid(&name, e.to_string()))?;
        Ok(LrnLayer { name, params, shape: input.to_vec(), cache: None })
    }
}

impl Layer for LrnLayer {
    fn kind(&self) -> &'static str {
        "lrn"
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        check_input(&self.name, x, &self.shape)?;
        let (y, scale) = lrn_forward(x, &self.params)?;
        if mode == Mode::Train {
            self.cache = Some((x.clone(), y.clone(), scale));
        }
        Ok(y)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let (x, y, scale) = self.cache.as_ref().ok_or_else(|| Error::invalid(&self.name, "backward called before forward"))?;
        lrn_backward(x, y, scale, dy, &self.params)
    }
}
