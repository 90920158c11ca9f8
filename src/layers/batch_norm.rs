//! Batch normalisation layer: per-channel normalisation with learnt scale (gamma) and shift
//! (beta). Train mode uses the batch statistics and updates running averages; eval mode uses
//! the running averages. A relu that follows is folded in (`relu`), as into a convolution: the
//! backward pass masks dy with y > 0. In evaluation mode a GELU that follows is computed in the
//! same pass (`forward_eval_fused`). See `ops::batch_norm` for the formulas.

use super::{check_backward, check_input, EvalNorm, Layer, Mode, Param};
use crate::error::Result;
use crate::ops::batch_norm::{
    batch_norm_backward, batch_norm_forward_eval, batch_norm_forward_train, batch_norm_gelu_forward_eval, BatchNormCache, RunningStats,
};
use crate::tensor::Tensor;

/// The running statistics' momentum must be in [0, 1] and eps positive (it keeps
/// 1 / sqrt(var + eps) finite); checked by the model spec before a layer is built.
pub fn check_settings(momentum: f32, eps: f32) -> std::result::Result<(), String> {
    if (0.0..=1.0).contains(&momentum) && eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(format!("momentum must be in [0, 1] and eps a positive number, got {momentum} and {eps}"))
    }
}

pub struct BatchNormLayer {
    name: String,
    shape: Vec<usize>,
    pub gamma: Param,
    pub beta: Param,
    pub running_mean: Param,
    pub running_var: Param,
    momentum: f32,
    eps: f32,
    /// ReLU applied in the same pass (a following relu layer folded in).
    pub relu: bool,
    y: Tensor,
    dx: Tensor,
    cache: BatchNormCache,
}

impl BatchNormLayer {
    /// `input` is any per-example shape whose last axis holds the channels.
    pub fn new(name: String, input: &[usize], momentum: f32, eps: f32) -> BatchNormLayer {
        let c = input.last().copied().unwrap_or(1);
        BatchNormLayer {
            name,
            shape: input.to_vec(),
            gamma: Param::new("gamma", Tensor::filled(&[c], 1.0), 0.0, false),
            beta: Param::new("beta", Tensor::zeros(&[c]), 0.0, false),
            running_mean: Param::buffer("running_mean", Tensor::zeros(&[c])),
            running_var: Param::buffer("running_var", Tensor::filled(&[c], 1.0)),
            momentum,
            eps,
            relu: false,
            y: Tensor::empty(),
            dx: Tensor::empty(),
            cache: BatchNormCache::default(),
        }
    }
}

impl Layer for BatchNormLayer {
    fn kind(&self) -> &'static str {
        "batch_norm"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.shape)?;
        let (g, b) = (self.gamma.value.data(), self.beta.value.data());
        match mode {
            Mode::Train => {
                let running = RunningStats {
                    mean: self.running_mean.value.data_mut(),
                    var: self.running_var.value.data_mut(),
                    momentum: self.momentum,
                };
                batch_norm_forward_train(x, g, b, running, self.eps, self.relu, &mut self.y, &mut self.cache)
            }
            Mode::Eval => {
                let (mean, var) = (self.running_mean.value.data(), self.running_var.value.data());
                batch_norm_forward_eval(x, g, b, mean, var, self.eps, self.relu, &mut self.y)
            }
        }
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        let dx = if need_input_grad { Some(&mut self.dx) } else { None };
        batch_norm_backward(x, dy, &mut self.cache, dx, self.gamma.grad.data_mut(), self.beta.grad.data_mut())
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn backward_reads_output(&self) -> bool {
        false
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
    fn eval_norm(&self) -> Option<EvalNorm<'_>> {
        let (g, b, m, v) = (&self.gamma.value, &self.beta.value, &self.running_mean.value, &self.running_var.value);
        Some(EvalNorm {
            gamma: g.data(),
            beta: b.data(),
            mean: m.data(),
            var: v.data(),
            eps: self.eps,
            relu: self.relu,
            versions: [g.version(), b.version(), m.version(), v.version()],
        })
    }
    fn take_output(&mut self, y: &mut Tensor) {
        std::mem::swap(&mut self.y, y);
    }
    fn forward_eval_fused(&mut self, x: &Tensor, next: &mut [Box<dyn Layer>]) -> Result<usize> {
        // A GELU after the norm: one pass, the norm's own output not written. (Not after a
        // folded relu: no config has both, and the pair would need its own kernel.)
        let Some(next) = next.first_mut().filter(|n| !self.relu && n.kind() == "gelu") else {
            return Ok(0);
        };
        check_input(&self.name, x, &self.shape)?;
        let (g, b) = (self.gamma.value.data(), self.beta.value.data());
        let (mean, var) = (self.running_mean.value.data(), self.running_var.value.data());
        batch_norm_gelu_forward_eval(x, g, b, mean, var, self.eps, &mut self.y)?;
        next.take_output(&mut self.y);
        Ok(1)
    }
    fn params(&self) -> Vec<&Param> {
        vec![&self.gamma, &self.beta, &self.running_mean, &self.running_var]
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.gamma, &mut self.beta, &mut self.running_mean, &mut self.running_var]
    }
}
