//! Max and average pooling layers. Max pooling keeps the argmax of each output for the
//! backward pass; average pooling needs only the shapes. See `ops::pool` for the formulas.

use super::{check_backward, check_input, Layer, Mode};
use crate::error::{Error, Result};
use crate::ops::pool::{
    avg_pool2d_backward_into, avg_pool2d_forward_into, max_pool2d_backward_into, max_pool2d_forward_into, pool_geometry,
};
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
    y: Tensor,
    /// For every output, the index within its image of the input that won.
    argmax: Vec<u32>,
    dx: Tensor,
}

impl MaxPoolLayer {
    pub fn new(name: String, input: &[usize], window: Window) -> Result<MaxPoolLayer> {
        let output = output_shape(&name, "max_pool2d", input, &window)?;
        Ok(MaxPoolLayer { name, window, input: input.to_vec(), output, y: Tensor::empty(), argmax: Vec::new(), dx: Tensor::empty() })
    }
}

impl Layer for MaxPoolLayer {
    fn kind(&self) -> &'static str {
        "max_pool"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        max_pool2d_forward_into(x, &self.window, &mut self.y, &mut self.argmax)
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            max_pool2d_backward_into(dy, &self.argmax, x.shape(), &self.window, &mut self.dx)?;
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
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
    fn max_pool_window(&self) -> Option<Window> {
        Some(self.window)
    }
    fn max_pool_outputs(&mut self) -> Option<(&mut Tensor, &mut Vec<u32>)> {
        Some((&mut self.y, &mut self.argmax))
    }
    fn take_output(&mut self, y: &mut Tensor) {
        std::mem::swap(&mut self.y, y);
        self.skipped_in_fusion();
    }
    fn skipped_in_fusion(&mut self) {
        // No winners were kept: a backward pass now is refused (`max_pool2d_backward_into`
        // checks their count), not routed by an older batch's.
        self.argmax.clear();
    }
}

pub struct AvgPoolLayer {
    name: String,
    window: Window,
    input: Vec<usize>,
    output: Vec<usize>,
    y: Tensor,
    dx: Tensor,
}

impl AvgPoolLayer {
    pub fn new(name: String, input: &[usize], window: Window) -> Result<AvgPoolLayer> {
        let output = output_shape(&name, "avg_pool2d", input, &window)?;
        Ok(AvgPoolLayer { name, window, input: input.to_vec(), output, y: Tensor::empty(), dx: Tensor::empty() })
    }
}

impl Layer for AvgPoolLayer {
    fn kind(&self) -> &'static str {
        "avg_pool"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        avg_pool2d_forward_into(x, &self.window, &mut self.y)
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            avg_pool2d_backward_into(dy, x.shape(), &self.window, &mut self.dx)?;
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
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
}
