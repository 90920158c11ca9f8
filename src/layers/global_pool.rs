//! Global average pooling: [N, H, W, C] -> [N, C], the mean of each channel over the image.
//!   forward:  y[n, c] = 1/(H W) sum_{i, j} x[n, i, j, c]
//!   backward: dx[n, i, j, c] = dy[n, c] / (H W)

use super::{check_backward, check_input, Layer, Mode};
use crate::error::Result;
use crate::tensor::Tensor;

pub struct GlobalAvgPoolLayer {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    y: Tensor,
    dx: Tensor,
}

impl GlobalAvgPoolLayer {
    /// `input` is [H, W, C].
    pub fn new(name: String, input: &[usize]) -> GlobalAvgPoolLayer {
        let c = input.last().copied().unwrap_or(1);
        GlobalAvgPoolLayer { name, input: input.to_vec(), output: vec![c], y: Tensor::empty(), dx: Tensor::empty() }
    }
}

impl Layer for GlobalAvgPoolLayer {
    fn kind(&self) -> &'static str {
        "global_avg_pool"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        let (n, c) = (x.shape()[0], self.output[0]);
        let hw = self.input[0] * self.input[1];
        self.y.resize(&[n, c]);
        for (y, img) in self.y.data_mut().chunks_exact_mut(c).zip(x.data().chunks_exact(hw * c)) {
            y.fill(0.0);
            for px in img.chunks_exact(c) {
                y.iter_mut().zip(px).for_each(|(a, v)| *a += v);
            }
            y.iter_mut().for_each(|a| *a /= hw as f32);
        }
        Ok(())
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        if need_input_grad {
            let c = self.output[0];
            let hw = self.input[0] * self.input[1];
            self.dx.resize(x.shape());
            for (dx, d) in self.dx.data_mut().chunks_exact_mut(hw * c).zip(dy.data().chunks_exact(c)) {
                for px in dx.chunks_exact_mut(c) {
                    px.iter_mut().zip(d).for_each(|(a, v)| *a = v / hw as f32);
                }
            }
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
