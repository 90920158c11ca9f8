//! convnet: a convolutional neural network engine, trainer and toolkit with every layer written
//! by hand, following the tutorial "CNN, from principles to application".
//!
//! The crate, bottom up (each module may use the ones above it, never the ones below):
//!
//! - [`tensor`]: the f32 NHWC [`Tensor`].
//! - [`ops`]: the operations of a CNN (convolution, pooling, LRN, batch norm, activations, dense,
//!   softmax cross-entropy, L2), each a forward and a backward function, with a plain-loop
//!   reference beside the fast path for convolution, pooling, LRN and batch norm.
//! - [`layers`]: an op with its parameters and buffers, behind the [`layers::Layer`] trait;
//!   [`layers::Sequential`] runs them in order.
//! - [`model`]: the [`model::ModelSpec`] (input, initialiser, layers), its plan (the one shape
//!   walk, which also names every parameter: `<config index>[.residual.<index>]...<kind>.<param>`,
//!   see [`model::plan`]) and the [`model::Network`] built from it.
//! - [`optim`]: SGD, Adam, AdamW and learning-rate schedules.
//! - [`data`]: data set readers (CIFAR-10, IDX, image folders), normalisation, batches,
//!   augmentation.
//! - [`train`]: the run's settings ([`train::RunConfig`]), the training loop, evaluation, metrics
//!   and checkpoints.
//! - [`viz`]: curves, filters, activations, confusion matrices and hand-written kernels, as PNG.
//! - [`interop`]: models in and out: ONNX export and import (a hand-written protobuf codec).
//! - [`dist`]: data-parallel training across processes (MPI with the `mpi` feature), equal bit for
//!   bit to one process: the batch sums of a step folded across the ranks in the one-process
//!   order.
//! - [`config`]: a config file, the model and the run in one TOML file ([`Config`]).
//! - [`error`]: the [`Error`] type, whose messages name the file, layer or value at fault.
//!
//! A network from a config, one training step and a prediction:
//!
//! ```
//! use convnet::model::{Loss, Network};
//! use convnet::optim::Optimizer;
//! use convnet::{Config, Tensor};
//!
//! let cfg = Config::from_toml(
//!     r#"
//!     name = "tiny"
//!     input = [8, 8, 1]
//!     [data]
//!     dataset = "mnist"
//!     [train]
//!     batch_size = 2
//!     epochs = 1
//!     [optimizer]
//!     kind = "sgd"
//!     lr = 0.1
//!     [[layers]]
//!     type = "conv2d"
//!     filters = 4
//!     kernel = 3
//!     [[layers]]
//!     type = "relu"
//!     [[layers]]
//!     type = "flatten"
//!     [[layers]]
//!     type = "dense"
//!     units = 3
//!     "#,
//!     "tiny.toml",
//! )?;
//! let mut net = Network::build(&cfg.model, 1)?;
//! assert_eq!(net.param_names(), ["0.conv2d.weight", "0.conv2d.bias", "3.dense.weight", "3.dense.bias"]);
//! let x = Tensor::zeros(&[2, 8, 8, 1]);
//! let stats = net.compute_gradients(&x, &[0, 2], Loss::default())?;
//! let mut sgd = Optimizer::new(cfg.run.optimizer.clone())?;
//! net.apply_gradients(&mut sgd, 0.1)?;
//! assert_eq!(net.predict(&x)?.shape(), [2, 3]);
//! assert!(stats.loss.is_finite());
//! # Ok::<(), convnet::Error>(())
//! ```

pub mod config;
pub mod data;
pub mod dist;
pub mod error;
pub mod interop;
pub mod layers;
pub mod model;
pub mod ops;
pub mod optim;
pub mod tensor;
pub mod train;
pub mod viz;

// For the command-line tool and the tests; not part of the library's API.
#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod fs;
#[doc(hidden)]
pub mod threads;

mod chunks;
mod seeds;
mod test_hooks;

pub use config::Config;
pub use error::{Error, Result};
pub use tensor::Tensor;
