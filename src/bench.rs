//! Throughput of a model on synthetic data, with the same definitions as
//! ../shared/bench/seed_model_bench.py so the two can be compared side by side:
//!   train:   forward + softmax cross-entropy + L2 + backward + Adam step, the same batch each step
//!   infer:   forward only, evaluation mode
//!   latency: infer with batch 1
//! Each sample times `steps` steps together; `reps` samples follow `warmup` untimed steps.
//! GFLOP/s counts the conv and dense multiply-adds (x2), and a training step as 3x the forward.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::dist::{share_of, Group};
use crate::error::{Error, Result};
use crate::layers::Mode;
use crate::model::{Loss, Network};
use crate::ops::{Bf16Convs, Precision};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    Train,
    Infer,
    Latency,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub bench: String,
    pub mode: BenchMode,
    pub threads: usize,
    /// The instruction-set level our kernels ran at ("portable", "avx2", "avx512bf16", "amx";
    /// `ops::simd`).
    pub simd_level: &'static str,
    /// The products' precision ("f32", "bf16", "bf16-tiles", "bf16-winograd";
    /// `ops::precision`), from the config's train.precision or `--precision`.
    pub precision: Precision,
    /// bf16 only: the family of algorithms its convolutions ran by ("tiles", "winograd";
    /// `ops::precision::Bf16Convs`), which plain "bf16" picks from the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bf16_convs: Option<&'static str>,
    pub batch: usize,
    pub steps: usize,
    pub reps: usize,
    pub img_per_s_median: f64,
    pub img_per_s_min: f64,
    pub img_per_s_max: f64,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub ms_per_step_max: f64,
    pub gflops_achieved_median: f64,
    /// Peak resident memory of the process so far (VmHWM), in MiB; None where unavailable.
    pub peak_rss_mib: Option<f64>,
    /// A distributed bench (`--distributed`): what rank 0 measured (`batch` is the global
    /// batch, images/s the whole job's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedFigures>,
}

/// The communication of a distributed training step, as rank 0 sees it.
#[derive(Clone, Debug, Serialize)]
pub struct DistributedFigures {
    pub ranks: usize,
    /// Milliseconds per step in the collectives (sends, receives, broadcasts, waiting for the
    /// other ranks included), median of the samples.
    pub comm_ms_per_step_median: f64,
    /// Bytes rank 0 sends per step.
    pub bytes_sent_per_step: u64,
    /// Bytes per step over every rank (each rank's sends; a broadcast counted once per
    /// receiving rank).
    pub bytes_all_ranks_per_step: u64,
}

pub struct BenchSettings {
    pub mode: BenchMode,
    pub batch: usize,
    pub steps: usize,
    pub reps: usize,
    pub warmup: usize,
}

impl BenchSettings {
    /// The PyTorch script's defaults: 30 / 50 / 300 steps per sample, 7 samples, 10 warm-up steps.
    pub fn defaults(mode: BenchMode, batch: Option<usize>) -> BenchSettings {
        let batch = batch.unwrap_or(if mode == BenchMode::Latency { 1 } else { 64 });
        let steps = match mode {
            BenchMode::Train => 30,
            BenchMode::Infer => 50,
            BenchMode::Latency => 300,
        };
        BenchSettings { mode, batch, steps, reps: 7, warmup: 10 }
    }
}

/// Runs on the thread pool's workers, as the command-line tool runs everything (see `threads`).
pub fn run_bench(cfg: &Config, s: &BenchSettings) -> Result<BenchResult> {
    crate::threads::on_workers(|| run_bench_on_workers(cfg, s, None))
}

/// `run_bench` of training steps on one rank of a distributed job: each rank computes its share
/// of the batch (`dist::share_of`) and the gradients are folded across the ranks (`dist`).
/// Every rank returns the same figures (rank 0's step times and traffic).
pub fn run_bench_distributed(cfg: &Config, s: &BenchSettings, group: &Arc<Group>) -> Result<BenchResult> {
    if s.mode != BenchMode::Train {
        return Err(Error::invalid("bench --distributed", "only training steps communicate: use --mode train"));
    }
    crate::threads::on_workers(|| run_bench_on_workers(cfg, s, Some(group)))
}

/// What a bench runs: a synthetic batch, the run's loss, and an optimiser for training steps.
struct Workload {
    x: Tensor,
    labels: Vec<usize>,
    loss: Loss,
    optimizer: Optimizer,
    /// A distributed bench's group, and where this rank's share starts in the batch.
    group: Option<(Arc<Group>, usize)>,
}

impl Workload {
    /// Deterministic pseudo-random inputs in [-1, 1) and labels for `net`, `batch` images.
    fn new(cfg: &Config, net: &Network, batch: usize, group: Option<&Arc<Group>>) -> Result<Workload> {
        let [h, w, c] = cfg.model.input;
        let n = h * w * c * batch;
        let x = Tensor::from_vec(&[batch, h, w, c], (0..n).map(|i| ((i as u64 * 2654435761) % 2000) as f32 / 1000.0 - 1.0).collect())?;
        let labels: Vec<usize> = (0..batch).map(|i| (i * 7) % net.num_classes()).collect();
        // The loss the run trains with (label smoothing costs a little time too).
        let loss = Loss { label_smoothing: cfg.run.train.label_smoothing };
        let optimizer = Optimizer::new(OptimizerConfig::Adam { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })?;
        let mut work = Workload { x, labels, loss, optimizer, group: None };
        if let Some(g) = group {
            let share = share_of(batch, g.rank(), g.size())?;
            work.x = work.x.slice_batch(share.start, share.len());
            work.labels = work.labels[share.clone()].to_vec();
            work.group = Some((Arc::clone(g), share.start));
        }
        Ok(work)
    }

    /// One step: forward, loss, backward and an Adam update (`Train`), or a forward pass in
    /// evaluation mode.
    fn step(&mut self, net: &mut Network, mode: BenchMode) -> Result<()> {
        match mode {
            BenchMode::Train => {
                match &self.group {
                    Some((g, first)) => net.compute_gradients_shared(&self.x, &self.labels, self.loss, g, *first)?,
                    None => net.compute_gradients(&self.x, &self.labels, self.loss)?,
                };
                net.apply_gradients(&mut self.optimizer, 1e-4)
            }
            BenchMode::Infer | BenchMode::Latency => net.forward(&self.x, Mode::Eval).map(|_| ()),
        }
    }
}

fn run_bench_on_workers(cfg: &Config, s: &BenchSettings, group: Option<&Arc<Group>>) -> Result<BenchResult> {
    let mut net = Network::build(&cfg.model, 0)?;
    net.set_precision(cfg.run.train.precision);
    let mut work = Workload::new(cfg, &net, s.batch, group)?;
    let mut step = |net: &mut Network| work.step(net, s.mode);
    for _ in 0..s.warmup {
        step(&mut net)?;
    }
    let mut samples = Vec::with_capacity(s.reps);
    let mut comm = Vec::with_capacity(s.reps);
    let traffic = |g: Option<&Arc<Group>>| g.map_or((0.0, 0), |g| (g.seconds_communicating(), g.bytes_sent()));
    let (_, bytes_before) = traffic(group);
    for _ in 0..s.reps {
        let (comm_before, _) = traffic(group);
        let t = Instant::now();
        for _ in 0..s.steps {
            step(&mut net)?;
        }
        samples.push(t.elapsed().as_secs_f64() / s.steps as f64);
        comm.push((traffic(group).0 - comm_before) / s.steps as f64);
    }
    let distributed = match group {
        Some(g) => {
            let steps = (s.reps * s.steps) as u64;
            let mine = (g.bytes_sent() - bytes_before) / steps;
            let per_rank = g.all_values(mine);
            // Rank 0's step times and communication, the same figures on every rank.
            let mut mine_then_rank0 = [samples.clone(), comm.clone()].concat();
            g.broadcast(0, &mut mine_then_rank0);
            let (rank0_samples, rank0_comm) = mine_then_rank0.split_at(samples.len());
            samples = rank0_samples.to_vec();
            comm = rank0_comm.to_vec();
            comm.sort_by(f64::total_cmp);
            Some(DistributedFigures {
                ranks: g.size(),
                comm_ms_per_step_median: round3(comm[comm.len() / 2] * 1e3),
                bytes_sent_per_step: per_rank[0],
                bytes_all_ranks_per_step: per_rank.iter().sum(),
            })
        }
        None => None,
    };
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let (min, max) = (samples[0], samples[samples.len() - 1]);
    let mult = if s.mode == BenchMode::Train { 3.0 } else { 1.0 };
    let b = s.batch as f64;
    Ok(BenchResult {
        bench: cfg.model.name.clone(),
        mode: s.mode,
        threads: rayon::current_num_threads(),
        simd_level: crate::ops::simd::simd_level().name(),
        precision: net.precision(),
        bf16_convs: net.precision().bf16_convs().map(Bf16Convs::name),
        batch: s.batch,
        steps: s.steps,
        reps: s.reps,
        img_per_s_median: round1(b / median),
        img_per_s_min: round1(b / max),
        img_per_s_max: round1(b / min),
        ms_per_step_median: round3(median * 1e3),
        ms_per_step_min: round3(min * 1e3),
        ms_per_step_max: round3(max * 1e3),
        gflops_achieved_median: round2(mult * net.flops() as f64 * b / median / 1e9),
        peak_rss_mib: peak_rss_mib(),
        distributed,
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// VmHWM from /proc/self/status (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round1(kib / 1024.0))
}

/// Per-layer forward and backward milliseconds of a training step (`train`) or of an inference
/// pass (forward only, backward 0), medians over `steps` steps after `warmup` untimed ones:
/// where the time goes.
pub fn layer_breakdown(cfg: &Config, batch: usize, steps: usize, warmup: usize, train: bool) -> Result<Vec<(String, f64, f64)>> {
    crate::threads::on_workers(|| layer_breakdown_on_workers(cfg, batch, steps, warmup, train))
}

fn layer_breakdown_on_workers(cfg: &Config, batch: usize, steps: usize, warmup: usize, train: bool) -> Result<Vec<(String, f64, f64)>> {
    let mut net = Network::build(&cfg.model, 0)?;
    net.set_precision(cfg.run.train.precision);
    let Workload { x, labels, loss, .. } = Workload::new(cfg, &net, batch, None)?;
    for _ in 0..warmup {
        net.profile_step(&x, &labels, loss, train)?;
    }
    let mut runs = Vec::with_capacity(steps);
    for _ in 0..steps.max(1) {
        runs.push(net.profile_step(&x, &labels, loss, train)?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3
    };
    Ok((0..runs[0].len())
        .map(|i| (runs[0][i].0.clone(), median(runs.iter().map(|r| r[i].1).collect()), median(runs.iter().map(|r| r[i].2).collect())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"
name = "tiny"
input = [6, 6, 1]
[data]
dataset = "mnist"
[train]
batch_size = 4
epochs = 1
[optimizer]
kind = "sgd"
lr = 0.1
[[layers]]
type = "conv2d"
filters = 2
kernel = 3
[[layers]]
type = "relu"
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 3
"#;

    fn weights(net: &Network) -> Vec<Tensor> {
        net.params().iter().map(|p| p.value.clone()).collect()
    }

    #[test]
    fn a_training_step_updates_the_weights_and_an_inference_step_does_not() {
        let cfg = Config::from_toml(TINY, "tiny").unwrap();
        let mut net = Network::build(&cfg.model, 0).unwrap();
        let mut work = Workload::new(&cfg, &net, 4, None).unwrap();
        assert_eq!(work.x.shape(), [4, 6, 6, 1]);
        assert_eq!(work.labels, [0, 1, 2, 0], "(i * 7) % 3");
        let before = weights(&net);
        for mode in [BenchMode::Infer, BenchMode::Latency] {
            work.step(&mut net, mode).unwrap();
            assert_eq!(weights(&net), before, "{mode:?} leaves the weights alone");
        }
        work.step(&mut net, BenchMode::Train).unwrap();
        assert_ne!(weights(&net), before, "a training step updates them");
        assert_eq!(work.optimizer.steps_taken(), 1);
    }

    #[test]
    fn bench_results_describe_the_run() {
        let cfg = Config::from_toml(TINY, "tiny").unwrap();
        for mode in [BenchMode::Train, BenchMode::Infer, BenchMode::Latency] {
            let s = BenchSettings { steps: 2, reps: 3, warmup: 1, ..BenchSettings::defaults(mode, None) };
            let r = run_bench(&cfg, &s).unwrap();
            assert_eq!((r.bench.as_str(), r.mode, r.batch, r.steps, r.reps), ("tiny", mode, s.batch, 2, 3));
            assert_eq!(r.batch, if mode == BenchMode::Latency { 1 } else { 64 }, "the default batches");
            assert!(r.img_per_s_min <= r.img_per_s_median && r.img_per_s_median <= r.img_per_s_max, "{r:?}");
            assert!(r.ms_per_step_min <= r.ms_per_step_median && r.ms_per_step_median <= r.ms_per_step_max, "{r:?}");
            assert!(r.img_per_s_median > 0.0 && r.gflops_achieved_median >= 0.0, "{r:?}");
        }
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mib().is_some_and(|m| m > 1.0), "VmHWM of this test process");
        }
    }

    #[test]
    fn the_layer_breakdown_has_a_row_per_built_layer() {
        let cfg = Config::from_toml(TINY, "tiny").unwrap();
        let labels = ["layer 0 (conv2d + relu)", "layer 2 (flatten)", "layer 3 (dense)"];
        let train = layer_breakdown(&cfg, 4, 3, 1, true).unwrap();
        assert_eq!(train.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), labels);
        assert!(train.iter().all(|r| r.1 > 0.0 && r.2 > 0.0), "every layer runs forward and backward: {train:?}");
        let infer = layer_breakdown(&cfg, 4, 3, 1, false).unwrap();
        assert_eq!(infer.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), labels);
        assert!(infer.iter().all(|r| r.1 > 0.0 && r.2 == 0.0), "no backward pass: {infer:?}");
    }
}
