//! Training: the loop, evaluation, metrics and checkpoints.

pub mod checkpoint;
pub mod datasets;
pub mod evaluate;
pub mod metrics;
pub mod trainer;

pub use checkpoint::{save_checkpoint, Checkpoint, CheckpointMeta};
pub use evaluate::{evaluate, Evaluation};
pub use metrics::EpochMetrics;
pub use trainer::{train, TrainOptions, TrainReport};
