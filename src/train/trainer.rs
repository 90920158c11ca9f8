//! The training loop: shuffled batches each epoch, forward / loss / backward / optimiser step,
//! then validation and test evaluation, metrics.csv, last.safetensors and best.safetensors in
//! the run folder. `resume` continues from last.safetensors with the optimiser state; because
//! each epoch's shuffle is derived from (seed, epoch), nothing else is needed to continue
//! bit-identically.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{save_checkpoint, Checkpoint, CheckpointMeta, FORMAT};
use super::datasets::{load_splits, Splits};
use super::evaluate::{evaluate, Evaluation};
use super::metrics::{read_metrics, write_metrics, EpochMetrics};
use crate::data::{batch_ranges, epoch_order, make_batch, Normalization};
use crate::error::{Error, Result};
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
    let splits = load_splits(cfg, opts.data_dir.as_deref())?;
    check_classes(&net, &splits, cfg)?;
    prepare_out_dir(opts)?;
    let norm = Normalization::from_dataset(&splits.train);
    let mut optimizer = Optimizer::new(cfg.optimizer.clone())?;
    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut best = f32::NEG_INFINITY;
    let (last_path, best_path, csv_path) = (opts.out_dir.join("last.safetensors"), opts.out_dir.join("best.safetensors"), opts.out_dir.join("metrics.csv"));

    if opts.resume {
        let ck = Checkpoint::load(&last_path)?;
        ck.load_weights_into(&mut net)?;
        let sizes: Vec<(String, usize)> = net.param_names().iter().cloned().zip(net.params().iter().map(|p| p.value.len())).collect();
        optimizer.load_state(ck.meta.optimizer_step, ck.optimizer_state(), &sizes)?;
        best = ck.meta.best_val_accuracy;
        history = read_metrics(&csv_path)?.into_iter().filter(|m| m.epoch <= ck.meta.epoch).collect();
        if history.len() != ck.meta.epoch {
            return Err(Error::data(&csv_path, format!("has {} epochs but the checkpoint has {}", history.len(), ck.meta.epoch)));
        }
        if opts.verbose {
            eprintln!("resuming {} after epoch {}", opts.out_dir.display(), ck.meta.epoch);
        }
    }

    let n = splits.train.len();
    let batch = cfg.train.batch_size;
    let steps_per_epoch = n.div_ceil(batch);
    let base_lr = cfg.optimizer.lr();
    if opts.verbose {
        eprintln!(
            "training {} on {} examples ({} validation, {} test), {} epochs of {steps_per_epoch} steps, {} threads",
            cfg.name, n, splits.val.len(), splits.test.len(), cfg.train.epochs, rayon::current_num_threads()
        );
    }
    for epoch in history.len()..cfg.train.epochs {
        let order = epoch_order(n, cfg.train.seed, epoch);
        let bar = progress_bar(opts.verbose, steps_per_epoch as u64, epoch + 1, cfg.train.epochs);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut lr) = (0.0f64, 0usize, base_lr);
        for (step, range) in batch_ranges(n, batch).enumerate() {
            let (x, labels) = make_batch(&splits.train, &order[range], &norm);
            let global_step = epoch * steps_per_epoch + step;
            let stats = net.compute_gradients(&x, &labels).map_err(|e| match e {
                Error::Diverged(what) => Error::Diverged(format!(
                    "training diverged at epoch {} step {} (global step {global_step}): {what}; the last good checkpoint is {}",
                    epoch + 1,
                    step + 1,
                    last_path.display()
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
                m.epoch, cfg.train.epochs, m.train_loss, 100.0 * m.train_accuracy, 100.0 * m.val_accuracy, m.val_loss,
                100.0 * m.test_accuracy, m.seconds, m.images_per_second
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
            seed: cfg.train.seed,
            best_val_accuracy: best,
        };
        if improved {
            save_checkpoint(&best_path, &net, None, &meta)?;
        }
        save_checkpoint(&last_path, &net, Some(&optimizer), &meta)?;
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

/// Creates the run folder and writes config.toml, so an unwritable folder fails before training.
fn prepare_out_dir(opts: &TrainOptions) -> Result<()> {
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let path = opts.out_dir.join("config.toml");
    super::checkpoint::write_atomically(&path, opts.config.to_toml().as_bytes())
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
