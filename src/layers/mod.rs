//! Layers: an op with its parameters, their gradients and what the forward pass keeps for the
//! backward pass. A network is a sequence of layers (`Sequential`); backpropagation walks it in
//! reverse.
//!
//!   forward(x, mode)          y into the layer's own buffer (`output`); keeps what backward
//!                             needs beyond x and y (an argmax, a scale)
//!   backward(x, dy, need_dx)  the parameter gradients, and dx into the layer's own buffer
//!                             (`input_grad`); x is the forward input, still held by the
//!                             layer before (as in Caffe, nothing is copied to be kept)
//!
//! Each layer owns its output and input-gradient buffers and reuses them from step to step, so
//! a training step allocates nothing once the first one has sized them. In training, a
//! `Sequential` lends the buffers that are dead to other layers (an output no backward pass
//! reads, an input gradient once the layer before has read it: `spare_buffers`), so the memory
//! goes to what is still needed; a layer says what its backward pass reads
//! (`backward_reads_input`, `backward_reads_output`).

pub mod activation;
pub mod batch_norm;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod gelu;
pub mod global_pool;
pub mod lrn;
pub mod pool;
pub mod residual;
pub mod scale;
pub mod sequential;
mod spare_buffers;

use crate::error::{Error, Result};
use crate::ops::{Precision, Window};
use crate::tensor::Tensor;

pub use activation::ActivationLayer;
pub use batch_norm::BatchNormLayer;
pub use conv2d::Conv2dLayer;
pub use dense::DenseLayer;
pub use dropout::DropoutLayer;
pub use flatten::FlattenLayer;
pub use gelu::GeluLayer;
pub use global_pool::GlobalAvgPoolLayer;
pub use lrn::LrnLayer;
pub use pool::{AvgPoolLayer, MaxPoolLayer};
pub use residual::ResidualLayer;
pub use scale::ScaleLayer;
pub use sequential::Sequential;

/// Training or evaluation: layers such as dropout and batch norm behave differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// One parameter tensor with its gradient and how it is regularised.
#[derive(Clone, Debug)]
pub struct Param {
    /// The full name, "4.residual.2.conv2d.weight" (the rule: `model::plan`). A layer names its
    /// parameters by role ("weight", "bias", "gamma", ...) and the builder prefixes them.
    pub name: String,
    pub value: Tensor,
    pub grad: Tensor,
    /// L2 penalty lambda (tf.nn.l2_loss * lambda); 0 for biases.
    pub l2: f32,
    /// Whether weight decay applies (weights yes; biases and norm parameters no).
    pub decay: bool,
    /// False for state that is saved with the model but not learnt by gradient descent
    /// (batch norm's running statistics) and for frozen weights (the whitening layer's), whose
    /// gradient a layer may leave uncomputed (a first convolution computes db alone).
    pub trainable: bool,
}

impl Param {
    pub fn new(name: impl Into<String>, value: Tensor, l2: f32, decay: bool) -> Param {
        let grad = Tensor::zeros(value.shape());
        Param { name: name.into(), value, grad, l2, decay, trainable: true }
    }

    /// Saved state that the optimiser leaves alone.
    pub fn buffer(name: impl Into<String>, value: Tensor) -> Param {
        Param { name: name.into(), grad: Tensor::empty(), value, l2: 0.0, decay: false, trainable: false }
    }

    /// The role, the last part of the name: "weight", "bias", "gamma", "running_mean", ...
    pub fn role(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }
}

pub trait Layer: Send {
    /// The layer's type as written in configs: "conv2d", "max_pool", ...
    fn kind(&self) -> &'static str;
    /// How messages, tables and pictures name the layer: "layer 3 (max_pool)", "layer 0
    /// (conv2d + relu)" for a conv with its relu folded in, "layer 4.1 (conv2d)" inside block 4.
    fn label(&self) -> &str;
    /// Output shape of one example (without the batch axis).
    fn output_shape(&self) -> &[usize];
    /// Computes the output of batch `x` into the buffer that `output` returns.
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<()>;
    /// The last forward's output.
    fn output(&self) -> &Tensor;
    /// Given the last forward's input `x` and the output gradient `dy`: fills the parameter
    /// gradients and, if `need_input_grad`, the input gradient that `input_grad` returns.
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()>;
    /// The last backward's input gradient.
    fn input_grad(&self) -> &Tensor;
    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }
    /// Seeds the layer's randomness (dropout) for the next training step.
    fn set_seed(&mut self, _seed: u64) {}
    /// The precision of the layer's products (`ops::precision`): the convolutions and dense
    /// layers (and the blocks holding them) use it; every other layer computes in float32.
    fn set_precision(&mut self, _precision: Precision) {}
    /// Evaluation mode only: computes this layer and the first layers of `next` (the layers
    /// after it, in order) in one pass where it can (a convolution and the batch norm after it,
    /// folded into its weights; a convolution, the max pooling, norm and GELU after it, each
    /// pooled value finished in the convolution's epilogue), leaving the result as the last
    /// one's output: this layer's own output, and those of the layers between, are then not
    /// kept (those layers are told: `skipped_in_fusion`). Returns how many of `next` it took;
    /// 0, having done nothing, where it cannot.
    fn forward_eval_fused(&mut self, _x: &Tensor, _next: &mut [Box<dyn Layer>]) -> Result<usize> {
        Ok(0)
    }
    /// A fused evaluation pass went through this layer without writing its output: it drops
    /// what it kept from an earlier pass that a backward pass would otherwise take as this
    /// one's (a max pooling's winners: the backward pass is then refused, not misrouted).
    fn skipped_in_fusion(&mut self) {}
    /// This layer in evaluation mode as a per-channel affine map, if it is one (batch norm).
    fn eval_norm(&self) -> Option<EvalNorm<'_>> {
        None
    }
    /// This layer's window, if it is a max pooling (a convolution before it may pool its
    /// output as it is finished: `forward_eval_fused`, `forward_train_fused`).
    fn max_pool_window(&self) -> Option<Window> {
        None
    }
    /// A max pooling's output and winners, for the convolution before it to fill
    /// (`forward_train_fused`).
    fn max_pool_outputs(&mut self) -> Option<(&mut Tensor, &mut Vec<u32>)> {
        None
    }
    /// Training mode: whether `forward_train_fused` computes this layer and `next` in one pass
    /// for a batch of `batch`.
    fn fuses_in_training(&self, _next: &dyn Layer, _batch: usize) -> bool {
        false
    }
    /// Training mode: computes this layer and `next` in one pass where this layer's output is
    /// read by nothing but `next`'s forward pass (a convolution without relu before a max
    /// pooling, whose backward pass reads only the winners): `next`'s output and winners
    /// written, this layer's output left hollow with its shape. Returns false, having done
    /// nothing, when it cannot (`fuses_in_training`).
    fn forward_train_fused(&mut self, _x: &Tensor, _next: &mut dyn Layer) -> Result<bool> {
        Ok(false)
    }
    /// Takes `y`, computed by the layer before in a fused pass, as this layer's output (the
    /// buffers are swapped, nothing is copied).
    fn take_output(&mut self, _y: &mut Tensor) {}
    /// Forward multiply-adds x 2 per example.
    fn flops(&self) -> u64 {
        0
    }
    /// Whether backward reads the values of its forward input x, not only its shape. When it
    /// does not (max pooling keeps its argmax), a `Sequential` training pass lends the buffer
    /// of the layer before's output to other layers once this layer's forward has run.
    fn backward_reads_input(&self) -> bool {
        true
    }
    /// Whether backward reads this layer's own output (a fused ReLU masks dy with y > 0).
    fn backward_reads_output(&self) -> bool {
        true
    }
    /// Whether `forward` in training mode gives the same output again from the same input,
    /// changing nothing else (a pure elementwise function: GELU, an activation, a scale). A
    /// `Sequential` training pass then lends the output's buffer out once the next layer's
    /// forward has run, and computes it again just before a backward pass reads it: a pass
    /// over memory for a buffer that would otherwise live through the whole step.
    fn recomputable(&self) -> bool {
        false
    }
    /// The output and input-gradient buffers, for a `Sequential` that lends them between its
    /// layers (`Tensor::take_values`): the layer must accept either one hollow, or holding any
    /// other values, at the start of a pass. None (the default) keeps them to the layer.
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        None
    }
}

/// A batch norm in evaluation mode: y = gamma (x - mean) / sqrt(var + eps) + beta per channel
/// (the running statistics), then ReLU if `relu`; `versions` identify the four tensors' values.
pub struct EvalNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub mean: &'a [f32],
    pub var: &'a [f32],
    pub eps: f32,
    pub relu: bool,
    pub versions: [u64; 4],
}

/// Checks that backward gets the batch that forward saw (its output has that batch size).
pub(crate) fn check_backward(layer: &str, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<()> {
    if x.shape().first() != y.shape().first() || dy.shape() != y.shape() {
        return Err(Error::invalid(
            layer,
            format!(
                "backward got x {:?} and dy {:?} but the last forward output is {:?} (backward before forward?)",
                x.shape(),
                dy.shape(),
                y.shape()
            ),
        ));
    }
    Ok(())
}

/// Checks that a batch has the per-example shape `expected`.
pub(crate) fn check_input(layer: &str, x: &Tensor, expected: &[usize]) -> Result<()> {
    if x.shape().len() != expected.len() + 1 || &x.shape()[1..] != expected {
        return Err(Error::shape(layer, format!("[N, {}]", dims(expected)), format!("{:?}", x.shape())));
    }
    Ok(())
}

pub(crate) fn dims(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}
