//! Throughput of a model on synthetic data, with the same definitions as
//! ../shared/bench/seed_model_bench.py so the two can be compared side by side:
//!   train:   forward + softmax cross-entropy + L2 + backward + Adam step, the same batch each step
//!   infer:   forward only, evaluation mode
//!   latency: infer with batch 1
//! Each sample times `steps` steps together; `reps` samples follow `warmup` untimed steps.
//! GFLOP/s counts the conv and dense multiply-adds (x2), and a training step as 3x the forward.

use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::layers::Mode;
use crate::model::{Loss, Network};
use crate::optim::Optimizer;
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
    crate::threads::on_workers(|| run_bench_on_workers(cfg, s))
}

fn run_bench_on_workers(cfg: &Config, s: &BenchSettings) -> Result<BenchResult> {
    let mut net = Network::build(&cfg.model, 0)?;
    let [h, w, c] = cfg.model.input;
    let n = h * w * c * s.batch;
    // Deterministic pseudo-random inputs in [-1, 1) and labels.
    let x = Tensor::from_vec(&[s.batch, h, w, c], (0..n).map(|i| ((i as u64 * 2654435761) % 2000) as f32 / 1000.0 - 1.0).collect())?;
    let labels: Vec<usize> = (0..s.batch).map(|i| (i * 7) % net.num_classes()).collect();
    // The loss the run trains with (label smoothing costs a little time too).
    let loss = Loss { label_smoothing: cfg.run.train.label_smoothing };
    let mut optimizer =
        Optimizer::new(crate::optim::OptimizerConfig::Adam { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })?;
    let mut step = |net: &mut Network| -> Result<()> {
        match s.mode {
            BenchMode::Train => {
                net.compute_gradients(&x, &labels, loss)?;
                net.apply_gradients(&mut optimizer, 1e-4)
            }
            _ => net.forward(&x, Mode::Eval).map(|_| ()),
        }
    };
    for _ in 0..s.warmup {
        step(&mut net)?;
    }
    let mut samples = Vec::with_capacity(s.reps);
    for _ in 0..s.reps {
        let t = Instant::now();
        for _ in 0..s.steps {
            step(&mut net)?;
        }
        samples.push(t.elapsed().as_secs_f64() / s.steps as f64);
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let (min, max) = (samples[0], samples[samples.len() - 1]);
    let mult = if s.mode == BenchMode::Train { 3.0 } else { 1.0 };
    let b = s.batch as f64;
    Ok(BenchResult {
        bench: cfg.model.name.clone(),
        mode: s.mode,
        threads: rayon::current_num_threads(),
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
    let [h, w, c] = cfg.model.input;
    let n = h * w * c * batch;
    let x = Tensor::from_vec(&[batch, h, w, c], (0..n).map(|i| ((i as u64 * 2654435761) % 2000) as f32 / 1000.0 - 1.0).collect())?;
    let labels: Vec<usize> = (0..batch).map(|i| (i * 7) % net.num_classes()).collect();
    let loss = Loss { label_smoothing: cfg.run.train.label_smoothing };
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
