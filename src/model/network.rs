//! A network: the layers of a config in order, built with every shape inferred and checked.
//! Forward runs them in order, backward in reverse; the loss is softmax cross-entropy on the
//! last layer's logits plus the L2 penalty of every weight with a lambda.

use super::build::build_layers;
use super::config::{LayerConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::layers::{dims, Layer, Mode, Param};
use crate::ops::l2::{l2_backward, l2_penalty};
use crate::ops::softmax::softmax_cross_entropy_smoothed;
use crate::optim::{Optimizer, Param as OptParam};
use crate::tensor::Tensor;
use crate::threads::on_workers;

pub struct Network {
    pub config: ModelConfig,
    layers: Vec<Box<dyn Layer>>,
    /// For each built layer, the index of its config entry (a relu folded into the conv before
    /// it has no layer of its own).
    config_index: Vec<usize>,
    /// "<config index>.<kind>.<weight|bias>" for every parameter, in `params()` order.
    param_names: Vec<String>,
}

/// What one training step measured.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// Cross-entropy plus L2 penalty.
    pub loss: f32,
    /// Correct predictions in the batch.
    pub correct: usize,
}

pub use super::build::layer_name;

impl Network {
    /// Builds the network of `config` with weights drawn from `seed`; every layer's input shape
    /// is checked here, before any data is touched.
    pub fn build(config: &ModelConfig, seed: u64) -> Result<Network> {
        let mut rng = crate::seeds::init_rng(seed);
        let built = build_layers(&config.layers, &config.input, "", config.init, &mut rng)?;
        if built.output.len() != 1 {
            return Err(Error::Config {
                file: config.name.clone(),
                detail: format!(
                    "the last layer must output class scores [classes], got [{}] (end with flatten and dense)",
                    dims(&built.output)
                ),
            });
        }
        let mut net = Network { config: config.clone(), layers: built.layers, config_index: built.config_index, param_names: Vec::new() };
        net.param_names = net
            .layers
            .iter()
            .zip(&net.config_index)
            .flat_map(|(l, &ci)| l.params().into_iter().map(move |p| format!("{ci}.{}.{}", l.kind(), p.name)))
            .collect();
        Ok(net)
    }

    /// Seeds the randomness of the next training step (dropout), derived from the run's seed
    /// and the global step so that runs, and resumed runs, are reproducible.
    pub fn set_step_seed(&mut self, seed: u64, step: u64) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.set_seed(crate::seeds::layer_step_seed(seed, step, i));
        }
    }

    /// (name, size) of every trainable parameter, in the order the optimiser sees them.
    pub fn trainable_sizes(&self) -> Vec<(String, usize)> {
        self.param_names.iter().zip(self.params()).filter(|(_, p)| p.trainable).map(|(n, p)| (n.clone(), p.value.len())).collect()
    }

    pub fn num_classes(&self) -> usize {
        self.layers.last().map(|l| l.output_shape()[0]).unwrap_or(0)
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The config index of built layer `i`.
    pub fn config_index(&self, i: usize) -> usize {
        self.config_index[i]
    }

    pub fn param_names(&self) -> &[String] {
        &self.param_names
    }

    pub fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params_mut()).collect()
    }

    pub fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }

    /// Forward FLOPs per example (multiply-adds x 2 of conv and dense layers).
    pub fn flops(&self) -> u64 {
        self.layers.iter().map(|l| l.flops()).sum()
    }

    /// Runs batch `x` [N, H, W, C] through every layer; each keeps its output, and the last
    /// one's output is the logits. Nothing is allocated once the buffers have their sizes.
    /// The whole pass runs on the thread pool's workers (see `threads`).
    fn run_forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        let layers = &mut self.layers;
        on_workers(|| {
            for i in 0..layers.len() {
                let (before, rest) = layers.split_at_mut(i);
                let input = before.last().map_or(x, |l| l.output());
                rest[0].forward(input, mode)?;
            }
            Ok(())
        })
    }

    /// The logits [N, classes] of the last forward pass.
    pub fn logits(&self) -> &Tensor {
        match self.layers.last() {
            Some(l) => l.output(),
            None => unreachable!("a network has at least one layer (checked when built)"),
        }
    }

    /// Logits [N, classes] for a batch [N, H, W, C].
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.run_forward(x, mode)?;
        Ok(self.logits().clone())
    }

    /// Runs `x` through the network in evaluation mode and returns every layer's name and
    /// output, in order: "layer 0 (conv2d + relu)" (a relu folded into its conv is named with
    /// it), "layer 2 (max_pool)", ... The last entry holds the logits.
    pub fn forward_trace(&mut self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        self.run_forward(x, Mode::Eval)?;
        let mut trace: Vec<(String, Tensor)> = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let ci = self.config_index[i];
            let folded_relu = layer.kind() == "conv2d" && matches!(self.config.layers.get(ci + 1), Some(LayerConfig::Relu {}));
            let kind = if folded_relu { format!("{} + relu", layer.kind()) } else { layer.kind().to_string() };
            trace.push((layer_name(ci, &kind), layer.output().clone()));
        }
        Ok(trace)
    }

    /// Backpropagates d loss / d logits through every layer, filling the parameter gradients.
    /// `x` is the batch of the last forward pass. The first layer computes no input gradient.
    fn run_backward(&mut self, x: &Tensor, d_logits: &Tensor) -> Result<()> {
        let layers = &mut self.layers;
        on_workers(|| {
            for i in (0..layers.len()).rev() {
                let (before, rest) = layers.split_at_mut(i);
                let (current, after) = rest.split_at_mut(1);
                let input = before.last().map_or(x, |l| l.output());
                let dy = after.first().map_or(d_logits, |l| l.input_grad());
                current[0].backward(input, dy, i > 0)?;
            }
            Ok(())
        })
    }

    /// One training step's forward and backward passes with each layer timed: (layer name,
    /// forward seconds, backward seconds), for `convnet bench --layers`. The loss's own time
    /// (softmax cross-entropy) is left out; the weights are not updated. With `train` false,
    /// an inference pass instead: forward only, in evaluation mode, backward times 0.
    pub fn profile_step(&mut self, x: &Tensor, labels: &[usize], train: bool) -> Result<Vec<(String, f64, f64)>> {
        use std::time::Instant;
        let mut times = vec![(0.0f64, 0.0f64); self.layers.len()];
        let mode = if train { Mode::Train } else { Mode::Eval };
        for (i, time) in times.iter_mut().enumerate() {
            let (before, rest) = self.layers.split_at_mut(i);
            let input = before.last().map_or(x, |l| l.output());
            let t = Instant::now();
            rest[0].forward(input, mode)?;
            time.0 = t.elapsed().as_secs_f64();
        }
        if !train {
            return Ok(self.timed_layer_names(times));
        }
        let (_, d_logits) = softmax_cross_entropy_smoothed(self.logits(), labels, self.config.train.label_smoothing)?;
        for i in (0..self.layers.len()).rev() {
            let (before, rest) = self.layers.split_at_mut(i);
            let (current, after) = rest.split_at_mut(1);
            let input = before.last().map_or(x, |l| l.output());
            let dy = after.first().map_or(&d_logits, |l| l.input_grad());
            let t = Instant::now();
            current[0].backward(input, dy, i > 0)?;
            times[i].1 = t.elapsed().as_secs_f64();
        }
        Ok(self.timed_layer_names(times))
    }

    fn timed_layer_names(&self, times: Vec<(f64, f64)>) -> Vec<(String, f64, f64)> {
        self.layers
            .iter()
            .zip(&self.config_index)
            .zip(times)
            .map(|((l, &ci), (f, b))| {
                let relu = if l.kind() == "conv2d" && matches!(self.config.layers.get(ci + 1), Some(LayerConfig::Relu {})) {
                    " + relu"
                } else {
                    ""
                };
                (layer_name(ci, &format!("{}{relu}", l.kind())), f, b)
            })
            .collect()
    }

    /// The first layer whose last output holds a NaN or an infinity, by name.
    fn first_non_finite_layer(&self) -> Option<String> {
        self.layers.iter().enumerate().find(|(_, l)| !l.output().is_finite()).map(|(i, l)| layer_name(self.config_index[i], l.kind()))
    }

    /// The L2 penalty of all weights: sum of lambda/2 * sum(W^2).
    pub fn l2_penalty(&self) -> f32 {
        self.params().iter().filter(|p| p.l2 > 0.0).map(|p| l2_penalty(p.value.data(), p.l2)).sum()
    }

    /// Forward, loss and backward on one batch: afterwards every parameter holds its gradient
    /// of the total loss (cross-entropy + L2).
    pub fn compute_gradients(&mut self, x: &Tensor, labels: &[usize]) -> Result<StepStats> {
        on_workers(|| self.compute_gradients_on_workers(x, labels))
    }

    fn compute_gradients_on_workers(&mut self, x: &Tensor, labels: &[usize]) -> Result<StepStats> {
        self.run_forward(x, Mode::Train)?;
        let (ce, d_logits) = softmax_cross_entropy_smoothed(self.logits(), labels, self.config.train.label_smoothing)?;
        let loss = ce + self.l2_penalty();
        if !loss.is_finite() {
            // NaN and infinity propagate through every layer (relu and max pool included), so
            // a non-finite loss can be traced to the first layer that produced one.
            let culprit = match self.first_non_finite_layer() {
                Some(layer) => format!("the output of {layer} is not finite (NaN or infinity)"),
                None => "the weights' L2 penalty is not finite".to_string(),
            };
            return Err(Error::Diverged(format!("the loss is {loss}: {culprit}")));
        }
        let correct = count_correct(self.logits(), labels);
        self.run_backward(x, &d_logits)?;
        for p in self.params_mut() {
            if p.l2 > 0.0 {
                let Param { value, grad, l2, .. } = p;
                l2_backward(value.data(), *l2, grad.data_mut());
            }
        }
        Ok(StepStats { loss, correct })
    }

    /// One optimiser step on the gradients from `compute_gradients`.
    pub fn apply_gradients(&mut self, optimizer: &mut Optimizer, lr: f32) -> Result<()> {
        let names = &self.param_names;
        let mut params: Vec<OptParam> = self
            .layers
            .iter_mut()
            .flat_map(|l| l.params_mut())
            .zip(names)
            .filter(|(p, _)| p.trainable)
            .map(|(p, name)| OptParam { name, value: p.value.data_mut(), grad: p.grad.data(), decay: p.decay })
            .collect();
        on_workers(|| optimizer.step(&mut params, lr))
    }

    /// Class scores for a batch, in evaluation mode.
    pub fn predict(&mut self, x: &Tensor) -> Result<Tensor> {
        self.forward(x, Mode::Eval)
    }
}

/// Number of rows of `logits` whose largest entry is at the label.
pub fn count_correct(logits: &Tensor, labels: &[usize]) -> usize {
    let k = logits.shape().get(1).copied().unwrap_or(1);
    logits.data().chunks_exact(k).zip(labels).filter(|(row, &l)| argmax(row) == l).count()
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}
