//! A network: the layers of a config in order, built with every shape inferred and checked.
//! Forward runs them in order, backward in reverse; the loss is softmax cross-entropy on the
//! last layer's logits plus the L2 penalty of every weight with a lambda.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::{pool_window, LayerConfig, ModelConfig};
use super::init::init_weight;
use crate::error::{Error, Result};
use crate::layers::{
    dims, ActivationLayer, AvgPoolLayer, Conv2dLayer, DenseLayer, FlattenLayer, Layer, LrnLayer, MaxPoolLayer, Mode, Param,
};
use crate::ops::activation::Activation;
use crate::ops::l2::{l2_backward, l2_penalty};
use crate::ops::softmax::softmax_cross_entropy;
use crate::ops::Window;
use crate::optim::{Optimizer, Param as OptParam};
use crate::tensor::Tensor;

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

/// A layer's name in messages: "layer 3 (conv2d)".
pub fn layer_name(index: usize, kind: &str) -> String {
    format!("layer {index} ({kind})")
}

impl Network {
    /// Builds the network of `config` with weights drawn from `seed`; every layer's input shape
    /// is checked here, before any data is touched.
    pub fn build(config: &ModelConfig, seed: u64) -> Result<Network> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1A17_5EED);
        let mut shape: Vec<usize> = config.input.to_vec();
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let mut config_index = Vec::new();
        let cfgs = &config.layers;
        let mut i = 0;
        while i < cfgs.len() {
            let name = layer_name(i, cfgs[i].kind());
            let spatial = || -> Result<(usize, usize, usize)> {
                match shape[..] {
                    [h, w, c] => Ok((h, w, c)),
                    _ => Err(Error::shape(&name, "an image input [H, W, C]", format!("[{}] (after a flatten or dense layer)", dims(&shape)))),
                }
            };
            let layer: Box<dyn Layer> = match &cfgs[i] {
                LayerConfig::Conv2d { filters, kernel, stride, padding, l2, init } => {
                    let (_, _, c_in) = spatial()?;
                    let (kh, kw) = kernel.hw();
                    let (sh, sw) = stride.hw();
                    if *filters == 0 {
                        return Err(Error::invalid(&name, "filters must be at least 1"));
                    }
                    let window = Window::new(kh, kw, sh, sw, padding.resolve(&name)?);
                    let w_shape = [kh, kw, c_in, *filters];
                    let w = init_weight(init.unwrap_or(config.init), &w_shape, kh * kw * c_in, kh * kw * filters, &mut rng);
                    let weight = Param::new("weight", w, *l2, true);
                    let bias = Param::new("bias", Tensor::zeros(&[*filters]), 0.0, false);
                    let mut conv = Conv2dLayer::new(name.clone(), &shape, window, weight, bias)?;
                    // Fold a following relu into the convolution: one pass over memory less.
                    if matches!(cfgs.get(i + 1), Some(LayerConfig::Relu {})) {
                        conv.relu = true;
                    }
                    Box::new(conv)
                }
                LayerConfig::MaxPool { size, stride, padding } => {
                    spatial()?;
                    Box::new(MaxPoolLayer::new(name.clone(), &shape, pool_window(&name, *size, *stride, padding)?)?)
                }
                LayerConfig::AvgPool { size, stride, padding } => {
                    spatial()?;
                    Box::new(AvgPoolLayer::new(name.clone(), &shape, pool_window(&name, *size, *stride, padding)?)?)
                }
                LayerConfig::Relu {} => Box::new(ActivationLayer::new(name.clone(), &shape, Activation::Relu)),
                LayerConfig::Sigmoid {} => Box::new(ActivationLayer::new(name.clone(), &shape, Activation::Sigmoid)),
                LayerConfig::Tanh {} => Box::new(ActivationLayer::new(name.clone(), &shape, Activation::Tanh)),
                LayerConfig::Lrn { .. } => {
                    spatial()?;
                    let params = cfgs[i].lrn_params().ok_or_else(|| Error::invalid(&name, "not an lrn layer"))?;
                    Box::new(LrnLayer::new(name.clone(), &shape, params)?)
                }
                LayerConfig::Flatten {} => Box::new(FlattenLayer::new(name.clone(), &shape)),
                LayerConfig::Dense { units, l2, init } => {
                    let fin = match shape[..] {
                        [f] => f,
                        _ => return Err(Error::shape(&name, "a flat input [features] (add a flatten layer before it)", format!("[{}]", dims(&shape)))),
                    };
                    if *units == 0 {
                        return Err(Error::invalid(&name, "units must be at least 1"));
                    }
                    let w = init_weight(init.unwrap_or(config.init), &[fin, *units], fin, *units, &mut rng);
                    let weight = Param::new("weight", w, *l2, true);
                    let bias = Param::new("bias", Tensor::zeros(&[*units]), 0.0, false);
                    Box::new(DenseLayer::new(name.clone(), &shape, weight, bias)?)
                }
            };
            shape = layer.output_shape().to_vec();
            let folded = layer.kind() == "conv2d" && matches!(cfgs.get(i + 1), Some(LayerConfig::Relu {}));
            layers.push(layer);
            config_index.push(i);
            i += if folded { 2 } else { 1 };
        }
        if shape.len() != 1 {
            return Err(Error::Config {
                file: config.name.clone(),
                detail: format!("the last layer must output class scores [classes], got [{}] (end with flatten and dense)", dims(&shape)),
            });
        }
        let mut net = Network { config: config.clone(), layers, config_index, param_names: Vec::new() };
        net.param_names = net
            .layers
            .iter()
            .zip(&net.config_index)
            .flat_map(|(l, &ci)| l.params().into_iter().map(move |p| format!("{ci}.{}.{}", l.kind(), p.kind)))
            .collect();
        Ok(net)
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
    fn run_forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        for i in 0..self.layers.len() {
            let (before, rest) = self.layers.split_at_mut(i);
            let input = before.last().map_or(x, |l| l.output());
            rest[0].forward(input, mode)?;
        }
        Ok(())
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
        for i in (0..self.layers.len()).rev() {
            let (before, rest) = self.layers.split_at_mut(i);
            let (current, after) = rest.split_at_mut(1);
            let input = before.last().map_or(x, |l| l.output());
            let dy = after.first().map_or(d_logits, |l| l.input_grad());
            current[0].backward(input, dy, i > 0)?;
        }
        Ok(())
    }

    /// The first layer whose last output holds a NaN or an infinity, by name.
    fn first_non_finite_layer(&self) -> Option<String> {
        self.layers
            .iter()
            .enumerate()
            .find(|(_, l)| !l.output().is_finite())
            .map(|(i, l)| layer_name(self.config_index[i], l.kind()))
    }

    /// The L2 penalty of all weights: sum of lambda/2 * sum(W^2).
    pub fn l2_penalty(&self) -> f32 {
        self.params().iter().filter(|p| p.l2 > 0.0).map(|p| l2_penalty(p.value.data(), p.l2)).sum()
    }

    /// Forward, loss and backward on one batch: afterwards every parameter holds its gradient
    /// of the total loss (cross-entropy + L2).
    pub fn compute_gradients(&mut self, x: &Tensor, labels: &[usize]) -> Result<StepStats> {
        self.run_forward(x, Mode::Train)?;
        let (ce, d_logits) = softmax_cross_entropy(self.logits(), labels)?;
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
            .map(|(p, name)| OptParam { name, value: p.value.data_mut(), grad: p.grad.data(), decay: p.decay })
            .collect();
        optimizer.step(&mut params, lr)
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
