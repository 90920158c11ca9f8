//! convnet: a convolutional neural network engine with every layer written by hand.
//!
//! - `tensor`: the f32 NHWC tensor
//! - `ops`: convolution, pooling, LRN, activations, dense, softmax cross-entropy, L2; forward and
//!   backward, each with a plain-loop reference beside the fast path

pub mod bench;
mod chunks;
pub mod config;
pub mod error;
pub mod fs;
pub mod layers;
pub mod model;
pub mod ops;
mod seeds;
pub mod tensor;
pub mod threads;

pub use config::Config;
pub use error::{Error, Result};
pub use tensor::Tensor;
pub mod data;
pub mod optim;
pub mod train;
pub mod viz;
