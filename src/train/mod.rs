//! Training: the run's settings, the loop, evaluation, metrics and checkpoints.

pub mod checkpoint;
pub mod checkpoint_every;
mod checkpoint_v1;
pub mod datasets;
pub mod distributed;
pub mod evaluate;
pub mod metrics;
pub mod run;
pub mod run_folder;
mod step_handshake;
pub mod trainer;

pub use checkpoint::{checkpoint_bytes, save_checkpoint, Checkpoint, CheckpointMeta, EpochProgress, RunRecord};
pub use checkpoint_every::CheckpointEvery;
pub use evaluate::{evaluate, EvalOptions, Evaluation};
pub use metrics::EpochMetrics;
pub use run::RunConfig;
pub use run_folder::ExistingRun;
pub use step_handshake::{STEP_HANDSHAKE_ENV, STEP_HANDSHAKE_PREFIX};
pub use trainer::{train, RunSummary, StoppedAt, TrainOptions, TrainReport, SUMMARY_FILE};
