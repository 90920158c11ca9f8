//! Training: the run's settings, the loop, evaluation, metrics and checkpoints.

pub mod checkpoint;
mod checkpoint_v1;
pub mod datasets;
pub mod evaluate;
pub mod metrics;
pub mod run;
pub mod trainer;

pub use checkpoint::{save_checkpoint, Checkpoint, CheckpointMeta};
pub use evaluate::{evaluate, EvalOptions, Evaluation};
pub use metrics::EpochMetrics;
pub use run::RunConfig;
pub use trainer::{train, TrainOptions, TrainReport};
