//! Max and average pooling layers. Max pooling keeps the argmax of each output for the
//! backward pass; average pooling needs only the shapes. See `ops::pool` for the formulas.

use super::{check_input, Layer, Mode};
use crate::error::{Error, Result};
use crate::ops::pool::{avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward, pool_geometry};
use crate::ops::Window;
use crate::tensor::Tensor;

fn output_shape(name: &str, op: &str, input: &[usize], window: &Window) -> Result<Vec<usize>> {
    let (g, _, c) = pool_geometry(op, &[&[1], input].concat(), window).map_err(|e| Error::invalid(name, e.to_string()))?;
    Ok(vec![g.oh, g.ow, c])
}

pub struct MaxPoolLayer {
    name: String,
    window: Window,
    input: Vec<usize>,
    output: Vec<usize>,
    /// Argmax per output and the batch size it belongs to.
    argmax: Option<(Vec<u32>, usize)>,
}

impl MaxPoolLayer {
    pub fn new(name: String, input: &[usize], window: Window) -> Result<MaxPoolLayer> {
        let output = output_shape(&name, "max_pool2d", input, &window)?;
        Ok(MaxPoolLayer { name, window, input: input.to_vec(), output, argmax: None })
    }
}

impl Layer for MaxPoolLayer {
    fn kind(&self) -> &'static str {
        "max_pool"
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        check_input(&self.name, x, &self.input)?;
        let (y, argmax) = max_pool2d_forward(x, &self.window)?;
        if mode == Mode::Train {
            self.argmax = Some((argmax, x.shape()[0]));
        }
        Ok(y)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let (argmax, n) = self.argmax.as_ref().ok_or_else(|| Error::invalid(&self.name, "backward called before forward"))?;
        max_pool2d_backward(dy, argmax, &[&[*n], &self.input[..]].concat())
    }
}

pub struct AvgPoolLayer {
    name: String,
    window: Window,
    input: Vec<usize>,
    output: Vec<usize>,
}

impl AvgPoolLayer {
    pub fn new(name: String, input: &[usize], window: Window) -> Result<AvgPoolLayer> {
        let output = output_shape(&name, "avg_pool2d", input, &window)?;
        Ok(AvgPoolLayer { name, window, input: input.to_vec(), output })
    }
}

impl Layer for AvgPoolLayer {
    fn kind(&self) -> &'static str {
        "avg_pool"
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        check_input(&self.name, x, &self.input)?;
        avg_pool2d_forward(x, &self.window)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let n = dy.shape()[0];
        avg_pool2d_backward(dy, &[&[n], &self.input[..]].concat(), &self.window)
    }
}
