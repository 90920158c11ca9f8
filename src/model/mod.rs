//! Models: the config file format, weight initialisers, and the network built from a config.

pub mod build;
pub mod config;
pub mod init;
pub mod network;
pub mod summary;

pub use config::{DatasetKind, LayerConfig, ModelConfig};
pub use network::{Network, StepStats};
