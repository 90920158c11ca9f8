//! The training loop: shuffled batches each epoch, forward / loss / backward / optimiser step,
//! then validation and test evaluation, metrics.csv, last.safetensors and best.safetensors in
//! the run folder. `resume` continues from last.safetensors with the optimiser state; because
//! each epoch's shuffle is derived from (seed, epoch), nothing else is needed to continue
//! bit-identically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{save_checkpoint, save_checkpoint_with_history, Checkpoint, CheckpointMeta, FORMAT};
use super::datasets::{load_splits, Splits};
use super::evaluate::{evaluate, Evaluation};
use super::metrics::{read_metrics, write_metrics, EpochMetrics};

use crate::data::augment::make_augmented_batch;
use crate::data::{batch_ranges, epoch_order, make_batch, Normalization};
use crate::error::{Error, Result};
use crate::fs::{remove_stale_temp_files, write_atomically};
use crate::model::{ModelConfig, Network};
use crate::optim::Optimizer;

pub struct TrainOptions {
    pub config: ModelConfig,
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
    pub final_test: Option<Evaluation>,
    pub class_names: Vec<String>,
}

/// Called after every epoch with the metrics so far (curves, logs).
pub type EpochHook<'a> = &'a mut dyn FnMut(&[EpochMetrics]) -> Result<()>;

pub fn train(opts: &TrainOptions, on_epoch: EpochHook) -> Result<TrainReport> {
    let cfg = &opts.config;
    let mut net = Network::build(cfg, cfg.train.seed)?;
    let (last_path, best_path, csv_path) =
        (opts.out_dir.join("last.safetensors"), opts.out_dir.join("best.safetensors"), opts.out_dir.join("metrics.csv"));
    // The run folder comes first, so that an unwritable one is reported before the data is
    // read; on resume the checkpoint is read and checked before anything in it is written.
    create_run_folder(&opts.out_dir)?;
    let mut optimizer = Optimizer::new(cfg.optimizer.clone())?;
    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut best = f32::NEG_INFINITY;
    let mut seed = cfg.train.seed;

    if opts.resume {
        let ck = resume_checkpoint(&last_path, cfg)?;
        let ck_err = |e: Error| match e {
            e @ Error::Checkpoint { .. } => e,
            other => Error::Checkpoint { path: last_path.clone(), detail: other.to_string() },
        };
        ck.load_weights_into(&mut net).map_err(ck_err)?;
        let sizes = net.trainable_sizes();
        optimizer.load_state(ck.meta.optimizer_step, ck.optimizer_state(), &sizes).map_err(ck_err)?;
        best = ck.meta.best_val_accuracy;
        // The shuffles of the remaining epochs come from the run's own seed.
        if ck.meta.seed != seed {
            if opts.verbose {
                eprintln!("note: resuming with the run's seed {} (the config says {seed})", ck.meta.seed);
            }
            seed = ck.meta.seed;
        }
        // The checkpoint carries the metrics of its epochs; older ones did not, and then
        // metrics.csv (written after the checkpoint) has them, and maybe one epoch more.
        history = if ck.history.len() == ck.meta.epoch {
            ck.history
        } else {
            read_metrics(&csv_path)?.into_iter().filter(|m| m.epoch <= ck.meta.epoch).collect()
        };
        if history.len() != ck.meta.epoch {
            return Err(Error::data(&csv_path, format!("has {} epochs but the checkpoint has {}", history.len(), ck.meta.epoch)));
        }
    }
    // Only now, with the checkpoint (if any) read and checked, is anything in the folder written.
    write_atomically(&opts.out_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    if opts.resume {
        // A kill between writing the checkpoint and metrics.csv leaves the file one epoch
        // behind; rewrite it from the checkpoint so the two agree again.
        write_metrics(&csv_path, &history)?;
        if opts.verbose {
            eprintln!("resuming {} after epoch {}", opts.out_dir.display(), history.len());
        }
    }
    let splits = load_splits(cfg, opts.data_dir.as_deref())?;
    check_classes(&net, &splits, cfg)?;
    let norm = Normalization::from_dataset(&splits.train);

    let n = splits.train.len();
    let batch = cfg.train.batch_size;
    let steps_per_epoch = n.div_ceil(batch);
    let base_lr = cfg.optimizer.lr();
    if opts.verbose {
        eprintln!(
            "training {} on {} examples ({} validation, {} test), {} epochs of {steps_per_epoch} steps, {} threads",
            cfg.name,
            n,
            splits.val.len(),
            splits.test.len(),
            cfg.train.epochs,
            rayon::current_num_threads()
        );
    }
    for epoch in history.len()..cfg.train.epochs {
        let order = epoch_order(n, seed, epoch);
        let bar = progress_bar(opts.verbose, steps_per_epoch as u64, epoch + 1, cfg.train.epochs);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut lr) = (0.0f64, 0usize, base_lr);
        for (step, range) in batch_ranges(n, batch).enumerate() {
            let global_step = epoch * steps_per_epoch + step;
            // Augmentation and dropout draw from generators seeded by (seed, step): the same
            // on every run and after a resume.
            let (x, labels) = if cfg.augment.is_active() {
                let mut rng = crate::seeds::augment_rng(seed, global_step as u64);
                make_augmented_batch(&splits.train, &order[range], &norm, &cfg.augment, &mut rng)
            } else {
                make_batch(&splits.train, &order[range], &norm)
            };
            net.set_step_seed(seed, global_step as u64);
            let stats = net.compute_gradients(&x, &labels).map_err(|e| match e {
                Error::Diverged(what) => Error::Diverged(format!(
                    "training diverged at epoch {} step {} (global step {global_step}): {what}; {}",
                    epoch + 1,
                    step + 1,
                    last_good(&last_path)
                )),
                other => other,
            })?;
            lr = cfg.schedule.lr_at(base_lr, global_step, steps_per_epoch, cfg.train.epochs);
            net.apply_gradients(&mut optimizer, lr)?;
            loss_sum += stats.loss as f64 * labels.len() as f64;
            correct += stats.correct;
            let seen = ((step + 1) * batch).min(n);
            bar.set_message(format!("loss {:.4} acc {:.2}%", loss_sum / seen as f64, 100.0 * correct as f64 / seen as f64));
            bar.inc(1);
        }
        let seconds = start.elapsed().as_secs_f32();
        bar.finish_and_clear();
        // The last step's update is not checked by a forward pass before the checkpoint is
        // written: check the weights themselves, so a checkpoint never holds NaN weights.
        if let Some((name, _)) = net.param_names().iter().zip(net.params()).find(|(_, p)| !p.value.is_finite()) {
            return Err(Error::Diverged(format!(
                "training diverged at epoch {} step {steps_per_epoch} (global step {}): parameter {name} is not finite \
                 (NaN or infinity) after the update; {}",
                epoch + 1,
                (epoch + 1) * steps_per_epoch - 1,
                last_good(&last_path)
            )));
        }
        let val = if splits.val.is_empty() { None } else { Some(evaluate(&mut net, &splits.val, &norm, 256)?) };
        let test = evaluate(&mut net, &splits.test, &norm, 256)?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: (loss_sum / n as f64) as f32,
            train_accuracy: correct as f32 / n as f32,
            val_loss: val.as_ref().map_or(f32::NAN, |v| v.loss),
            val_accuracy: val.as_ref().map_or(f32::NAN, |v| v.accuracy),
            test_loss: test.loss,
            test_accuracy: test.accuracy,
            lr,
            seconds,
            images_per_second: n as f32 / seconds,
        };
        if opts.verbose {
            eprintln!(
                "epoch {}/{}: loss {:.4}  train {:.2}%  val {:.2}% (loss {:.4})  test {:.2}%  {:.1} s ({:.0} images/s)",
                m.epoch,
                cfg.train.epochs,
                m.train_loss,
                100.0 * m.train_accuracy,
                100.0 * m.val_accuracy,
                m.val_loss,
                100.0 * m.test_accuracy,
                m.seconds,
                m.images_per_second
            );
        }
        history.push(m.clone());
        // Validation picks the best model; without a validation set, the test set does.
        let score = if val.is_some() { m.val_accuracy } else { m.test_accuracy };
        let improved = score > best;
        if improved {
            best = score;
        }
        let meta = CheckpointMeta {
            format: FORMAT.into(),
            class_names: splits.class_names.clone(),
            normalization: norm.clone(),
            epoch: epoch + 1,
            optimizer_step: optimizer.steps_taken(),
            seed,
            best_val_accuracy: best,
        };
        // Order matters for a crash between two writes: best before last (a resumed run redoes
        // the epoch and rewrites best), metrics.csv last (resume rewrites it from the
        // checkpoint's history). Each write is atomic.
        if improved {
            save_checkpoint(&best_path, &net, None, &meta)?;
        }
        save_checkpoint_with_history(&last_path, &net, Some(&optimizer), &meta, &history)?;
        write_metrics(&csv_path, &history)?;
        on_epoch(&history)?;
    }
    let final_test = match history.last() {
        Some(_) => Some(evaluate(&mut net, &splits.test, &norm, 256)?),
        None => None,
    };
    Ok(TrainReport { epochs: history, final_test, class_names: splits.class_names })
}

fn check_classes(net: &Network, splits: &Splits, cfg: &ModelConfig) -> Result<()> {
    let k = splits.class_names.len();
    if net.num_classes() != k {
        return Err(Error::Config {
            file: cfg.name.clone(),
            detail: format!("the last layer outputs {} classes but the data set has {k}", net.num_classes()),
        });
    }
    if splits.train.is_empty() {
        return Err(Error::Config { file: cfg.name.clone(), detail: "no training examples left after the validation split".into() });
    }
    Ok(())
}

/// Creates the run folder (with its parents) and removes temporary files that a killed run
/// left behind; a folder that cannot be created is reported with its path.
fn create_run_folder(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::data(dir, "cannot use as the run folder: it is a file, not a folder"));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::data(dir, format!("cannot create the run folder: {e}")))?;
    remove_stale_temp_files(dir);
    Ok(())
}

/// last.safetensors for `train --resume`, checked against the config being trained.
fn resume_checkpoint(last_path: &Path, cfg: &ModelConfig) -> Result<Checkpoint> {
    if !last_path.exists() {
        return Err(Error::Checkpoint {
            path: last_path.to_path_buf(),
            detail: "cannot resume: the file does not exist (no epoch of this run has finished yet?); \
                     train without --resume to start the run afresh"
                .into(),
        });
    }
    let ck = Checkpoint::load(last_path)?;
    ck.check_compatible(cfg)?;
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
