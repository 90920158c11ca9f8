//! Layers in order, like torch.nn.Sequential: the body of a network and of a residual block.
//! Forward runs them first to last, each reading the output of the one before (the first reads
//! the input x); backward runs them last to first, each reading the input gradient of the one
//! after (the last reads dy).
//! Nothing is copied between layers: each reads the buffer the layer before it owns, as in
//! Caffe. The timed variants (for `convnet bench --layers`) are the same loops with a clock.

use std::time::Instant;

use super::spare_buffers::{Role, SpareBuffers};
use super::{Layer, Mode, Param};
use crate::error::{Error, Result};
use crate::ops::Precision;
use crate::tensor::Tensor;

pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    /// Buffers lent between the layers (see `spare_buffers`).
    spares: SpareBuffers,
}

impl Sequential {
    /// At least one layer, each taking the output shape of the one before.
    pub fn new(layers: Vec<Box<dyn Layer>>) -> Result<Sequential> {
        if layers.is_empty() {
            return Err(Error::invalid("sequential", "needs at least one layer"));
        }
        Ok(Sequential { layers, spares: SpareBuffers::default() })
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// One example's output shape (the last layer's).
    pub fn output_shape(&self) -> &[usize] {
        self.last().output_shape()
    }

    /// The last forward pass's output (the last layer's).
    pub fn output(&self) -> &Tensor {
        self.last().output()
    }

    /// The last backward pass's input gradient (the first layer's).
    pub fn input_grad(&self) -> &Tensor {
        self.layers[0].input_grad()
    }

    fn last(&self) -> &dyn Layer {
        match self.layers.last() {
            Some(l) => l.as_ref(),
            None => unreachable!("a Sequential has at least one layer (checked by new)"),
        }
    }

    /// Runs batch `x` through every layer. In evaluation mode a layer may compute the next one
    /// with it in one pass (a batch norm folded into the convolution before it); the output of
    /// the first of such a pair is then not kept. Every other layer keeps its output.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        self.run_forward(x, mode, None, true)
    }

    /// `forward` without fusing layers: every layer keeps its own output (for pictures of
    /// each layer's activations).
    pub fn forward_each(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        self.run_forward(x, mode, None, false)
    }

    /// `forward`, with each layer's seconds written to `seconds[i]` (a fused pair's time goes
    /// to its first layer).
    pub fn forward_timed(&mut self, x: &Tensor, mode: Mode, seconds: &mut [f64]) -> Result<()> {
        self.run_forward(x, mode, Some(seconds), true)
    }

    /// Backpropagates `dy` (the gradient of the last output) through every layer, filling
    /// their parameter gradients; `x` is the last forward pass's input. The first layer
    /// computes its input gradient only if `need_input_grad`.
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        self.run_backward(x, dy, need_input_grad, None)
    }

    /// `backward`, with each layer's seconds written to `seconds[i]`.
    pub fn backward_timed(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool, seconds: &mut [f64]) -> Result<()> {
        self.run_backward(x, dy, need_input_grad, Some(seconds))
    }

    fn run_forward(&mut self, x: &Tensor, mode: Mode, mut seconds: Option<&mut [f64]>, fuse: bool) -> Result<()> {
        let batch = x.shape().first().copied().unwrap_or(0);
        match mode {
            Mode::Train => self.spares.begin_step(),
            Mode::Eval => self.spares.end_step(),
        }
        let mut i = 0;
        while i < self.layers.len() {
            let (before, rest) = self.layers.split_at_mut(i);
            let input = before.last().map_or(x, |l| l.output());
            // This layer's output, and the next one's if they may run as one (evaluation: the
            // output then ends in the last layer the pass takes, by swapping buffers). In
            // training a pair runs as one only where the first one's output is never written
            // (`Layer::forward_train_fused`): the next one's output alone, and a buffer the
            // first one's still held (after an evaluation pass) lent out.
            let fusable = fuse && mode == Mode::Eval;
            let fused_in_training =
                fuse && mode == Mode::Train && matches!(rest, [current, next, ..] if current.fuses_in_training(next.as_ref(), batch));
            if fused_in_training {
                if let Some((y, _)) = rest[0].buffers_mut().filter(|(y, _)| !y.is_empty()) {
                    self.spares.lend(y);
                }
            }
            let filled = if fused_in_training { 1..2 } else { 0..if fusable { 2 } else { 1 } };
            for (j, layer) in rest.iter_mut().enumerate().take(filled.end).skip(filled.start) {
                let len = batch * layer.output_shape().iter().product::<usize>();
                if let Some((y, _)) = layer.buffers_mut() {
                    self.spares.fill(y, (i + j, Role::Output), len);
                }
            }
            let start = seconds.is_some().then(Instant::now);
            // How many layers after this one its pass computed too.
            let taken = match rest {
                [current, next @ ..] if fusable => current.forward_eval_fused(input, next)?,
                [current, next, ..] if fused_in_training => usize::from(current.forward_train_fused(input, next.as_mut())?),
                _ => 0,
            };
            if taken == 0 {
                rest[0].forward(input, mode)?;
            }
            if let (Some(s), Some(start)) = (seconds.as_deref_mut(), start) {
                s[i] = start.elapsed().as_secs_f64();
                s[i + 1..=i + taken].fill(0.0);
            }
            // In training, the input's buffer is lent out if no backward pass will read it, or
            // if the layer that made it can make it again from its own input (still kept).
            if let (Mode::Train, Some((previous, earlier))) = (mode, before.split_last_mut()) {
                let dead = !rest[0].backward_reads_input() && !previous.backward_reads_output();
                let remade = previous.recomputable() && !earlier.last().is_some_and(|l| l.output().is_hollow());
                if dead || remade {
                    if let Some((y, _)) = previous.buffers_mut() {
                        self.spares.lend(y);
                    }
                }
            }
            i += 1 + taken;
        }
        Ok(())
    }

    fn run_backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool, mut seconds: Option<&mut [f64]>) -> Result<()> {
        let batch = x.shape().first().copied().unwrap_or(0);
        for i in (0..self.layers.len()).rev() {
            let (before, rest) = self.layers.split_at_mut(i);
            let (current, after) = rest.split_at_mut(1);
            let need_dx = i > 0 || need_input_grad;
            if need_dx {
                let input_shape = before.last().map_or(x.shape().get(1..).unwrap_or(&[]), |l| l.output_shape());
                let input_len = batch * input_shape.iter().product::<usize>();
                if let Some((_, dx)) = current[0].buffers_mut() {
                    self.spares.fill(dx, (i, Role::InputGrad), input_len);
                }
            }
            let start = seconds.is_some().then(Instant::now);
            // Outputs lent out after the forward pass that this backward pass reads: made again
            // (the input, then the layer's own output).
            if let Some((previous, earlier)) = before.split_last_mut() {
                if current[0].backward_reads_input() {
                    let input = earlier.last().map_or(x, |l| l.output());
                    Self::make_again(previous.as_mut(), i - 1, input, batch, &mut self.spares)?;
                }
            }
            if current[0].backward_reads_output() {
                Self::make_again(current[0].as_mut(), i, before.last().map_or(x, |l| l.output()), batch, &mut self.spares)?;
            }
            let input = before.last().map_or(x, |l| l.output());
            let d_output = after.first().map_or(dy, |l| l.input_grad());
            current[0].backward(input, d_output, need_dx)?;
            if let (Some(s), Some(start)) = (seconds.as_deref_mut(), start) {
                s[i] = start.elapsed().as_secs_f64();
            }
            // The next layer's input gradient has been read: its buffer is lent out. So is this
            // layer's output if it can be made again (nothing reads it any more this step).
            if let Some((_, dx)) = after.first_mut().and_then(|l| l.buffers_mut()) {
                self.spares.lend(dx);
            }
            if current[0].recomputable() && !after.is_empty() {
                if let Some((y, _)) = current[0].buffers_mut() {
                    self.spares.lend(y);
                }
            }
        }
        Ok(())
    }

    /// Computes `layer`'s output again from `input` if it was lent out (`Layer::recomputable`:
    /// the same bits as the first time).
    fn make_again(layer: &mut dyn Layer, index: usize, input: &Tensor, batch: usize, spares: &mut SpareBuffers) -> Result<()> {
        if !layer.output().is_hollow() {
            return Ok(());
        }
        if !layer.recomputable() {
            let what = "its output was lent out in the forward pass but a backward pass reads it";
            return Err(Error::invalid(layer.label(), what));
        }
        let len = batch * layer.output_shape().iter().product::<usize>();
        if let Some((y, _)) = layer.buffers_mut() {
            spares.fill(y, (index, Role::Output), len);
        }
        layer.forward(input, Mode::Train)
    }

    pub fn set_precision(&mut self, precision: Precision) {
        for layer in &mut self.layers {
            layer.set_precision(precision);
        }
    }

    /// Seeds each layer's randomness (dropout) for the next training step: layer i gets
    /// `seed_of(i)`.
    pub fn set_seeds(&mut self, seed_of: impl Fn(usize) -> u64) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.set_seed(seed_of(i));
        }
    }

    pub fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params_mut()).collect()
    }

    /// Forward multiply-adds x 2 per example.
    pub fn flops(&self) -> u64 {
        self.layers.iter().map(|l| l.flops()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{DenseLayer, GeluLayer, ScaleLayer};

    fn values(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec(shape, (0..n).map(|i| ((i * 7 + seed * 13) % 11) as f32 / 11.0 - 0.4).collect()).unwrap()
    }

    fn dense(name: &str, inputs: usize, outputs: usize, seed: usize) -> Box<dyn Layer> {
        let weight = Param::new("weight", values(&[inputs, outputs], seed), 0.0, true);
        Box::new(DenseLayer::new(name.into(), &[inputs], weight, None).unwrap())
    }

    #[test]
    fn once_planned_every_training_step_gets_the_plans_buffers_back() {
        // The GELU's output is computed again, the dense output under the scale is dead, and
        // every input gradient but the first is lent: after the first steps the same planned
        // buffers go round, each back in its slot at the end of a step.
        let layers = vec![
            dense("0", 6, 8, 1),
            Box::new(GeluLayer::new("1".into(), &[8])) as Box<dyn Layer>,
            dense("2", 8, 8, 2),
            Box::new(ScaleLayer::new("3".into(), &[8], 0.5)),
            dense("4", 8, 4, 3),
        ];
        let mut net = Sequential::new(layers).unwrap();
        let (x, dy) = (values(&[5, 6], 4), values(&[5, 4], 5));
        let mut seen = Vec::new();
        for _ in 0..6 {
            net.forward(&x, Mode::Train).unwrap();
            net.backward(&x, &dy, false).unwrap();
            seen.push((net.spares.idle_buffers(), net.spares.plans_made()));
        }
        // The first step's tensors are never sized and the second's hollow: two plans, then
        // the same requests every step, so no other plan and the same buffers.
        let (planned, last) = (&seen[3], &seen[5]);
        assert!(!planned.0.is_empty() && net.spares.all_idle(), "{planned:?}");
        assert_eq!(planned, last, "the same buffers, at the same addresses, and no new plan");
        let planned = &planned.0;
        // The plan holds what the step asked for: the largest request is a 5 x 8 tensor.
        assert_eq!(planned.iter().map(|&(_, capacity)| capacity).max(), Some(40));
    }
}
