//! The training loop: shuffled batches each epoch, forward / loss / backward / optimiser step,
//! then validation and test evaluation, metrics.csv, last.safetensors and best.safetensors in
//! the run folder. `resume` continues from last.safetensors with the optimiser state; because
//! each epoch's shuffle and each step's augmentation and dropout are derived from (seed,
//! position) (see `seeds`), nothing else is needed to continue bit-identically, from the end of
//! an epoch or from any step inside one.
//!
//! In steps: [`train`] locks the run folder and prepares the state (fresh, or resumed from the
//! last checkpoint), then for each epoch runs `train_epoch` and `end_epoch` (evaluation, best
//! and last checkpoints, metrics). Inside an epoch, last.safetensors is also written when
//! `checkpoint_every` says so, and when a stop is requested (Ctrl-C): the run then ends after
//! the step in progress, with its position saved.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{save_checkpoint, save_run_checkpoint, Checkpoint, CheckpointMeta, EpochProgress, RunRecord};
use super::checkpoint_every::CheckpointEvery;
use super::datasets::{load_splits, Splits};
use super::distributed::{check_ranks_agree, config_hash, data_hash, weights_hash};
use super::evaluate::{evaluate, EvalOptions, Evaluation};
use super::metrics::{read_metrics, write_metrics, EpochMetrics};
use super::run::TrainConfig;
use super::run_folder::{ExistingRun, RunFolder};
use super::step_handshake::StepHandshake;
use crate::config::Config;
use crate::data::augment::{make_augmented_batch, BatchAt};
use crate::data::{batch_ranges, epoch_order, make_batch, Normalization};
use crate::dist::{share_of, Group};
use crate::error::{Error, Result};
use crate::fs::write_atomically;
use crate::model::whitening::{whiten_first_layer, WHITENING_IMAGES};
use crate::model::{Loss, Network};
use crate::optim::groups::check_groups_match;
use crate::optim::{Lookahead, Optimizer};

pub struct TrainOptions {
    pub config: Config,
    /// Overrides the config's data path.
    pub data_dir: Option<PathBuf>,
    /// The run folder (metrics.csv, config.toml, last/best.safetensors).
    pub out_dir: PathBuf,
    /// What to do with an earlier run in the folder: resume it, replace it, or refuse.
    pub existing: ExistingRun,
    /// Show a progress bar and per-epoch lines on stderr.
    pub verbose: bool,
    /// How often last.safetensors is written inside an epoch.
    pub checkpoint_every: CheckpointEvery,
    /// Set to true (by a signal handler, another thread, a binding's KeyboardInterrupt) to end
    /// the run after the step in progress, with last.safetensors holding its exact position;
    /// [`TrainReport::stopped`] then says where.
    pub stop: Option<Arc<AtomicBool>>,
    /// A fresh run starts from this checkpoint's weights instead of the seed's (fine-tuning an
    /// imported or earlier model): every parameter of the config's model must be in it, under
    /// its name and with its shape. The optimiser starts afresh. Not used when resuming.
    pub init_from: Option<PathBuf>,
    /// The ranks of a distributed run (`convnet train --distributed` under mpirun), this
    /// process one of them: each computes its share of every batch, and the run equals, bit for
    /// bit, one process training alone (`crate::dist`). Rank 0 writes the run folder; the others
    /// only read it (to resume).
    pub group: Option<Arc<Group>>,
}

impl TrainOptions {
    /// A fresh run of `config` into `out_dir`: an earlier run there is refused, quiet,
    /// checkpoints inside epochs at the default interval, no stop flag.
    pub fn new(config: Config, out_dir: impl Into<PathBuf>) -> TrainOptions {
        TrainOptions {
            config,
            data_dir: None,
            out_dir: out_dir.into(),
            existing: ExistingRun::Refuse,
            verbose: false,
            checkpoint_every: CheckpointEvery::default(),
            stop: None,
            init_from: None,
            group: None,
        }
    }
}

pub struct TrainReport {
    pub epochs: Vec<EpochMetrics>,
    /// The test set's evaluation by the final weights (the last epoch's own); none for a run
    /// that stopped before its end.
    pub final_test: Option<Evaluation>,
    pub class_names: Vec<String>,
    /// Where the run stopped, when a stop was requested before its last epoch ended.
    pub stopped: Option<StoppedAt>,
    /// The compute and time of the run, for a run that ended (not stopped).
    pub summary: Option<RunSummary>,
}

/// The cost of a run, printed at its end and saved as summary.json in the run folder, so that
/// accuracy per compute can be compared across machines.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunSummary {
    /// Forward FLOPs of one example (multiply-adds x 2 of the convolutions and dense layers).
    pub forward_flops_per_example: u64,
    /// Training compute: 3 x forward FLOPs (forward, dX, dW) x examples trained on.
    pub train_flops: f64,
    /// Evaluation compute: forward FLOPs x examples evaluated x views (every epoch's
    /// validation and test, and the final test evaluation).
    pub eval_flops: f64,
    /// Seconds spent in training steps, summed over the epochs (metrics.csv's `seconds`).
    pub train_seconds: f64,
    /// Seconds from the start of this process's training to its end (evaluations and
    /// checkpoints included); a resumed run counts only its own part.
    pub wall_seconds: f64,
    pub threads: usize,
    pub epochs: usize,
    pub final_test_accuracy: f32,
    pub final_test_loss: f32,
    /// Views per test image in the final evaluation (test-time augmentation).
    pub final_test_views: usize,
    /// The best validation accuracy (the test accuracy when there is no validation split).
    pub best_val_accuracy: f32,
}

/// The position a stopped run saved in last.safetensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoppedAt {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Steps done in the epoch after them (0: at the end of an epoch).
    pub steps_done: usize,
    pub steps_per_epoch: usize,
    pub epochs: usize,
}

impl std::fmt::Display for StoppedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.epochs_done, self.steps_done) {
            (0, 0) => write!(f, "stopped before the first step"),
            (done, 0) => write!(f, "stopped after epoch {done} of {}", self.epochs),
            (done, step) => write!(f, "stopped at epoch {} of {}, step {step} of {}", done + 1, self.epochs, self.steps_per_epoch),
        }
    }
}

/// Called after every epoch with the metrics so far (curves, logs).
pub type EpochHook<'a> = &'a mut dyn FnMut(&[EpochMetrics]) -> Result<()>;

/// The run's compute and time, in the run folder.
pub const SUMMARY_FILE: &str = "summary.json";

/// The best score before any epoch: below every accuracy (and finite, unlike -inf, so that a
/// checkpoint written inside the first epoch can say it in JSON).
const NO_BEST_YET: f32 = -1.0;

/// Everything a run carries from epoch to epoch; what last.safetensors saves.
struct TrainState {
    net: Network,
    optimizer: Optimizer,
    history: Vec<EpochMetrics>,
    /// The best validation accuracy so far (the test accuracy without a validation set).
    best: f32,
    /// The input normalisation the weights were trained with, when it is not the training
    /// set's own: that of the `init_from` checkpoint, kept by the run's checkpoints and so
    /// by a resumed run.
    norm: Option<Normalization>,
    /// The run's own seed (a resumed run keeps it, whatever the config now says).
    seed: u64,
    /// The lookahead average, when the run has one and it has started.
    lookahead: Lookahead,
}

/// The data of a run, loaded once.
struct RunData {
    splits: Splits,
    norm: Normalization,
}

/// What stays the same through a run: its settings, data and folder.
#[derive(Clone, Copy)]
struct Run<'a> {
    cfg: &'a Config,
    data: &'a RunData,
    folder: &'a RunFolder,
}

/// A run's position: epochs completed, and steps done in the next one.
type Position = (usize, usize);

/// When last.safetensors is written inside an epoch, and what it holds.
struct Checkpointing {
    every: CheckpointEvery,
    last_write: Instant,
    /// The position last.safetensors holds, if it holds this run's.
    saved: Option<Position>,
    stop: Option<Arc<AtomicBool>>,
    handshake: StepHandshake,
    /// A distributed run's ranks, which stop together.
    group: Option<Arc<Group>>,
}

impl Checkpointing {
    /// Whether to stop here: in a distributed run, whether any rank was asked to (every rank
    /// asks at the same points, so all stop after the same step).
    fn stop_requested(&self) -> bool {
        let mine = self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        match &self.group {
            Some(g) => g.sum_count(u64::from(mine)) > 0,
            None => mine,
        }
    }
}

/// How an epoch's training steps ended.
enum EpochOutcome {
    /// All of them done: the epoch's sums, to be evaluated and saved.
    Trained(EpochProgress),
    /// A stop was requested; last.safetensors holds this position.
    Stopped(Position),
}

pub fn train(opts: &TrainOptions, on_epoch: EpochHook) -> Result<TrainReport> {
    let cfg = &opts.config;
    let resuming = opts.existing == ExistingRun::Resume;
    // The run folder comes first, so that an unwritable one (or one in use) is reported before
    // the data is read; on resume the checkpoint is read and checked before anything in it is
    // written.
    if let Some(init) = opts.init_from.as_deref().filter(|_| opts.existing == ExistingRun::Overwrite) {
        // --overwrite deletes the folder's checkpoints: not the one the run starts from.
        let dir_of = |p: &Path| p.parent().and_then(|d| d.canonicalize().ok());
        if dir_of(init).is_some_and(|d| opts.out_dir.canonicalize().is_ok_and(|out| out == d)) {
            return Err(Error::Config {
                file: cfg.model.name.clone(),
                detail: format!(
                    "--init-from {} lies in the run folder that --overwrite would empty: copy it elsewhere first",
                    init.display()
                ),
            });
        }
    }
    let began = Instant::now();
    let group = opts.group.as_ref();
    let folder = match group {
        Some(g) if g.rank() > 0 => RunFolder::follow(&opts.out_dir),
        _ => RunFolder::open(&opts.out_dir, opts.existing, opts.verbose)?,
    };
    let (mut state, mut progress) =
        if resuming { resume(cfg, &folder, opts.verbose)? } else { (start(cfg, opts.init_from.as_deref())?, None) };
    let trainable = state.net.trainable_sizes();
    check_groups_match(&cfg.run.param_groups, trainable.iter().map(|(name, _)| name.as_str()))
        .map_err(|e| Error::Config { file: cfg.model.name.clone(), detail: e.to_string() })?;
    // Only now, with the checkpoint (if any) read and checked, is anything in the folder written.
    if folder.writes {
        write_atomically(&folder.dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    }
    if resuming && folder.writes {
        // A kill between writing the checkpoint and metrics.csv leaves the file one epoch
        // behind; rewrite it from the checkpoint so the two agree again.
        write_metrics(&folder.metrics, &state.history)?;
        if opts.verbose {
            let at = match &progress {
                Some(p) => format!("at epoch {}, step {} of {}", state.history.len() + 1, p.steps_done, p.steps_per_epoch),
                None => format!("after epoch {}", state.history.len()),
            };
            eprintln!("resuming {} {at}", folder.dir.display());
        }
    }
    let data = load_data(cfg, &state.net, opts.data_dir.as_deref(), state.norm.take())?;
    if !resuming && opts.init_from.is_none() {
        let first: Vec<usize> = (0..data.splits.train.len().min(WHITENING_IMAGES)).collect();
        let (images, _) = make_batch(&data.splits.train, &first, &data.norm);
        if whiten_first_layer(&mut state.net, &images)? && opts.verbose {
            eprintln!("whitening layer computed from the first {} training images", first.len());
        }
    }
    let (n, train) = (data.splits.train.len(), &cfg.run.train);
    let steps_per_epoch = n.div_ceil(train.batch_size);
    if let Some(p) = &progress {
        check_resumable_inside(p, train, n, &folder.last, state.history.len())?;
    }
    if let Some(g) = group {
        let checks = [
            ("config", config_hash(cfg)),
            ("training set", data_hash(&data.splits.train)),
            ("set of starting weights", weights_hash(&state.net, state.optimizer.steps_taken())),
        ];
        let hosts = check_ranks_agree(g, &checks, n, train.batch_size, &cfg.model.name)?;
        if opts.verbose {
            eprintln!("distributed: {} ranks (on {}) agree on the config, the data and the weights", g.size(), hosts.join(", "));
        }
    }
    // Only with the data read and checked is an earlier run's work deleted.
    if opts.existing == ExistingRun::Overwrite && folder.writes {
        folder.remove_earlier_run()?;
    }
    if opts.verbose {
        eprintln!(
            "training {} on {} examples ({} validation, {} test), {} epochs of {} steps, {} threads{}",
            cfg.model.name,
            n,
            data.splits.val.len(),
            data.splits.test.len(),
            train.epochs,
            steps_per_epoch,
            rayon::current_num_threads(),
            if train.precision.is_bf16() { format!(", {}", train.precision.describe()) } else { String::new() }
        );
    }
    crate::ops::precision::announce(train.precision);
    let mut checkpointing = Checkpointing {
        every: opts.checkpoint_every,
        last_write: Instant::now(),
        saved: resuming.then(|| (state.history.len(), progress.as_ref().map_or(0, |p| p.steps_done))),
        stop: opts.stop.clone(),
        handshake: StepHandshake::from_env(),
        group: opts.group.clone(),
    };
    let run = Run { cfg, data: &data, folder: &folder };
    let mut final_test = None;
    for epoch in state.history.len()..cfg.run.train.epochs {
        match train_epoch(&mut state, &run, epoch, progress.take(), &mut checkpointing, opts.verbose)? {
            EpochOutcome::Trained(trained) => {
                final_test = Some(end_epoch(&mut state, &run, epoch, trained, opts.verbose)?);
                checkpointing.saved = Some((epoch + 1, 0));
                checkpointing.last_write = Instant::now();
            }
            EpochOutcome::Stopped((epochs_done, steps_done)) => {
                let stopped = StoppedAt { epochs_done, steps_done, steps_per_epoch, epochs: cfg.run.train.epochs };
                return Ok(TrainReport {
                    epochs: state.history,
                    final_test: None,
                    class_names: data.splits.class_names,
                    stopped: Some(stopped),
                    summary: None,
                });
            }
        }
        if folder.writes {
            on_epoch(&state.history)?;
        }
    }
    let final_options = EvalOptions::for_run(&cfg.run);
    if (final_test.is_none() || final_options != EvalOptions::per_epoch(&cfg.run)) && !state.history.is_empty() {
        // A resumed run that had already done all its epochs (nothing evaluated here yet), or
        // test-time augmentation kept for the end.
        final_test = Some(evaluate(&mut state.net, &data.splits.test, &data.norm, final_options)?);
    }
    let summary = match &final_test {
        Some(test) => {
            let summary = run_summary(&state, &run, test, began.elapsed().as_secs_f64());
            if folder.writes {
                write_summary(&folder, &summary, opts.verbose)?;
            }
            Some(summary)
        }
        None => None,
    };
    Ok(TrainReport { epochs: state.history, final_test, class_names: data.splits.class_names, stopped: None, summary })
}

/// The compute and time of a run that has done all its epochs.
fn run_summary(state: &TrainState, run: &Run, test: &Evaluation, wall_seconds: f64) -> RunSummary {
    let Run { cfg, data, .. } = *run;
    let forward = state.net.flops();
    let epochs = state.history.len();
    let splits = &data.splits;
    let per_epoch = EvalOptions::per_epoch(&cfg.run);
    let final_options = EvalOptions::for_run(&cfg.run);
    let evaluated = epochs as f64 * (splits.val.len() + splits.test.len()) as f64 * per_epoch.views() as f64
        + if final_options != per_epoch { (splits.test.len() * final_options.views()) as f64 } else { 0.0 };
    RunSummary {
        forward_flops_per_example: forward,
        train_flops: 3.0 * forward as f64 * splits.train.len() as f64 * epochs as f64,
        eval_flops: forward as f64 * evaluated,
        train_seconds: state.history.iter().map(|m| f64::from(m.seconds)).sum(),
        wall_seconds,
        threads: rayon::current_num_threads(),
        epochs,
        final_test_accuracy: test.accuracy,
        final_test_loss: test.loss,
        final_test_views: final_options.views(),
        best_val_accuracy: state.best,
    }
}

/// summary.json in the run folder, and the same figures on stderr.
fn write_summary(folder: &RunFolder, summary: &RunSummary, verbose: bool) -> Result<()> {
    let json = serde_json::to_string_pretty(summary).map_err(|e| Error::invalid("summary", e.to_string()))?;
    write_atomically(&folder.dir.join(SUMMARY_FILE), format!("{json}\n").as_bytes())?;
    if verbose {
        eprintln!(
            "compute: {:.3e} FLOPs training + {:.3e} evaluation; {:.1} s in training steps, {:.1} s wall ({} threads)",
            summary.train_flops, summary.eval_flops, summary.train_seconds, summary.wall_seconds, summary.threads
        );
    }
    Ok(())
}

/// A new run: the network with weights from the run's seed (or from `init_from`), an
/// optimiser with no state.
fn start(cfg: &Config, init_from: Option<&Path>) -> Result<TrainState> {
    let mut net = Network::build(&cfg.model, cfg.run.train.seed)?;
    net.set_precision(cfg.run.train.precision);
    let mut norm = None;
    if let Some(path) = init_from {
        let ck = Checkpoint::load(path)?;
        ck.load_weights_into(&mut net)?;
        norm = Some(ck.meta.normalization);
    }
    let optimizer = Optimizer::new(cfg.run.optimizer.clone())?;
    let lookahead = Lookahead::default();
    Ok(TrainState { net, optimizer, history: Vec::new(), best: NO_BEST_YET, seed: cfg.run.train.seed, norm, lookahead })
}

/// The state saved in last.safetensors, checked against the config being trained, and how far
/// into the next epoch it was written (for a checkpoint written inside an epoch).
fn resume(cfg: &Config, folder: &RunFolder, verbose: bool) -> Result<(TrainState, Option<EpochProgress>)> {
    let ck = resume_checkpoint(&folder.last, cfg)?;
    let ck_err = |e: Error| match e {
        e @ Error::Checkpoint { .. } => e,
        other => Error::Checkpoint { path: folder.last.clone(), detail: other.to_string() },
    };
    let mut state = start(cfg, None)?;
    ck.load_weights_into(&mut state.net).map_err(ck_err)?;
    state.norm = Some(ck.meta.normalization.clone());
    let sizes = state.net.trainable_sizes();
    state.optimizer.load_state(ck.meta.optimizer_step, ck.optimizer_state(), &sizes).map_err(ck_err)?;
    state.lookahead.load_state(&state.net.params(), |name| ck.tensor(name)).map_err(ck_err)?;
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
    Ok((state, ck.progress))
}

/// A checkpoint written inside an epoch resumes only into that epoch of the same run: the same
/// batch size over the same training examples (the shuffle depends on their number), and an
/// epoch count that still includes it.
fn check_resumable_inside(p: &EpochProgress, train: &TrainConfig, examples: usize, last: &Path, epochs_done: usize) -> Result<()> {
    let refuse = |detail: String| Err(Error::Checkpoint { path: last.to_path_buf(), detail });
    let written = format!(
        "was written inside epoch {} (step {} of {}, batch size {}, {} training examples)",
        epochs_done + 1,
        p.steps_done,
        p.steps_per_epoch,
        p.batch_size,
        p.train_examples
    );
    if p.batch_size != train.batch_size || p.train_examples != examples {
        return refuse(format!(
            "{written}; resuming inside an epoch needs the same steps over the same examples, but the run now has batch \
             size {} and {examples} training examples (pass --batch-size {}, the same data and the same validation split)",
            train.batch_size, p.batch_size
        ));
    }
    if train.epochs <= epochs_done {
        return refuse(format!(
            "{written}, but the run now has {} epochs: pass --epochs {} or more to finish it",
            train.epochs,
            epochs_done + 1
        ));
    }
    Ok(())
}

/// The splits, checked against the network, and the normalisation: `norm` where the weights
/// come with one (checked against the images' channels), else the training set's.
fn load_data(cfg: &Config, net: &Network, data_dir: Option<&Path>, norm: Option<Normalization>) -> Result<RunData> {
    let splits = load_splits(cfg, data_dir)?;
    let k = splits.class_names.len();
    let config_error = |detail: String| Error::Config { file: cfg.model.name.clone(), detail };
    if net.num_classes() != k {
        return Err(config_error(format!("the last layer outputs {} classes but the data set has {k}", net.num_classes())));
    }
    if splits.train.is_empty() {
        return Err(config_error("no training examples left after the validation split".into()));
    }
    let norm = match norm {
        Some(n) => {
            n.validate(splits.train.channels)?;
            n
        }
        None => Normalization::from_dataset(&splits.train),
    };
    Ok(RunData { splits, norm })
}

/// One epoch of training steps over the shuffled training set, from the start or from where a
/// checkpoint written inside it left off. Ends early, after the step in progress, when a stop
/// is requested, with the position saved in last.safetensors.
fn train_epoch(
    state: &mut TrainState,
    run: &Run,
    epoch: usize,
    resumed: Option<EpochProgress>,
    checkpointing: &mut Checkpointing,
    verbose: bool,
) -> Result<EpochOutcome> {
    let Run { cfg, data, folder } = *run;
    let train = &data.splits.train;
    let (n, batch, epochs) = (train.len(), cfg.run.train.batch_size, cfg.run.train.epochs);
    let steps_per_epoch = n.div_ceil(batch);
    let base_lr = cfg.run.optimizer.lr();
    let loss = Loss { label_smoothing: cfg.run.train.label_smoothing };
    let order = epoch_order(n, state.seed, epoch);
    let mut progress = resumed.unwrap_or(EpochProgress {
        steps_done: 0,
        steps_per_epoch,
        batch_size: batch,
        train_examples: n,
        loss_sum: 0.0,
        correct: 0,
        lr: base_lr,
        seconds: 0.0,
    });
    let bar = progress_bar(verbose, steps_per_epoch as u64, epoch + 1, epochs);
    bar.set_position(progress.steps_done as u64);
    let (start, seconds_before) = (Instant::now(), progress.seconds);
    // A stop that came while the data was read, or during the last epoch's evaluation.
    if checkpointing.stop_requested() {
        bar.finish_and_clear();
        return stop_here(state, run, epoch, &progress, checkpointing);
    }
    if cfg.run.train.lookahead.as_ref().is_some_and(|la| epoch + 1 >= la.from_epoch) {
        // The average starts as the weights at the start of its first epoch (no-op later on).
        state.lookahead.start(&state.net.params());
    }
    for (step, range) in batch_ranges(n, batch).enumerate().skip(progress.steps_done) {
        let global_step = epoch * steps_per_epoch + step;
        // Augmentation and dropout draw from generators seeded by (seed, step): the same on
        // every run and after a resume.
        let (x, labels) = if cfg.run.augment.is_active() {
            let mut rng = crate::seeds::augment_rng(state.seed, global_step as u64);
            let at = BatchAt { seed: state.seed, epoch };
            make_augmented_batch(train, &order[range], &data.norm, &cfg.run.augment, &mut rng, at)
        } else {
            make_batch(train, &order[range], &data.norm)
        };
        state.net.set_step_seed(state.seed, global_step as u64);
        let stats = match &checkpointing.group {
            // Each rank builds the whole batch (augmentation draws in image order) and
            // computes its share.
            Some(g) => {
                let share = share_of(labels.len(), g.rank(), g.size())?;
                let x_share = x.slice_batch(share.start, share.len());
                state.net.compute_gradients_shared(&x_share, &labels[share.clone()], loss, g, share.start)
            }
            None => state.net.compute_gradients(&x, &labels, loss),
        };
        let stats = stats.map_err(|e| match e {
            Error::Diverged(what) => Error::Diverged(format!(
                "training diverged at epoch {} step {} (global step {global_step}): {what}; {}",
                epoch + 1,
                step + 1,
                last_good(&folder.last)
            )),
            other => other,
        })?;
        progress.lr = cfg.run.schedule.lr_at(base_lr, global_step, steps_per_epoch, epochs);
        state.net.apply_gradients_grouped(&mut state.optimizer, progress.lr, &cfg.run.param_groups, epoch)?;
        if let Some(la) = &cfg.run.train.lookahead {
            let (done, total) = (global_step as u64 + 1, (epochs * steps_per_epoch) as u64);
            if done == total {
                // The end of training: the network takes the average.
                state.lookahead.update(&mut state.net.params_mut(), 1.0)?;
            } else if done % la.every as u64 == 0 {
                state.lookahead.update(&mut state.net.params_mut(), la.decay_at(done, total))?;
            }
        }
        progress.steps_done = step + 1;
        progress.loss_sum += stats.loss as f64 * labels.len() as f64;
        progress.correct += stats.correct;
        progress.seconds = seconds_before + start.elapsed().as_secs_f32();
        let seen = ((step + 1) * batch).min(n);
        bar.set_message(format!("loss {:.4} acc {:.2}%", progress.loss_sum / seen as f64, 100.0 * progress.correct as f64 / seen as f64));
        bar.inc(1);
        checkpointing.handshake.after_step(global_step);
        // Not after the epoch's last step: the end of the epoch writes one a moment later.
        if step + 1 < steps_per_epoch && checkpointing.every.is_due(global_step as u64, checkpointing.last_write.elapsed()) {
            save_inside_epoch(state, run, epoch, &progress, checkpointing)?;
        }
        // After the periodic checkpoint: a stop requested during its write needs no other.
        if checkpointing.stop_requested() {
            bar.finish_and_clear();
            return stop_here(state, run, epoch, &progress, checkpointing);
        }
    }
    bar.finish_and_clear();
    check_finite(state, folder, epoch, steps_per_epoch, steps_per_epoch)?;
    Ok(EpochOutcome::Trained(progress))
}

/// Ends the run at this position: last.safetensors is written unless it holds it already.
fn stop_here(
    state: &TrainState,
    run: &Run,
    epoch: usize,
    progress: &EpochProgress,
    checkpointing: &mut Checkpointing,
) -> Result<EpochOutcome> {
    let position = (epoch, progress.steps_done);
    if checkpointing.saved != Some(position) {
        save_inside_epoch(state, run, epoch, progress, checkpointing)?;
    }
    Ok(EpochOutcome::Stopped(position))
}

/// Writes last.safetensors at `progress` inside `epoch` (at its start when no step is done),
/// after checking that the weights are finite.
fn save_inside_epoch(
    state: &TrainState,
    run: &Run,
    epoch: usize,
    progress: &EpochProgress,
    checkpointing: &mut Checkpointing,
) -> Result<()> {
    check_finite(state, run.folder, epoch, progress.steps_done, progress.steps_per_epoch)?;
    let inside = (progress.steps_done > 0).then_some(progress);
    save_last(state, run, epoch, inside)?;
    checkpointing.saved = Some((epoch, progress.steps_done));
    checkpointing.last_write = Instant::now();
    Ok(())
}

/// The last step's update is not checked by a forward pass before a checkpoint is written:
/// check the weights themselves, so that a checkpoint never holds NaN weights. `steps_done`
/// counts the steps of epoch `epoch` (from 0) so far.
fn check_finite(state: &TrainState, folder: &RunFolder, epoch: usize, steps_done: usize, steps_per_epoch: usize) -> Result<()> {
    match state.net.params().into_iter().find(|p| !p.value.is_finite()) {
        None => Ok(()),
        Some(p) => Err(Error::Diverged(format!(
            "training diverged at epoch {} step {steps_done} (global step {}): parameter {} is not finite (NaN or infinity) \
             after the update; {}",
            epoch + 1,
            (epoch * steps_per_epoch + steps_done).saturating_sub(1),
            p.name,
            last_good(&folder.last)
        ))),
    }
}

/// last.safetensors: weights, optimiser state and the run's history after `epochs_done` epochs,
/// and `inside` the next one when written mid-epoch.
fn save_last(state: &TrainState, run: &Run, epochs_done: usize, inside: Option<&EpochProgress>) -> Result<()> {
    let Run { cfg, data, folder } = *run;
    if !folder.writes {
        return Ok(());
    }
    let meta = checkpoint_meta(state, data, epochs_done);
    let averaged = state.lookahead.state(&state.net.params());
    let record = RunRecord { history: &state.history, progress: inside, averaged: &averaged };
    save_run_checkpoint(&folder.last, &state.net, &cfg.run, Some(&state.optimizer), &meta, record)
}

fn checkpoint_meta(state: &TrainState, data: &RunData, epochs_done: usize) -> CheckpointMeta {
    CheckpointMeta {
        class_names: data.splits.class_names.clone(),
        normalization: data.norm.clone(),
        epoch: epochs_done,
        optimizer_step: state.optimizer.steps_taken(),
        seed: state.seed,
        best_val_accuracy: state.best,
    }
}

/// The end of an epoch: validation and test evaluation, the epoch's metrics, best.safetensors
/// if validation improved, last.safetensors and metrics.csv. Returns the test evaluation.
fn end_epoch(state: &mut TrainState, run: &Run, epoch: usize, trained: EpochProgress, verbose: bool) -> Result<Evaluation> {
    let Run { cfg, data, folder } = *run;
    let options = EvalOptions::per_epoch(&cfg.run);
    let splits = &data.splits;
    // Evaluated (and saved as best) with the lookahead average, if any; swapped back after.
    state.lookahead.swap(&mut state.net.params_mut())?;
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
    // Order matters for a crash between two writes: best before last (a resumed run redoes
    // the epoch and rewrites best), metrics.csv last (resume rewrites it from the
    // checkpoint's history). Each write is atomic.
    if improved && folder.writes {
        save_checkpoint(&folder.best, &state.net, &cfg.run, None, &checkpoint_meta(state, data, epoch + 1))?;
    }
    state.lookahead.swap(&mut state.net.params_mut())?;
    save_last(state, run, epoch + 1, None)?;
    if folder.writes {
        write_metrics(&folder.metrics, &state.history)?;
    }
    Ok(test)
}

/// last.safetensors for `train --resume`, checked against the model being trained.
fn resume_checkpoint(last_path: &Path, cfg: &Config) -> Result<Checkpoint> {
    if !last_path.exists() {
        return Err(Error::Checkpoint {
            path: last_path.to_path_buf(),
            detail: "cannot resume: the file does not exist (the run was killed before its first checkpoint, or \
                     never started?); train with --overwrite instead of --resume to start it afresh"
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
