//! `convnet train`: train a model from a config, writing everything to a run folder.

use clap::Args;
use std::path::PathBuf;

use convnet::train::{train, EpochMetrics, TrainOptions};
use convnet::viz::write_curves_for;
use convnet::Config;

/// Train a model. Writes runs/<name>/ with config.toml, metrics.csv (per epoch: loss, train,
/// validation and test accuracy, time), last.safetensors (resumable) and best.safetensors (best
/// validation accuracy), and curves.png / curves.svg (loss and accuracy per epoch, redrawn after
/// every epoch; see `convnet plot --help`). With no arguments: Fashion-MNIST with configs/fashion-mnist.toml.
#[derive(Args)]
pub struct TrainArgs {
    /// The model config (TOML): layers, optimiser, schedule, batch size, epochs, data set.
    #[arg(long, default_value = "configs/fashion-mnist.toml")]
    config: PathBuf,
    /// The data folder (overrides the config's data.path).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of epochs (overrides train.epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Examples per step (overrides train.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate (overrides optimizer.lr).
    #[arg(long)]
    lr: Option<f32>,
    /// Seed for initialisation and shuffling (overrides train.seed). Same seed, same result.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The run folder [default: runs/<config name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in the run folder from its last.safetensors.
    #[arg(long)]
    resume: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: TrainArgs) -> convnet::Result<()> {
    crate::set_threads(args.threads)?;
    let mut cfg = Config::load(&args.config)?;
    let run = &mut cfg.run;
    if let Some(e) = args.epochs {
        run.train.epochs = e;
    }
    if let Some(b) = args.batch_size {
        run.train.batch_size = b;
    }
    if let Some(lr) = args.lr {
        run.optimizer = run.optimizer.clone().with_lr(lr);
    }
    if let Some(s) = args.seed {
        run.train.seed = s;
    }
    // The overrides are checked as the file was; the model's shapes were checked by load.
    cfg.validate(&args.config.display().to_string())?;
    let out_dir = args.out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.model.name));
    let label = cfg.model.name.clone();
    let opts = TrainOptions { config: cfg, data_dir: args.data, out_dir: out_dir.clone(), resume: args.resume, verbose: !args.quiet };
    let (curves_png, curves_svg) = (out_dir.join("curves.png"), out_dir.join("curves.svg"));
    // Redraw the curves after every epoch; a picture that cannot be drawn must not stop training.
    let mut on_epoch = |history: &[EpochMetrics]| -> convnet::Result<()> {
        if let Err(e) = write_curves_for(&[(label.clone(), history.to_vec())], &curves_png, Some(&curves_svg)) {
            eprintln!("warning: could not draw the training curves: {e}");
        }
        Ok(())
    };
    let report = train(&opts, &mut on_epoch)?;
    if let Some(test) = report.final_test {
        println!("final test accuracy: {:.2}% (loss {:.4})", 100.0 * test.accuracy, test.loss);
    }
    println!("run folder: {}", out_dir.display());
    Ok(())
}
