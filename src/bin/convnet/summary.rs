//! `convnet summary`: the layer table of a model config.

use clap::Args;
use std::path::PathBuf;

use convnet::model::{summary::summary, ModelConfig};

/// Print a model's layers, output shapes, parameter counts and forward MFLOPs per image,
/// checking every shape on the way (like Keras' model.summary()).
#[derive(Args)]
pub struct SummaryArgs {
    /// The model config (TOML).
    #[arg(long, default_value = "configs/fashion-mnist.toml")]
    config: PathBuf,
}

pub fn run(args: SummaryArgs) -> convnet::Result<()> {
    let cfg = ModelConfig::load(&args.config)?;
    let net = crate::check_model(&cfg, &args.config)?;
    print!("{}", summary(&net));
    Ok(())
}
