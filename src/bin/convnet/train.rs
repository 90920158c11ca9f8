//! `convnet train`: train a model from a config, writing everything to a run folder.

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use convnet::dist::Group;
use convnet::ops::Precision;
use convnet::train::{train, CheckpointEvery, EpochMetrics, ExistingRun, TrainOptions};
use convnet::viz::write_curves_for;
use convnet::Config;

/// Train a model. Writes runs/<name>/ with config.toml, metrics.csv (per epoch: loss, train,
/// validation and test accuracy, time), last.safetensors (resumable) and best.safetensors (best
/// validation accuracy), and curves.png / curves.svg (loss and accuracy per epoch, redrawn after
/// every epoch; see `convnet plot --help`), and at the end summary.json (the training's FLOPs and
/// wall time, also printed, so accuracy per compute compares across machines). With no
/// arguments: Fashion-MNIST with configs/fashion-mnist.toml.
///
/// Ctrl-C (or SIGTERM) stops after the step in progress and saves the exact position in
/// last.safetensors: `--resume` continues from there and ends with the same weights as a run
/// never stopped. A second Ctrl-C quits at once (the last checkpoint stays whole). One training
/// at a time may use a run folder; one that holds an earlier run needs `--resume` or
/// `--overwrite`.
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
    /// The precision of the convolutions' and dense layers' products (overrides
    /// train.precision): f32, or bf16 (bfloat16 inputs, float32 accumulation and weights; fast
    /// on CPUs with AVX512-BF16, emulated elsewhere), its convolutions by the algorithms that
    /// suit this CPU (the AMX tiles where it has AMX, else float32's). bf16-tiles or
    /// bf16-winograd pick one of those two families on every machine: the same bits anywhere.
    #[arg(long)]
    precision: Option<Precision>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The run folder [default: runs/<config name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in the run folder from its last.safetensors (from the end of an epoch
    /// or from the step where it was stopped). Give the same config and overrides.
    #[arg(long)]
    resume: bool,
    /// Start afresh in a run folder that holds an earlier run, deleting its checkpoints,
    /// metrics.csv and pictures.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Start from this checkpoint's weights and input normalisation instead of random ones
    /// (fine-tuning a model from `convnet import` or an earlier run): the config's model must
    /// have the same parameters, by name and shape. The optimiser starts afresh.
    #[arg(long, value_name = "CKPT", conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// Also write last.safetensors inside epochs this often, so that a kill nothing can catch
    /// (SIGKILL, a power cut) loses at most this much work: 30s, 10m, 2h, 500steps, or 0 for
    /// only at the end of each epoch.
    #[arg(long, value_name = "DURATION", default_value_t = CheckpointEvery::default())]
    checkpoint_every: CheckpointEvery,
    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
    /// Train data-parallel as one rank of an MPI job: `mpirun -np N convnet train --distributed
    /// ...`. Each rank computes its share of every batch; the result equals, bit for bit, one
    /// process training alone with the same batch size. Rank 0 writes the run folder. Each
    /// rank's --threads default is its share of its machine's cores. Needs a convnet built with
    /// `--features mpi` (see docs/distributed.md).
    #[arg(long)]
    distributed: bool,
}

pub fn run(args: TrainArgs) -> convnet::Result<ExitCode> {
    if !args.distributed {
        crate::set_threads(args.threads)?;
        return run_with(args, None);
    }
    crate::set_threads_for_rank(args.threads)?;
    let group = Arc::new(join_mpi_job()?);
    let (rank, host) = (group.rank(), group.host());
    match run_with(args, Some(Arc::clone(&group))) {
        Ok(code) => Ok(code),
        Err(e) => {
            // The other ranks may be waiting for this one: end them all, now, naming this one.
            eprintln!("error: rank {rank} of {} (on {host}): {e}", group.size());
            group.abort(if e.is_user_error() { 2 } else { 1 })
        }
    }
}

#[cfg(feature = "mpi")]
pub fn join_mpi_job() -> convnet::Result<convnet::dist::Group> {
    convnet::dist::mpi::join()
}

#[cfg(not(feature = "mpi"))]
pub fn join_mpi_job() -> convnet::Result<convnet::dist::Group> {
    Err(convnet::Error::invalid(
        "--distributed",
        "this convnet was built without MPI: build it with `cargo build --release --features mpi` (which needs OpenMPI \
         and libclang; on Debian: apt install openmpi-bin libopenmpi-dev libclang-dev), then run it under mpirun",
    ))
}

fn run_with(args: TrainArgs, group: Option<Arc<Group>>) -> convnet::Result<ExitCode> {
    let first_rank = group.as_ref().is_none_or(|g| g.rank() == 0);
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
    if let Some(p) = args.precision {
        run.train.precision = p;
    }
    // The overrides are checked as the file was; the model's shapes were checked by load.
    cfg.validate(&args.config.display().to_string())?;
    let out_dir = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&cfg.model.name));
    let label = cfg.model.name.clone();
    let existing = match (args.resume, args.overwrite) {
        (true, _) => ExistingRun::Resume,
        (false, true) => ExistingRun::Overwrite,
        (false, false) => ExistingRun::Refuse,
    };
    let stop = crate::signals::StopOnSignal::install()?;
    let opts = TrainOptions {
        data_dir: args.data.clone(),
        existing,
        verbose: !args.quiet && first_rank,
        checkpoint_every: args.checkpoint_every,
        stop: Some(stop.flag()),
        init_from: args.init_from.clone(),
        group: group.clone(),
        ..TrainOptions::new(cfg, out_dir.clone())
    };
    let (curves_png, curves_svg) = (out_dir.join("curves.png"), out_dir.join("curves.svg"));
    // Redraw the curves after every epoch; a picture that cannot be drawn must not stop training.
    let mut on_epoch = |history: &[EpochMetrics]| -> convnet::Result<()> {
        if let Err(e) = write_curves_for(&[(label.clone(), history.to_vec())], &curves_png, Some(&curves_svg)) {
            eprintln!("warning: could not draw the training curves: {e}");
        }
        Ok(())
    };
    let report = train(&opts, &mut on_epoch)?;
    if !first_rank {
        return Ok(if report.stopped.is_some() { stop.exit_code() } else { ExitCode::SUCCESS });
    }
    if let Some(at) = report.stopped {
        // Said even with --quiet: the one line that tells how to go on.
        eprintln!("{at}: resume with `{}`", resume_command(&args, &out_dir));
        return Ok(stop.exit_code());
    }
    if let Some(test) = report.final_test {
        println!("final test accuracy: {:.2}% (loss {:.4})", 100.0 * test.accuracy, test.loss);
    }
    println!("run folder: {}", out_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The command that continues this run: this program as it was started, the same config,
/// overrides and checkpoint interval, with --resume.
fn resume_command(args: &TrainArgs, out_dir: &Path) -> String {
    let program = std::env::args().next().unwrap_or_else(|| "convnet".into());
    let mut words = vec![shell_word(&program), "train".into(), "--config".into(), shell_word(&args.config.display().to_string())];
    if args.distributed {
        words.insert(0, "mpirun -np N".into());
        words.push("--distributed".into());
    }
    let mut option = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            words.extend([format!("--{name}"), shell_word(&v)]);
        }
    };
    option("data", args.data.as_ref().map(|d| d.display().to_string()));
    option("epochs", args.epochs.map(|v| v.to_string()));
    option("batch-size", args.batch_size.map(|v| v.to_string()));
    option("lr", args.lr.map(|v| v.to_string()));
    option("seed", args.seed.map(|v| v.to_string()));
    option("checkpoint-every", (args.checkpoint_every != CheckpointEvery::default()).then(|| args.checkpoint_every.to_string()));
    words.extend(["--resume".into(), "--out".into(), shell_word(&out_dir.display().to_string())]);
    words.join(" ")
}

/// `text` as one word for a POSIX shell: as it is when it is plain, in single quotes otherwise.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
