//! Convolution layer: y = conv(x, W) + b, optionally with ReLU fused into the same pass.
//! Shapes: x `[N, H, W, C_in]` -> y `[N, oh, ow, C_out]`; W `[kh, kw, C_in, C_out]`, b `[C_out]`.
//! See `ops::conv2d` for the formulas. With ReLU fused, backward first masks dy with y > 0.
//! In evaluation mode a batch norm after it (and that norm's relu) is folded in exactly:
//!   BN(conv(x, W) + b) = conv(x, W a) + (b - mean) a + beta,   a = gamma / sqrt(var + eps)
//! per output channel, so the pair costs one convolution (`forward_eval_fused`). A max pooling
//! after it is taken likewise where the convolution goes on the bf16 tiles: each window
//! pooled as the product is finished, the convolution's own output never written.

use super::{check_backward, check_input, Layer, Mode, Param};
use crate::error::Result;
use crate::layers::EvalNorm;
use crate::ops::batch_norm::eval_scale;
use crate::ops::conv2d::{
    conv2d_backward_into, conv2d_bias_grad_into, conv2d_forward_into, conv2d_forward_max_pooled_into, conv2d_forward_then_into,
    max_pools_as_finished, Conv2dGradsMut, ConvScratch, OutputGrad,
};
use crate::ops::conv_shape::ConvShape;
use crate::ops::epilogue::{Activation, ChannelAffine, Epilogue};
use crate::ops::{Precision, Window};
use crate::tensor::Tensor;

pub struct Conv2dLayer {
    name: String,
    window: Window,
    input: Vec<usize>,
    output: Vec<usize>,
    pub weight: Param,
    pub bias: Param,
    /// ReLU applied in the forward pass (a following relu layer folded in).
    pub relu: bool,
    /// The products' precision (`Layer::set_precision`).
    precision: Precision,
    y: Tensor,
    dx: Tensor,
    scratch: ConvScratch,
    folded: FoldedWeights,
}

/// The weights and bias with a following batch norm folded in, and the versions of the six
/// tensors they came from (recomputed when any changes).
#[derive(Default)]
struct FoldedWeights {
    key: Option<[u64; 6]>,
    weight: Tensor,
    bias: Tensor,
}

impl FoldedWeights {
    /// W' = W a and b' = (b - mean) a + beta per output channel (W is [kh, kw, C_in, C_out]).
    fn update(&mut self, weight: &Tensor, bias: &Tensor, norm: &EvalNorm) {
        let [g, b, m, v] = norm.versions;
        let key = [weight.version(), bias.version(), g, b, m, v];
        if self.key == Some(key) {
            return;
        }
        let a = eval_scale(norm.gamma, norm.var, norm.eps);
        self.weight.copy_from(weight);
        for row in self.weight.data_mut().chunks_exact_mut(a.len()) {
            row.iter_mut().zip(&a).for_each(|(w, a)| *w *= a);
        }
        self.bias.resize(bias.shape());
        let folded = bias.data().iter().zip(norm.mean).zip(&a).zip(norm.beta).map(|(((b, m), a), beta)| (b - m) * a + beta);
        self.bias.data_mut().iter_mut().zip(folded).for_each(|(o, v)| *o = v);
        self.key = Some(key);
    }
}

impl Conv2dLayer {
    /// `input` is [H, W, C_in]; `weight` is [kh, kw, C_in, C_out].
    pub fn new(name: String, input: &[usize], window: Window, weight: Param, bias: Param) -> Result<Conv2dLayer> {
        let x_shape = [&[1], input].concat();
        let shape = ConvShape::of(&x_shape, weight.value.shape(), Some(bias.value.shape()), &window)
            .map_err(|e| crate::Error::invalid(&name, e.to_string()))?;
        Ok(Conv2dLayer {
            output: shape.output_shape()[1..].to_vec(),
            input: input.to_vec(),
            name,
            window,
            weight,
            bias,
            relu: false,
            precision: Precision::F32,
            y: Tensor::empty(),
            dx: Tensor::empty(),
            scratch: ConvScratch::default(),
            folded: FoldedWeights::default(),
        })
    }
}

impl Layer for Conv2dLayer {
    fn kind(&self) -> &'static str {
        "conv2d"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        conv2d_forward_into(
            x,
            &self.weight.value,
            &self.bias.value,
            &self.window,
            self.relu,
            self.precision,
            &mut self.y,
            &mut self.scratch,
        )
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        let dy = if self.relu { OutputGrad::ThroughRelu { dy, y: &self.y } } else { OutputGrad::Plain(dy) };
        if !self.weight.trainable && !need_input_grad {
            // Frozen weights in the first layer (the whitening layer): db alone, the weights'
            // gradient left as it is (nothing reads a frozen parameter's).
            return conv2d_bias_grad_into(dy, &mut self.bias.grad, &mut self.scratch);
        }
        let grads = Conv2dGradsMut {
            d_input: if need_input_grad { Some(&mut self.dx) } else { None },
            d_weight: &mut self.weight.grad,
            d_bias: &mut self.bias.grad,
        };
        conv2d_backward_into(x, &self.weight.value, dy, &self.window, self.precision, grads, &mut self.scratch)
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn backward_reads_output(&self) -> bool {
        self.relu
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
    fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }
    fn forward_eval_fused(&mut self, x: &Tensor, next: &mut [Box<dyn Layer>]) -> Result<usize> {
        let c_out = self.bias.value.len();
        let is_gelu = |layer: Option<&Box<dyn Layer>>| layer.is_some_and(|l| l.kind() == "gelu");
        if let Some(pool) = next.first().and_then(|l| l.max_pool_window()) {
            check_input(&self.name, x, &self.input)?;
            // After the pooling, a norm (and its relu, or a GELU after it) or a GELU: applied
            // to each pooled value in the same pass.
            let after = &next[1..];
            let norm = after.first().and_then(|l| l.eval_norm()).filter(|n| n.gamma.len() == c_out);
            let norm = norm.map(|n| (eval_scale(n.gamma, n.var, n.eps), n));
            let (then, taken) = match &norm {
                Some((a, n)) => {
                    let (activation, taken) = match n.relu {
                        true => (Activation::Relu, 2),
                        false if is_gelu(after.get(1)) => (Activation::Gelu, 3),
                        false => (Activation::Identity, 2),
                    };
                    (Epilogue { norm: Some(ChannelAffine { m: n.mean, a, b: n.beta }), activation }, taken)
                }
                _ if is_gelu(after.first()) => (Epilogue::activation(Activation::Gelu), 2),
                _ => (Epilogue::NONE, 1),
            };
            let (w, b, y) = (&self.weight.value, &self.bias.value, &mut self.y);
            let epilogue = (self.relu, then);
            let fused = conv2d_forward_max_pooled_into(x, w, b, &self.window, epilogue, self.precision, &pool, y, None, &mut self.scratch)?;
            return Ok(if fused { hand_over(&mut self.y, &mut next[..taken]) } else { 0 });
        }
        // A relu between the two (folded into this layer) would not commute with the norm.
        let norm = next.first().and_then(|l| l.eval_norm()).filter(|n| !self.relu && n.gamma.len() == c_out);
        if norm.is_none() && (self.relu || !is_gelu(next.first())) {
            return Ok(0);
        }
        check_input(&self.name, x, &self.input)?;
        // The norm folded into the weights (its relu into the convolution's), then a GELU after
        // it (or after this layer) in the epilogue.
        let (weight, bias, relu, gelu_at) = match norm {
            Some(norm) => {
                self.folded.update(&self.weight.value, &self.bias.value, &norm);
                (&self.folded.weight, &self.folded.bias, norm.relu, (!norm.relu).then_some(1))
            }
            None => (&self.weight.value, &self.bias.value, false, Some(0)),
        };
        let gelu_at = gelu_at.filter(|&at| is_gelu(next.get(at)));
        let then = if gelu_at.is_some() { Epilogue::activation(Activation::Gelu) } else { Epilogue::NONE };
        conv2d_forward_then_into(x, weight, bias, &self.window, (relu, then), self.precision, &mut self.y, &mut self.scratch)?;
        let taken = gelu_at.map_or(1, |at| at + 1);
        Ok(hand_over(&mut self.y, &mut next[..taken]))
    }
    fn fuses_in_training(&self, next: &dyn Layer, batch: usize) -> bool {
        // A folded relu's backward pass reads this layer's output: it must be written.
        let x_shape = [&[batch], &self.input[..]].concat();
        let fuses = |pool: Window| max_pools_as_finished(&x_shape, self.weight.value.shape(), &self.window, self.precision, &pool);
        !self.relu && next.max_pool_window().is_some_and(fuses)
    }
    fn forward_train_fused(&mut self, x: &Tensor, next: &mut dyn Layer) -> Result<bool> {
        let batch = x.shape().first().copied().unwrap_or(0);
        let Some(pool) = next.max_pool_window().filter(|_| self.fuses_in_training(next, batch)) else {
            return Ok(false);
        };
        check_input(&self.name, x, &self.input)?;
        let Some((y, winners)) = next.max_pool_outputs() else {
            return Ok(false);
        };
        let (w, b) = (&self.weight.value, &self.bias.value);
        let fused = conv2d_forward_max_pooled_into(
            x,
            w,
            b,
            &self.window,
            (false, Epilogue::NONE),
            self.precision,
            &pool,
            y,
            Some(winners),
            &mut self.scratch,
        )?;
        if fused {
            // Never written: hollow, with the shape the pooling's and this layer's backward
            // passes check.
            self.y.make_hollow(&[&[batch], &self.output[..]].concat());
        }
        Ok(fused)
    }
    fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
    fn flops(&self) -> u64 {
        let k: usize = self.weight.value.shape()[..3].iter().product();
        2 * (self.output.iter().product::<usize>() * k) as u64
    }
}

/// A fused evaluation pass's output `y`, handed to the last of the layers it computed
/// (`taken`, in order), the ones between told they were skipped. Returns how many.
fn hand_over(y: &mut Tensor, taken: &mut [Box<dyn Layer>]) -> usize {
    let Some((last, between)) = taken.split_last_mut() else {
        return 0;
    };
    between.iter_mut().for_each(|l| l.skipped_in_fusion());
    last.take_output(y);
    taken.len()
}
