//! `convnet summary`: the layer table of a model config.

use clap::Args;
use std::path::PathBuf;

use convnet::model::{summary::summary, Network};
use convnet::Config;

/// Print a model's layers, output shapes, parameter counts and forward MFLOPs per image,
/// checking every shape on the way (like Keras' model.summary()).
#[derive(Args)]
pub struct SummaryArgs {
    /// The model config (TOML).
    #[arg(long, default_value = "configs/fashion-mnist.toml")]
    config: PathBuf,
}

pub fn run(args: SummaryArgs) -> convnet::Result<()> {
    // Loading checks every shape, naming the file; building cannot fail on them after that.
    let cfg = Config::load(&args.config)?;
    let net = Network::build(&cfg.model, cfg.run.train.seed)?;
    print!("{}", summary(&net));
    Ok(())
}
