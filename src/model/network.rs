//! A network: the layers of a model spec in order, built from its plan with every shape checked.
//! Forward runs them in order, backward in reverse; the loss is softmax cross-entropy on the
//! last layer's logits (with the label smoothing the caller asks for) plus the L2 penalty of
//! every weight with a lambda. The network holds the model only: how it is trained (label
//! smoothing, the optimiser) and evaluated (TTA, batch size) is the caller's to pass.

use std::sync::Arc;

use super::build::build;
use super::spec::ModelSpec;
use crate::dist::{batch_count, with_group, Group};
use crate::error::{Error, Result};
use crate::layers::{Layer, Mode, Param, Sequential};
use crate::ops::l2::{l2_backward, l2_penalty};
use crate::ops::softmax::softmax_cross_entropy_smoothed;
use crate::ops::Precision;
use crate::optim::groups::settings_for;
use crate::optim::{Optimizer, Param as OptParam, ParamGroup};
use crate::tensor::Tensor;
use crate::threads::on_workers;

pub struct Network {
    spec: ModelSpec,
    layers: Sequential,
    precision: Precision,
}

/// The training loss: softmax cross-entropy against the labels, smoothed by `label_smoothing`
/// eps (targets (1 - eps) onehot + eps / classes), plus the L2 penalties of the weights.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Loss {
    pub label_smoothing: f32,
}

/// What one training step measured.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// Cross-entropy plus L2 penalty.
    pub loss: f32,
    /// Correct predictions in the batch.
    pub correct: usize,
}

impl Network {
    /// Builds the network of `spec` with weights drawn from `seed`; every value and shape is
    /// checked first (`ModelSpec::plan`), before anything is allocated.
    pub fn build(spec: &ModelSpec, seed: u64) -> Result<Network> {
        let plan = spec.plan()?;
        let layers = build(&plan.layers, &mut crate::seeds::init_rng(seed))?;
        Ok(Network { spec: spec.clone(), layers, precision: Precision::F32 })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The precision of the convolutions' and dense layers' products from now on
    /// (`ops::precision`); a network is built in float32.
    pub fn set_precision(&mut self, precision: Precision) {
        self.layers.set_precision(precision);
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Seeds the randomness of the next training step (dropout), derived from the run's seed
    /// and the global step so that runs, and resumed runs, are reproducible.
    pub fn set_step_seed(&mut self, seed: u64, step: u64) {
        self.layers.set_seeds(|i| crate::seeds::layer_step_seed(seed, step, i));
    }

    /// (name, size) of every trainable parameter, in the order the optimiser sees them.
    pub fn trainable_sizes(&self) -> Vec<(String, usize)> {
        self.params().iter().filter(|p| p.trainable).map(|p| (p.name.clone(), p.value.len())).collect()
    }

    pub fn num_classes(&self) -> usize {
        self.layers.output_shape()[0]
    }

    /// The built layers: a relu folded into the conv2d before it has none of its own.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        self.layers.layers()
    }

    /// Every parameter's name, in `params()` order (the rule: `model::plan`).
    pub fn param_names(&self) -> Vec<&str> {
        self.params().into_iter().map(|p| p.name.as_str()).collect()
    }

    pub fn params(&self) -> Vec<&Param> {
        self.layers.params()
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers.params_mut()
    }

    pub fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }

    /// Forward FLOPs per example (multiply-adds x 2 of conv and dense layers).
    pub fn flops(&self) -> u64 {
        self.layers.flops()
    }

    /// Runs batch `x` [N, H, W, C] through every layer; each keeps its output, and the last
    /// one's output is the logits. Nothing is allocated once the buffers have their sizes.
    /// The whole pass runs on the thread pool's workers (see `threads`).
    fn run_forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        let layers = &mut self.layers;
        on_workers(|| layers.forward(x, mode))
    }

    /// The logits [N, classes] of the last forward pass.
    pub fn logits(&self) -> &Tensor {
        self.layers.output()
    }

    /// Logits [N, classes] for a batch [N, H, W, C].
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.run_forward(x, mode)?;
        Ok(self.logits().clone())
    }

    /// Runs `x` through the network in evaluation mode and returns every layer's label and
    /// output, in order: "layer 0 (conv2d + relu)" (a relu folded into its conv is named with
    /// it), "layer 2 (max_pool)", ... The last entry holds the logits. No layers are fused
    /// here, so that each keeps its own output.
    pub fn forward_trace(&mut self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let layers = &mut self.layers;
        on_workers(|| layers.forward_each(x, Mode::Eval))?;
        Ok(self.layers().iter().map(|l| (l.label().to_string(), l.output().clone())).collect())
    }

    /// One training step's forward and backward passes with each layer timed: (layer label,
    /// forward seconds, backward seconds), for `convnet bench --layers`. The loss's own time
    /// (softmax cross-entropy) is left out; the weights are not updated. With `train` false,
    /// an inference pass instead: forward only, in evaluation mode, backward times 0.
    pub fn profile_step(&mut self, x: &Tensor, labels: &[usize], loss: Loss, train: bool) -> Result<Vec<(String, f64, f64)>> {
        let n = self.layers().len();
        let (mut forward, mut backward) = (vec![0.0f64; n], vec![0.0f64; n]);
        let mode = if train { Mode::Train } else { Mode::Eval };
        self.layers.forward_timed(x, mode, &mut forward)?;
        if train {
            let (_, d_logits) = softmax_cross_entropy_smoothed(self.logits(), labels, loss.label_smoothing)?;
            self.layers.backward_timed(x, &d_logits, false, &mut backward)?;
        }
        Ok(self.layers().iter().zip(forward.into_iter().zip(backward)).map(|(l, (f, b))| (l.label().to_string(), f, b)).collect())
    }

    /// The first layer whose last output holds a NaN or an infinity, by label. Outputs lent
    /// out in training (`layers::spare_buffers`) cannot be looked at: the layers just before it
    /// whose outputs were lent are named with it ("layer 2 (conv2d) or layer 3 (max_pool)").
    fn first_non_finite_layer(&self) -> Option<String> {
        let layers = self.layers();
        let last = layers.iter().position(|l| !l.output().is_finite())?;
        let first = (0..last).rev().take_while(|&j| layers[j].output().is_hollow()).last().unwrap_or(last);
        let labels: Vec<&str> = layers[first..=last].iter().map(|l| l.label()).collect();
        Some(match labels.split_last() {
            Some((only, [])) => only.to_string(),
            Some((last, others)) => format!("{} or {last}", others.join(", ")),
            None => unreachable!("first <= last"),
        })
    }

    /// The L2 penalty of all weights: sum of lambda/2 * sum(W^2).
    pub fn l2_penalty(&self) -> f32 {
        self.params().iter().filter(|p| p.l2 > 0.0).map(|p| l2_penalty(p.value.data(), p.l2)).sum()
    }

    /// Forward, loss and backward on one batch: afterwards every parameter holds its gradient
    /// of the total loss (cross-entropy + L2).
    pub fn compute_gradients(&mut self, x: &Tensor, labels: &[usize], loss: Loss) -> Result<StepStats> {
        on_workers(|| self.compute_gradients_on_workers(x, labels, loss))
    }

    /// [`Network::compute_gradients`] for one rank of a distributed step: `x` and `labels` are
    /// this rank's share of the batch, starting at image `first_image` of it. The gradients,
    /// loss and count of correct answers are the whole batch's, on every rank, equal bit for bit
    /// to those of one process given the whole batch (`crate::dist`).
    pub fn compute_gradients_shared(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        loss: Loss,
        group: &Arc<Group>,
        first_image: usize,
    ) -> Result<StepStats> {
        on_workers(|| with_group(Some(group), first_image, || self.compute_gradients_on_workers(x, labels, loss)))
    }

    fn compute_gradients_on_workers(&mut self, x: &Tensor, labels: &[usize], loss: Loss) -> Result<StepStats> {
        self.run_forward(x, Mode::Train)?;
        let (ce, d_logits) = softmax_cross_entropy_smoothed(self.logits(), labels, loss.label_smoothing)?;
        let total = ce + self.l2_penalty();
        if !total.is_finite() {
            // NaN and infinity propagate through every layer (relu and max pool included), so
            // a non-finite loss can be traced to the first layer that produced one.
            let culprit = match self.first_non_finite_layer() {
                Some(layer) => format!("the output of {layer} is not finite (NaN or infinity)"),
                None => "the weights' L2 penalty is not finite".to_string(),
            };
            return Err(Error::Diverged(format!("the loss is {total}: {culprit}")));
        }
        let correct = batch_count(count_correct(self.logits(), labels));
        self.layers.backward(x, &d_logits, false)?;
        for p in self.params_mut() {
            if p.l2 > 0.0 {
                let Param { value, grad, l2, .. } = p;
                l2_backward(value.data(), *l2, grad.data_mut());
            }
        }
        Ok(StepStats { loss: total, correct })
    }

    /// One optimiser step on the gradients from `compute_gradients`.
    pub fn apply_gradients(&mut self, optimizer: &mut Optimizer, lr: f32) -> Result<()> {
        self.apply_gradients_grouped(optimizer, lr, &[], 0)
    }

    /// [`Network::apply_gradients`] with param groups: each trainable parameter gets the
    /// settings of the first group that matches it in epoch `epoch` (0-based; see
    /// `optim::groups`), and a frozen one is left as it is.
    pub fn apply_gradients_grouped(&mut self, optimizer: &mut Optimizer, lr: f32, groups: &[ParamGroup], epoch: usize) -> Result<()> {
        let mut params: Vec<OptParam> = self
            .params_mut()
            .into_iter()
            .filter(|p| p.trainable)
            .map(|p| {
                let settings = settings_for(groups, &p.name, p.decay, epoch);
                OptParam {
                    name: &p.name,
                    value: p.value.data_mut(),
                    grad: p.grad.data(),
                    decay: settings.decay,
                    lr_scale: settings.lr_scale,
                    weight_decay_scale: settings.weight_decay_scale,
                }
            })
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
