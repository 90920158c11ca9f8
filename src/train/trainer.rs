//! The training loop: shuffled batches each epoch, forward / loss / backward / optimiser step,
//! then validation and test evaluation, metrics.csv, last.safetensors and best.safetensors in
//! the run folder. `resume` continues from last.safetensors with the optimiser state; because
//! each epoch's shuffle and each step's augmentation and dropout are derived from (seed,
//! position) (see `seeds`), nothing else is needed to continue bit-identically.
//!
//! In steps: [`train`] prepares the run folder and the state (fresh, or resumed from the last
//! checkpoint), then for each epoch runs `train_epoch` and `end_epoch` (evaluation, best
//! and last checkpoints, metrics).

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{save_checkpoint, save_checkpoint_with_history, Checkpoint, CheckpointMeta};
use super::datasets::{load_splits, Splits};
use super::evaluate::{evaluate, EvalOptions, Evaluation};
use super::metrics::{read_metrics, write_metrics, EpochMetrics};
use crate::config::Config;
use crate::data::augment::make_augmented_batch;
use crate::data::{batch_ranges, epoch_order, make_batch, Normalization};
use crate::error::{Error, Result};
use crate::fs::{remove_stale_temp_files, write_atomically};
use crate::model::{Loss, Network};
use crate::optim::Optimizer;

pub struct TrainOptions {
    pub config: Config,
    /// Overrides the config's data path.
    pub data_dir: Option<PathBuf>,
    /// The run folder (metrics.csv, config.toml, last/best.safetensors).
    pub out_dir: PathBuf,
    pub resume: bool,
    /// Show a progress bar and per-epoch lines on stderr.
    pub verbose: bool,
}

pub struct TrainReport {
    pub epochs: Vec<EpochMetrics>,
    /// The test set's evaluation by the final weights (the last epoch's own).
    pub final_test: Option<Evaluation>,
    pub class_names: Vec<String>,
}

/// Called after every epoch with the metrics so far (curves, logs).
pub type EpochHook<'a> = &'a mut dyn FnMut(&[EpochMetrics]) -> Result<()>;

/// Everything a run carries from epoch to epoch; what last.safetensors saves.
struct TrainState {
    net: Network,
    optimizer: Optimizer,
    history: Vec<EpochMetrics>,
    /// The best validation accuracy so far (the test accuracy without a validation set).
    best: f32,
    /// The run's own seed (a resumed run keeps it, whatever the config now says).
    seed: u64,
}

/// The files of a run folder.
struct RunFolder {
    dir: PathBuf,
    last: PathBuf,
    best: PathBuf,
    metrics: PathBuf,
}

/// The data of a run, loaded once.
struct RunData {
    splits: Splits,
    norm: Normalization,
}

/// What one epoch's training steps measured.
struct EpochTraining {
    loss_sum: f64,
    correct: usize,
    /// The learning rate of the last step.
    lr: f32,
    seconds: f32,
}

pub fn train(opts: &TrainOptions, on_epoch: EpochHook) -> Result<TrainReport> {
    let cfg = &opts.config;
    // The run folder comes first, so that an unwritable one is reported before the data is
    // read; on resume the checkpoint is read and checked before anything in it is written.
    let folder = RunFolder::create(&opts.out_dir)?;
    let mut state = if opts.resume { resume(cfg, &folder, opts.verbose)? } else { start(cfg)? };
    // Only now, with the checkpoint (if any) read and checked, is anything in the folder written.
    write_atomically(&folder.dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    if opts.resume {
        // A kill between writing the checkpoint and metrics.csv leaves the file one epoch
        // behind; rewrite it from the checkpoint so the two agree again.
        write_metrics(&folder.metrics, &state.history)?;
        if opts.verbose {
            eprintln!("resuming {} after epoch {}", folder.dir.display(), state.history.len());
        }
    }
    let data = load_data(cfg, &state.net, opts.data_dir.as_deref())?;
    if opts.verbose {
        let (n, train) = (data.splits.train.len(), &cfg.run.train);
        eprintln!(
            "training {} on {} examples ({} validation, {} test), {} epochs of {} steps, {} threads",
            cfg.model.name,
            n,
            data.splits.val.len(),
            data.splits.test.len(),
            train.epochs,
            n.div_ceil(train.batch_size),
            rayon::current_num_threads()
        );
    }
    let mut final_test = None;
    for epoch in state.history.len()..cfg.run.train.epochs {
        let trained = train_epoch(&mut state, cfg, &data, &folder, epoch, opts.verbose)?;
        final_test = Some(end_epoch(&mut state, cfg, &data, &folder, epoch, trained, opts.verbose)?);
        on_epoch(&state.history)?;
    }
    if final_test.is_none() && !state.history.is_empty() {
        // A resumed run that had already done all its epochs: nothing was evaluated here yet.
        final_test = Some(evaluate(&mut state.net, &data.splits.test, &data.norm, EvalOptions::for_run(&cfg.run))?);
    }
    Ok(TrainReport { epochs: state.history, final_test, class_names: data.splits.class_names })
}

/// A new run: the network with weights from the run's seed, an optimiser with no state.
fn start(cfg: &Config) -> Result<TrainState> {
    let net = Network::build(&cfg.model, cfg.run.train.seed)?;
    let optimizer = Optimizer::new(cfg.run.optimizer.clone())?;
    Ok(TrainState { net, optimizer, history: Vec::new(), best: f32::NEG_INFINITY, seed: cfg.run.train.seed })
}

/// The state saved in last.safetensors, checked against the config being trained.
fn resume(cfg: &Config, folder: &RunFolder, verbose: bool) -> Result<TrainState> {
    let ck = resume_checkpoint(&folder.last, cfg)?;
    let ck_err = |e: Error| match e {
        e @ Error::Checkpoint { .. } => e,
        other => Error::Checkpoint { path: folder.last.clone(), detail: other.to_string() },
    };
    let mut state = start(cfg)?;
    ck.load_weights_into(&mut state.net).map_err(ck_err)?;
    let sizes = state.net.trainable_sizes();
    state.optimizer.load_state(ck.meta.optimizer_step, ck.optimizer_state(), &sizes).map_err(ck_err)?;
    state.best = ck.meta.best_val_accuracy;
    // The shuffles of the remaining epochs come from the run's own seed.
    if ck.meta.seed != state.seed {
        if verbose {
            eprintln!("note: resuming with the run's seed {} (the config says {})", ck.meta.seed, state.seed);
        }
        state.seed = ck.meta.seed;
    }
    // The checkpoint carries the metrics of its epochs; older ones did not, and then
    // metrics.csv (written after the checkpoint) has them, and maybe one epoch more.
    state.history = if ck.history.len() == ck.meta.epoch {
        ck.history
    } else {
        read_metrics(&folder.metrics)?.into_iter().filter(|m| m.epoch <= ck.meta.epoch).collect()
    };
    if state.history.len() != ck.meta.epoch {
        return Err(Error::data(&folder.metrics, format!("has {} epochs but the checkpoint has {}", state.history.len(), ck.meta.epoch)));
    }
    Ok(state)
}

/// The splits, checked against the network, and the normalisation of the training set.
fn load_data(cfg: &Config, net: &Network, data_dir: Option<&Path>) -> Result<RunData> {
    let splits = load_splits(cfg, data_dir)?;
    let k = splits.class_names.len();
    let config_error = |detail: String| Error::Config { file: cfg.model.name.clone(), detail };
    if net.num_classes() != k {
        return Err(config_error(format!("the last layer outputs {} classes but the data set has {k}", net.num_classes())));
    }
    if splits.train.is_empty() {
        return Err(config_error("no training examples left after the validation split".into()));
    }
    let norm = Normalization::from_dataset(&splits.train);
    Ok(RunData { splits, norm })
}

/// One epoch of training steps over the shuffled training set.
fn train_epoch(
    state: &mut TrainState,
    cfg: &Config,
    data: &RunData,
    folder: &RunFolder,
    epoch: usize,
    verbose: bool,
) -> Result<EpochTraining> {
    let train = &data.splits.train;
    let (n, batch, epochs) = (train.len(), cfg.run.train.batch_size, cfg.run.train.epochs);
    let steps_per_epoch = n.div_ceil(batch);
    let base_lr = cfg.run.optimizer.lr();
    let loss = Loss { label_smoothing: cfg.run.train.label_smoothing };
    let order = epoch_order(n, state.seed, epoch);
    let bar = progress_bar(verbose, steps_per_epoch as u64, epoch + 1, epochs);
    let start = Instant::now();
    let mut trained = EpochTraining { loss_sum: 0.0, correct: 0, lr: base_lr, seconds: 0.0 };
    for (step, range) in batch_ranges(n, batch).enumerate() {
        let global_step = epoch * steps_per_epoch + step;
        // Augmentation and dropout draw from generators seeded by (seed, step): the same on
        // every run and after a resume.
        let (x, labels) = if cfg.run.augment.is_active() {
            let mut rng = crate::seeds::augment_rng(state.seed, global_step as u64);
            make_augmented_batch(train, &order[range], &data.norm, &cfg.run.augment, &mut rng)
        } else {
            make_batch(train, &order[range], &data.norm)
        };
        state.net.set_step_seed(state.seed, global_step as u64);
        let stats = state.net.compute_gradients(&x, &labels, loss).map_err(|e| match e {
            Error::Diverged(what) => Error::Diverged(format!(
                "training diverged at epoch {} step {} (global step {global_step}): {what}; {}",
                epoch + 1,
                step + 1,
                last_good(&folder.last)
            )),
            other => other,
        })?;
        trained.lr = cfg.run.schedule.lr_at(base_lr, global_step, steps_per_epoch, epochs);
        state.net.apply_gradients(&mut state.optimizer, trained.lr)?;
        trained.loss_sum += stats.loss as f64 * labels.len() as f64;
        trained.correct += stats.correct;
        let seen = ((step + 1) * batch).min(n);
        bar.set_message(format!("loss {:.4} acc {:.2}%", trained.loss_sum / seen as f64, 100.0 * trained.correct as f64 / seen as f64));
        bar.inc(1);
    }
    trained.seconds = start.elapsed().as_secs_f32();
    bar.finish_and_clear();
    // The last step's update is not checked by a forward pass before the checkpoint is
    // written: check the weights themselves, so a checkpoint never holds NaN weights.
    if let Some(p) = state.net.params().into_iter().find(|p| !p.value.is_finite()) {
        return Err(Error::Diverged(format!(
            "training diverged at epoch {} step {steps_per_epoch} (global step {}): parameter {} is not finite \
             (NaN or infinity) after the update; {}",
            epoch + 1,
            (epoch + 1) * steps_per_epoch - 1,
            p.name,
            last_good(&folder.last)
        )));
    }
    Ok(trained)
}

/// The end of an epoch: validation and test evaluation, the epoch's metrics, best.safetensors
/// if validation improved, last.safetensors and metrics.csv. Returns the test evaluation.
fn end_epoch(
    state: &mut TrainState,
    cfg: &Config,
    data: &RunData,
    folder: &RunFolder,
    epoch: usize,
    trained: EpochTraining,
    verbose: bool,
) -> Result<Evaluation> {
    let options = EvalOptions::for_run(&cfg.run);
    let splits = &data.splits;
    let val = if splits.val.is_empty() { None } else { Some(evaluate(&mut state.net, &splits.val, &data.norm, options)?) };
    let test = evaluate(&mut state.net, &splits.test, &data.norm, options)?;
    let n = splits.train.len();
    let m = EpochMetrics {
        epoch: epoch + 1,
        train_loss: (trained.loss_sum / n as f64) as f32,
        train_accuracy: trained.correct as f32 / n as f32,
        val_loss: val.as_ref().map_or(f32::NAN, |v| v.loss),
        val_accuracy: val.as_ref().map_or(f32::NAN, |v| v.accuracy),
        test_loss: test.loss,
        test_accuracy: test.accuracy,
        lr: trained.lr,
        seconds: trained.seconds,
        images_per_second: n as f32 / trained.seconds,
    };
    if verbose {
        // Without a validation split, no "val NaN%".
        let val_text = if val.is_some() { format!("  val {:.2}% (loss {:.4})", 100.0 * m.val_accuracy, m.val_loss) } else { String::new() };
        eprintln!(
            "epoch {}/{}: loss {:.4}  train {:.2}%{val_text}  test {:.2}%  {:.1} s ({:.0} images/s)",
            m.epoch,
            cfg.run.train.epochs,
            m.train_loss,
            100.0 * m.train_accuracy,
            100.0 * m.test_accuracy,
            m.seconds,
            m.images_per_second
        );
    }
    // Validation picks the best model; without a validation set, the test set does.
    let score = if val.is_some() { m.val_accuracy } else { m.test_accuracy };
    state.history.push(m);
    let improved = score > state.best;
    if improved {
        state.best = score;
    }
    let meta = CheckpointMeta {
        class_names: splits.class_names.clone(),
        normalization: data.norm.clone(),
        epoch: epoch + 1,
        optimizer_step: state.optimizer.steps_taken(),
        seed: state.seed,
        best_val_accuracy: state.best,
    };
    // Order matters for a crash between two writes: best before last (a resumed run redoes
    // the epoch and rewrites best), metrics.csv last (resume rewrites it from the
    // checkpoint's history). Each write is atomic.
    if improved {
        save_checkpoint(&folder.best, &state.net, &cfg.run, None, &meta)?;
    }
    save_checkpoint_with_history(&folder.last, &state.net, &cfg.run, Some(&state.optimizer), &meta, &state.history)?;
    write_metrics(&folder.metrics, &state.history)?;
    Ok(test)
}

impl RunFolder {
    /// Creates the run folder (with its parents) and removes temporary files that a killed run
    /// left behind; a folder that cannot be created is reported with its path.
    fn create(dir: &Path) -> Result<RunFolder> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::data(dir, "cannot use as the run folder: it is a file, not a folder"));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::data(dir, format!("cannot create the run folder: {e}")))?;
        remove_stale_temp_files(dir);
        Ok(RunFolder {
            dir: dir.to_path_buf(),
            last: dir.join("last.safetensors"),
            best: dir.join("best.safetensors"),
            metrics: dir.join("metrics.csv"),
        })
    }
}

/// last.safetensors for `train --resume`, checked against the model being trained.
fn resume_checkpoint(last_path: &Path, cfg: &Config) -> Result<Checkpoint> {
    if !last_path.exists() {
        return Err(Error::Checkpoint {
            path: last_path.to_path_buf(),
            detail: "cannot resume: the file does not exist (no epoch of this run has finished yet?); \
                     train without --resume to start the run afresh"
                .into(),
        });
    }
    let ck = Checkpoint::load(last_path)?;
    ck.check_compatible(&cfg.model)?;
    Ok(ck)
}

/// What a divergence message says about the last checkpoint.
fn last_good(last_path: &Path) -> String {
    if last_path.is_file() {
        format!("the last good checkpoint, {}, is intact", last_path.display())
    } else {
        format!("no checkpoint was written yet ({} does not exist)", last_path.display())
    }
}

fn progress_bar(visible: bool, steps: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    let style = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
