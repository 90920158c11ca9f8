//! Layers: an op with its parameters, their gradients and what the forward pass keeps for the
//! backward pass. A network is a sequence of layers; backpropagation walks it in reverse.
//!
//!   forward(x, mode) -> y     keeps what backward needs (the input, an argmax, a scale)
//!   backward(dy)     -> dx    also fills the gradients of the layer's parameters

pub mod activation;
pub mod conv2d;
pub mod dense;
pub mod flatten;
pub mod lrn;
pub mod pool;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub use activation::ActivationLayer;
pub use conv2d::Conv2dLayer;
pub use dense::DenseLayer;
pub use flatten::FlattenLayer;
pub use lrn::LrnLayer;
pub use pool::{AvgPoolLayer, MaxPoolLayer};

/// Training or evaluation: layers such as dropout and batch norm behave differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// One parameter tensor with its gradient and how it is regularised.
#[derive(Clone, Debug)]
pub struct Param {
    /// "weight" or "bias".
    pub kind: &'static str,
    pub value: Tensor,
    pub grad: Tensor,
    /// L2 penalty lambda (tf.nn.l2_loss * lambda); 0 for biases.
    pub l2: f32,
    /// Whether decoupled weight decay (AdamW) applies.
    pub decay: bool,
}

impl Param {
    pub fn new(kind: &'static str, value: Tensor, l2: f32, decay: bool) -> Param {
        let grad = Tensor::zeros(value.shape());
        Param { kind, value, grad, l2, decay }
    }
}

pub trait Layer: Send {
    /// The layer's type as written in configs: "conv2d", "max_pool", ...
    fn kind(&self) -> &'static str;
    /// Output shape of one example (without the batch axis).
    fn output_shape(&self) -> &[usize];
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor>;
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor>;
    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }
    /// Forward multiply-adds x 2 per example.
    fn flops(&self) -> u64 {
        0
    }
}

/// The tensor a layer cached in forward, or an error saying backward came first.
pub(crate) fn cached<'a>(cache: &'a Option<Tensor>, layer: &str) -> Result<&'a Tensor> {
    cache.as_ref().ok_or_else(|| Error::invalid(layer, "backward called before forward"))
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
