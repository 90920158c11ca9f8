//! Models: the spec (input, initialiser, layers), the one shape walk that resolves it (the
//! plan, which also gives every parameter its name), weight initialisers, the builder, and the
//! network built from a spec.

mod build;
pub mod init;
pub mod network;
pub mod plan;
pub mod spec;
pub mod summary;
mod sym_eigen;
pub mod whitening;

pub use network::{Loss, Network, StepStats};
pub use plan::{LayerPlan, Plan, PlannedOp};
pub use spec::{Init, LayerConfig, ModelSpec};
