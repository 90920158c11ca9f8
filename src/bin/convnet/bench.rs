//! `convnet bench`: images per second of a model on synthetic data.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

use std::sync::Arc;

use convnet::bench::{layer_breakdown, run_bench, run_bench_distributed, BenchMode, BenchSettings};
use convnet::ops::Precision;
use convnet::train::run::MAX_BATCH;
use convnet::Config;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Forward, loss, backward and Adam step (batch 64 unless --batch-size).
    Train,
    /// Forward only, batch 64 unless --batch-size.
    Infer,
    /// Forward only, batch 1: milliseconds per image.
    Latency,
}

/// Measure training or inference speed on synthetic data (no data set needed): warm-up steps,
/// then several timed samples; prints the median, min and max images/s, milliseconds per step,
/// achieved GFLOP/s (conv and dense multiply-adds; a training step counts 3x the forward) and
/// the peak memory. Same definitions as ../shared/bench/seed_model_bench.py, so the two can run
/// side by side.
#[derive(Args)]
pub struct BenchArgs {
    /// The model config (TOML).
    #[arg(long, default_value = "configs/cifar10-seed.toml")]
    config: PathBuf,
    #[arg(long, value_enum, default_value = "train")]
    mode: Mode,
    #[arg(long)]
    batch_size: Option<usize>,
    /// The precision of the products (overrides the config's train.precision): f32, bf16
    /// (its convolutions by the family that suits this CPU), bf16-tiles or bf16-winograd.
    #[arg(long)]
    precision: Option<Precision>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Steps per timed sample (default 30 train, 50 infer, 300 latency).
    #[arg(long)]
    steps: Option<usize>,
    /// Timed samples.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// One JSON line instead of the table.
    #[arg(long)]
    json: bool,
    /// Instead: each layer's time (median of --steps): forward and backward in a training step
    /// with --mode train, forward only with --mode infer or latency.
    #[arg(long)]
    layers: bool,
    /// Training steps on one rank of an MPI job (`mpirun -np N convnet bench --distributed`):
    /// each rank computes its share of the batch, and rank 0 prints the step time for the whole
    /// batch, the time spent communicating and the bytes sent per step. Needs a convnet built
    /// with `--features mpi`.
    #[arg(long, conflicts_with = "layers")]
    distributed: bool,
}

pub fn run(args: BenchArgs) -> convnet::Result<()> {
    let group = if args.distributed {
        crate::set_threads_for_rank(args.threads)?;
        Some(Arc::new(crate::train::join_mpi_job()?))
    } else {
        crate::set_threads(args.threads)?;
        None
    };
    let mut cfg = Config::load(&args.config)?;
    if let Some(p) = args.precision {
        cfg.run.train.precision = p;
    }
    convnet::ops::precision::announce(cfg.run.train.precision);
    let mode = match args.mode {
        Mode::Train => BenchMode::Train,
        Mode::Infer => BenchMode::Infer,
        Mode::Latency => BenchMode::Latency,
    };
    let mut s = BenchSettings::defaults(mode, args.batch_size);
    if let Some(steps) = args.steps {
        s.steps = steps.max(1);
    }
    s.reps = args.reps.max(1);
    s.warmup = args.warmup;
    if s.batch == 0 || s.batch > MAX_BATCH {
        return Err(convnet::Error::invalid("--batch-size", format!("must be from 1 to {MAX_BATCH}, got {}", s.batch)));
    }
    if args.layers {
        let train = s.mode == BenchMode::Train;
        let rows = layer_breakdown(&cfg, s.batch, s.steps, s.warmup, train)?;
        let total: f64 = rows.iter().map(|r| r.1 + r.2).sum();
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(5);
        let what = if train { "training step" } else { "inference pass (forward only)" };
        println!(
            "{} {what}, batch {}, {} threads, {}: median ms per layer",
            cfg.model.name,
            s.batch,
            rayon::current_num_threads(),
            cfg.run.train.precision.describe()
        );
        println!("  {:<width$}  {:>9}  {:>9}  {:>6}", "layer", "forward", "backward", "share");
        for (name, f, b) in &rows {
            println!("  {name:<width$}  {f:>9.3}  {b:>9.3}  {:>5.1}%", 100.0 * (f + b) / total);
        }
        println!("  {:<width$}  {:>9.3}  {:>9.3}", "total", rows.iter().map(|r| r.1).sum::<f64>(), rows.iter().map(|r| r.2).sum::<f64>());
        return Ok(());
    }
    let r = match &group {
        Some(g) => run_bench_distributed(&cfg, &s, g)?,
        None => run_bench(&cfg, &s)?,
    };
    if group.as_ref().is_some_and(|g| g.rank() > 0) {
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        println!(
            "{} {:?}: batch {}, {} threads, {} kernels, {}, {} samples of {} steps",
            r.bench,
            r.mode,
            r.batch,
            r.threads,
            r.simd_level,
            r.precision.describe(),
            r.reps,
            r.steps
        );
        println!("  images/s      median {:>9.1}   min {:>9.1}   max {:>9.1}", r.img_per_s_median, r.img_per_s_min, r.img_per_s_max);
        println!("  ms per step   median {:>9.3}   min {:>9.3}   max {:>9.3}", r.ms_per_step_median, r.ms_per_step_min, r.ms_per_step_max);
        println!("  achieved      {:.2} GFLOP/s", r.gflops_achieved_median);
        if let Some(m) = r.peak_rss_mib {
            println!("  peak memory   {m:.1} MiB (resident)");
        }
        if let Some(d) = &r.distributed {
            println!(
                "  distributed   {} ranks: {:.3} ms per step communicating (median, waiting included); {} bytes sent per step by rank 0, {} by all ranks",
                d.ranks, d.comm_ms_per_step_median, d.bytes_sent_per_step, d.bytes_all_ranks_per_step
            );
        }
    }
    Ok(())
}
