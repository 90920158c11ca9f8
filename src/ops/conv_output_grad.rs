//! The gradient arriving at a convolution's output, plain or through the ReLU fused into the
//! forward pass: what conv2d's backward pass and its weight-gradient kernels read.

use super::activation::Activation;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The gradient arriving at a convolution's output.
#[derive(Clone, Copy)]
pub enum OutputGrad<'a> {
    /// dL/dy of a plain convolution.
    Plain(&'a Tensor),
    /// dL/dy of a convolution with its ReLU fused (`relu` in the forward pass), and that pass's
    /// output y: the gradient flows only where the ReLU passed the value, dz = dy where y > 0.
    ThroughRelu { dy: &'a Tensor, y: &'a Tensor },
}

impl<'a> OutputGrad<'a> {
    pub(crate) fn dy(&self) -> &'a Tensor {
        match *self {
            OutputGrad::Plain(dy) | OutputGrad::ThroughRelu { dy, .. } => dy,
        }
    }

    /// Refuses a fused ReLU's output y whose shape is not `expected` (the output's).
    pub(crate) fn check_relu_output(&self, expected: &[usize]) -> Result<()> {
        match self {
            OutputGrad::ThroughRelu { y, .. } if y.shape() != expected => {
                Err(Error::shape("conv2d backward", format!("y {expected:?} (the shape of dy)"), format!("{:?}", y.shape())))
            }
            _ => Ok(()),
        }
    }

    /// The gradient dz at the convolution itself of `count` images from `first` (`len` values
    /// each): dy's own slice, or dy masked by the ReLU, written into `buf`.
    pub(crate) fn images<'b>(&self, first: usize, count: usize, len: usize, buf: &'b mut Vec<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        let range = first * len..(first + count) * len;
        match *self {
            OutputGrad::Plain(dy) => &dy.data()[range],
            OutputGrad::ThroughRelu { dy, y } => {
                buf.resize(count * len, 0.0);
                Activation::Relu.backward_into(&y.data()[range.clone()], &dy.data()[range], buf);
                buf
            }
        }
    }
}
