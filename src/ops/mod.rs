//! The operations of a CNN, each a forward and a backward function. Conv and pool keep a
//! plain-loop reference version (`*_ref`) beside the fast one; the tests hold them equal.

pub mod activation;
mod aligned;
pub mod batch_norm;
pub mod bf16;
mod column_sums;
pub mod conv2d;
pub mod conv2d_ref;
pub mod conv_direct;
pub mod conv_direct_bf16;
pub mod conv_dw_direct;
mod conv_output_grad;
pub mod conv_shape;
pub mod conv_tiles;
pub mod conv_tiles_dw;
pub mod dense;
pub mod epilogue;
pub mod gelu;
#[doc(hidden)]
pub mod gemm;
#[doc(hidden)]
pub mod gemm_bf16;
mod im2col;
pub mod l2;
pub mod lrn;
pub mod pool;
pub mod pool_ref;
pub mod precision;
pub mod simd;
pub mod softmax;
mod transpose;
pub mod window;
mod winograd;
mod winograd_dw;

pub use precision::{Bf16Convs, Precision};
pub use window::{Geometry, Padding, Window};
