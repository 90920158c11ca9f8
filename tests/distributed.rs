//! Data-parallel training (`convnet::dist`, docs/distributed.md) with the ranks as threads of
//! this process, joined by channels (`dist::local_group`): N ranks sharing each batch end bit
//! for bit where one process training alone ends. The same runs under mpirun, with the MPI
//! transport, are in tests/distributed_mpi.rs (the `mpi` feature).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::{checkpoint_state, metrics_without_timing, random, write_quadrant_idx};
use convnet::bench::{run_bench_distributed, BenchMode, BenchSettings};
use convnet::dist::{local_group, share_of, with_group, Group};
use convnet::ops::batch_norm::{batch_norm_backward, batch_norm_forward_train, BatchNormCache, RunningStats};
use convnet::ops::conv2d::{conv2d_backward, conv2d_backward_into, conv2d_bias_grad_into, Conv2dGradsMut, ConvScratch, OutputGrad};
use convnet::ops::dense::dense_backward;
use convnet::ops::softmax::softmax_cross_entropy_smoothed;
use convnet::ops::window::{Padding, Window};
use convnet::ops::Precision;
use convnet::train::{train, ExistingRun, TrainOptions, TrainReport};
use convnet::{Config, Error, Tensor};

/// Runs `f(rank's group)` on `ranks` threads at once, each with its own one-thread rayon pool
/// (as each MPI rank is its own process), and returns their results in rank order.
fn on_ranks<R: Send + 'static>(ranks: usize, f: impl Fn(Arc<Group>) -> R + Send + Sync + 'static) -> Vec<R> {
    let f = Arc::new(f);
    let handles: Vec<_> = local_group(ranks)
        .into_iter()
        .map(|comm| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
                pool.install(|| f(Arc::new(Group::new(comm))))
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

/// dX, dW and db of a convolution with bf16 products (`precision`: one of the bf16 families).
fn conv2d_backward_bf16(x: &Tensor, w: &Tensor, dy: &Tensor, window: &Window, precision: Precision) -> (Tensor, Tensor, Tensor) {
    let (mut dx, mut dw, mut db) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
    let grads = Conv2dGradsMut { d_input: Some(&mut dx), d_weight: &mut dw, d_bias: &mut db };
    conv2d_backward_into(x, w, OutputGrad::Plain(dy), window, precision, grads, &mut ConvScratch::default()).unwrap();
    (dx, dw, db)
}

/// The rows of a batch tensor that a rank holds.
fn rows(t: &Tensor, share: &std::ops::Range<usize>) -> Tensor {
    t.slice_batch(share.start, share.len())
}

#[test]
fn each_batch_sum_of_a_step_is_the_same_bits_on_any_number_of_ranks() {
    // A batch of 100 images: shares of whole 32-image units (2 ranks: 64 + 36; 3: 32 + 32 + 36).
    let n = 100;
    let x = random(&[n, 6, 5, 3], 1);
    let w = random(&[3, 3, 3, 4], 2);
    let dy = random(&[n, 6, 5, 4], 3);
    let window = Window::new(3, 3, 1, 1, Padding::Same);
    let one = conv2d_backward(&x, &w, &dy, &window).unwrap();
    // 64 channels each side: dW by Winograd summed over the batch in groups of 32 images.
    let (x_wide, w_wide, dy_wide) = (random(&[n, 5, 4, 64], 11), random(&[3, 3, 64, 64], 12), random(&[n, 5, 4, 64], 13));
    let one_wide = conv2d_backward(&x_wide, &w_wide, &dy_wide, &window).unwrap();
    // bf16 products, 16 channels each side: in the tiles' family dW on the tiles in groups of
    // 32 images; in float32's algorithms (dX direct) dW by im2col, chunk by chunk.
    let (x_tiles, w_tiles, dy_tiles) = (random(&[n, 5, 4, 16], 14), random(&[3, 3, 16, 17], 15), random(&[n, 5, 4, 17], 16));
    let one_tiles = conv2d_backward_bf16(&x_tiles, &w_tiles, &dy_tiles, &window, Precision::Bf16Tiles);
    let one_vector = conv2d_backward_bf16(&x_tiles, &w_tiles, &dy_tiles, &window, Precision::Bf16Winograd);
    assert_ne!(bits(&one_tiles.1), bits(&one_vector.1), "the two bf16 families' dW: the same bits");
    // 300 features: in one process dW is taken in blocks of 128 rows (the last one short).
    let feats = random(&[n, 300], 4);
    let dw_dense = random(&[300, 5], 5);
    let dy_dense = random(&[n, 5], 6);
    let (_, dense_w, dense_b) = dense_backward(&feats, &dw_dense, &dy_dense).unwrap();
    let labels: Vec<usize> = (0..n).map(|i| (i * 7) % 5).collect();
    let (loss, d_logits) = softmax_cross_entropy_smoothed(&dy_dense, &labels, 0.1).unwrap();
    let bn = |x: &Tensor, dy: &Tensor| {
        let (gamma, beta) = (vec![1.5, -0.5, 2.0], vec![0.1, 0.2, 0.3]);
        let (mut mean, mut var) = (vec![0.0; 3], vec![1.0; 3]);
        let (mut y, mut cache, mut dx) = (Tensor::empty(), BatchNormCache::default(), Tensor::empty());
        let running = RunningStats { mean: &mut mean, var: &mut var, momentum: 0.1 };
        batch_norm_forward_train(x, &gamma, &beta, running, 1e-5, true, &mut y, &mut cache).unwrap();
        let (mut dg, mut db) = (vec![0.0; 3], vec![0.0; 3]);
        batch_norm_backward(x, dy, &mut cache, Some(&mut dx), &mut dg, &mut db).unwrap();
        (y, dx, dg, db, mean, var)
    };
    // Images of 30 pixels (8 per chunk) and of 300 (2 chunks each): both chunkings.
    let (x_bn, dy_bn) = (random(&[n, 6, 5, 3], 7), random(&[n, 6, 5, 3], 8));
    let (x_big, dy_big) = (random(&[n, 15, 20, 3], 9), random(&[n, 15, 20, 3], 10));
    let one_bn = bn(&x_bn, &dy_bn);
    let one_big = bn(&x_big, &dy_big);
    for ranks in [2, 3] {
        let inputs = Arc::new((x.clone(), w.clone(), dy.clone(), feats.clone(), dw_dense.clone(), dy_dense.clone(), labels.clone()));
        let inputs_bn = Arc::new((x_bn.clone(), dy_bn.clone(), x_big.clone(), dy_big.clone()));
        let inputs_wide = Arc::new((x_wide.clone(), w_wide.clone(), dy_wide.clone(), x_tiles.clone(), w_tiles.clone(), dy_tiles.clone()));
        let results = on_ranks(ranks, move |g| {
            let (x, w, dy, feats, wd, dyd, labels) = &*inputs;
            let (x_bn, dy_bn, x_big, dy_big) = &*inputs_bn;
            let (x_wide, w_wide, dy_wide, x_tiles, w_tiles, dy_tiles) = &*inputs_wide;
            let share = share_of(x.shape()[0], g.rank(), g.size()).unwrap();
            with_group(Some(&g), share.start, || {
                let conv = conv2d_backward(&rows(x, &share), w, &rows(dy, &share), &window).unwrap();
                let wide = conv2d_backward(&rows(x_wide, &share), w_wide, &rows(dy_wide, &share), &window).unwrap();
                let tiles = conv2d_backward_bf16(&rows(x_tiles, &share), w_tiles, &rows(dy_tiles, &share), &window, Precision::Bf16Tiles);
                let vector =
                    conv2d_backward_bf16(&rows(x_tiles, &share), w_tiles, &rows(dy_tiles, &share), &window, Precision::Bf16Winograd);
                let (_, dw, db) = dense_backward(&rows(feats, &share), wd, &rows(dyd, &share)).unwrap();
                let (loss, dl) = softmax_cross_entropy_smoothed(&rows(dyd, &share), &labels[share.clone()], 0.1).unwrap();
                let b = bn(&rows(x_bn, &share), &rows(dy_bn, &share));
                let big = bn(&rows(x_big, &share), &rows(dy_big, &share));
                (share, (conv, wide, tiles, vector), dw, db, loss, dl, b, big)
            })
        });
        for (share, (conv, wide, tiles, vector), dw, db, l, dl, b, big) in results {
            let what = format!("{ranks} ranks, images {share:?}");
            assert_eq!(bits(&conv.d_weight), bits(&one.d_weight), "conv dW, {what}");
            assert_eq!(bits(&conv.d_bias), bits(&one.d_bias), "conv db, {what}");
            assert_eq!(bits(&conv.d_input), bits(&rows(&one.d_input, &share)), "conv dX, {what}");
            assert_eq!(bits(&wide.d_weight), bits(&one_wide.d_weight), "64 -> 64 conv dW, {what}");
            assert_eq!(bits(&wide.d_bias), bits(&one_wide.d_bias), "64 -> 64 conv db, {what}");
            assert_eq!(bits(&tiles.1), bits(&one_tiles.1), "bf16 16 -> 17 conv dW on the tiles, {what}");
            assert_eq!(bits(&tiles.2), bits(&one_tiles.2), "bf16 16 -> 17 conv db, {what}");
            assert_eq!(bits(&tiles.0), bits(&rows(&one_tiles.0, &share)), "bf16 16 -> 17 conv dX, {what}");
            assert_eq!(bits(&vector.1), bits(&one_vector.1), "bf16 16 -> 17 conv dW by im2col, {what}");
            assert_eq!(bits(&vector.2), bits(&one_vector.2), "bf16 16 -> 17 conv db (float32's algorithms), {what}");
            assert_eq!(bits(&vector.0), bits(&rows(&one_vector.0, &share)), "bf16 16 -> 17 conv dX, direct, {what}");
            assert_eq!((bits(&dw), bits(&db)), (bits(&dense_w), bits(&dense_b)), "dense dW and db, {what}");
            assert_eq!(l.to_bits(), loss.to_bits(), "loss, {what}");
            assert_eq!(bits(&dl), bits(&rows(&d_logits, &share)), "d logits, {what}");
            for (got, want, size) in [(&b, &one_bn, "30-pixel"), (&big, &one_big, "300-pixel")] {
                assert_eq!(bits(&got.0), bits(&rows(&want.0, &share)), "batch norm y, {size} images, {what}");
                assert_eq!(bits(&got.1), bits(&rows(&want.1, &share)), "batch norm dX, {size} images, {what}");
                assert_eq!((&got.2, &got.3), (&want.2, &want.3), "batch norm d gamma, d beta, {size} images, {what}");
                assert_eq!((&got.4, &got.5), (&want.4, &want.5), "running statistics, {size} images, {what}");
            }
        }
    }
}

#[test]
fn a_frozen_convolutions_bias_gradient_is_the_same_bits_on_any_number_of_ranks() {
    // db alone (the whitening layer's backward pass): each image's sum, the images in order.
    let n = 100;
    let dy = random(&[n, 6, 5, 24], 21);
    let db_of = |dy: &Tensor| {
        let mut db = Tensor::empty();
        conv2d_bias_grad_into(OutputGrad::Plain(dy), &mut db, &mut ConvScratch::default()).unwrap();
        db
    };
    let one = db_of(&dy);
    let mut by_hand = [0.0f32; 24];
    for image in dy.data().chunks_exact(30 * 24) {
        let mut sums = [0.0f32; 24];
        image.chunks_exact(24).for_each(|pixel| sums.iter_mut().zip(pixel).for_each(|(s, v)| *s += v));
        by_hand.iter_mut().zip(&sums).for_each(|(a, s)| *a += s);
    }
    assert_eq!(bits(&one), by_hand.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    for ranks in [2, 3] {
        let dy = Arc::new(dy.clone());
        let results = on_ranks(ranks, move |g| {
            let share = share_of(dy.shape()[0], g.rank(), g.size()).unwrap();
            with_group(Some(&g), share.start, || db_of(&rows(&dy, &share)))
        });
        for (rank, db) in results.iter().enumerate() {
            assert_eq!(bits(db), bits(&one), "db on rank {rank} of {ranks}");
        }
    }
}

const CONFIG: &str = r#"
name = "dist-test"
input = [8, 8, 1]
init = { kind = "he" }
[data]
dataset = "mnist"
path = "DATA"
validation = 40
[train]
batch_size = 100
epochs = 2
seed = 5
label_smoothing = 0.1
[augment]
crop_padding = 1
flip = true
cutout = 3
[optimizer]
kind = "adamw"
lr = 0.01
weight_decay = 0.01
[[layers]]
type = "conv2d"
filters = 8
kernel = 3
padding = "same"
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 8, kernel = 3, padding = "same" },
  { type = "batch_norm" },
  { type = "relu" },
]
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.2
[[layers]]
type = "dense"
units = 16
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "dense"
units = 10
"#;

/// 300 training images (batches of 100) after 40 for validation, 40 test images.
fn data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_quadrant_idx(&data, 340, 40, 11);
    data
}

fn config(data: &Path) -> Config {
    Config::from_toml(&CONFIG.replace("DATA", &data.display().to_string()), "dist-test.toml").unwrap()
}

/// Trains `cfg` into `out` with `ranks` ranks as threads; rank 0's report first.
fn train_on_ranks(ranks: usize, cfg: &Config, out: &Path, existing: ExistingRun) -> Vec<Result<TrainReport, Error>> {
    let (cfg, out) = (cfg.clone(), out.to_path_buf());
    on_ranks(ranks, move |g| {
        let opts = TrainOptions { group: Some(g), existing, ..TrainOptions::new(cfg.clone(), &out) };
        train(&opts, &mut |_| Ok(()))
    })
}

fn assert_same_run(a: &Path, b: &Path, what: &str) {
    let (params_a, opt_a) = checkpoint_state(&a.join("last.safetensors"));
    let (params_b, opt_b) = checkpoint_state(&b.join("last.safetensors"));
    for (i, (pa, pb)) in params_a.iter().zip(&params_b).enumerate() {
        assert_eq!(bits(pa), bits(pb), "{what}: parameter {i}");
    }
    assert_eq!(opt_a.len(), opt_b.len());
    for ((name, va), (_, vb)) in opt_a.iter().zip(&opt_b) {
        let (ba, bb): (Vec<u32>, Vec<u32>) = (va.iter().map(|v| v.to_bits()).collect(), vb.iter().map(|v| v.to_bits()).collect());
        assert_eq!(ba, bb, "{what}: optimiser state {name}");
    }
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b), "{what}: metrics.csv");
}

#[test]
fn two_and_three_ranks_train_a_batch_norm_resnet_to_the_bits_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&data(dir.path()));
    let alone = dir.path().join("alone");
    let report = train(&TrainOptions::new(cfg.clone(), &alone), &mut |_| Ok(())).unwrap();
    assert_eq!(report.epochs.len(), 2);
    for ranks in [2, 3] {
        let out = dir.path().join(format!("ranks-{ranks}"));
        let reports = train_on_ranks(ranks, &cfg, &out, ExistingRun::Refuse);
        assert_same_run(&alone, &out, &format!("{ranks} ranks"));
        for (rank, r) in reports.into_iter().enumerate() {
            let r = r.unwrap();
            let accuracy =
                |r: &TrainReport| r.epochs.iter().map(|m| (m.train_loss.to_bits(), m.test_accuracy.to_bits())).collect::<Vec<_>>();
            assert_eq!(accuracy(&r), accuracy(&report), "rank {rank} of {ranks}: its metrics");
        }
        // Only rank 0 wrote: the folder holds one run's files, no stray ones.
        let mut files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        files.sort();
        assert_eq!(files, ["best.safetensors", "config.toml", "last.safetensors", "metrics.csv", "summary.json"]);
    }
}

#[test]
fn a_distributed_run_stops_on_every_rank_at_one_step_and_resumes_to_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&data(dir.path()));
    let alone = dir.path().join("alone");
    train(&TrainOptions::new(cfg.clone(), &alone), &mut |_| Ok(())).unwrap();
    // Rank 1 alone is asked to stop, before the first step: every rank stops there.
    let out = dir.path().join("ranks");
    let (cfg3, out3) = (cfg.clone(), out.clone());
    let stopped = on_ranks(2, move |g| {
        let asked = g.rank() == 1;
        let opts = TrainOptions { group: Some(g), stop: Some(Arc::new(AtomicBool::new(asked))), ..TrainOptions::new(cfg3.clone(), &out3) };
        train(&opts, &mut |_| Ok(())).unwrap().stopped.map(|at| (at.epochs_done, at.steps_done))
    });
    assert_eq!(stopped, [Some((0, 0)), Some((0, 0))], "both ranks stop before the first step");
    assert!(out.join("last.safetensors").exists());
    for r in train_on_ranks(2, &cfg, &out, ExistingRun::Resume) {
        r.unwrap();
    }
    assert_same_run(&alone, &out, "stopped and resumed on 2 ranks");
}

#[test]
fn ranks_with_different_configs_or_too_small_batches_are_refused_on_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&data(dir.path()));
    let out = dir.path().join("mismatch");
    let (cfg1, out1) = (cfg.clone(), out.clone());
    let errors = on_ranks(2, move |g| {
        let mut cfg = cfg1.clone();
        if g.rank() == 1 {
            cfg.run.train.label_smoothing = 0.2;
        }
        let opts = TrainOptions { group: Some(g), ..TrainOptions::new(cfg, &out1) };
        train(&opts, &mut |_| Ok(())).err().expect("refused").to_string()
    });
    for e in &errors {
        assert!(e.contains("rank 1") && e.contains("different config") && e.contains("thread 1"), "{e}");
    }
    assert!(!out.join("last.safetensors").exists());
    // The same config over different data on rank 1 (another folder, other images).
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    write_quadrant_idx(&other, 340, 40, 12);
    let (cfg2, out2) = (cfg.clone(), dir.path().join("other-data"));
    let errors = on_ranks(2, move |g| {
        let data_dir = (g.rank() == 1).then(|| other.clone());
        let opts = TrainOptions { group: Some(g), data_dir, ..TrainOptions::new(cfg2.clone(), &out2) };
        train(&opts, &mut |_| Ok(())).err().expect("refused").to_string()
    });
    for e in &errors {
        assert!(e.contains("rank 1") && e.contains("different training set"), "{e}");
    }
    // Batches of 70 share among 3 ranks (32 + 32 + 6), but the epoch's last batch, 20 images
    // of 300, does not.
    let mut last_small = cfg.clone();
    last_small.run.train.batch_size = 70;
    let out3 = dir.path().join("last-small");
    let errors = on_ranks(3, move |g| {
        let opts = TrainOptions { group: Some(g), ..TrainOptions::new(last_small.clone(), &out3) };
        train(&opts, &mut |_| Ok(())).err().expect("refused").to_string()
    });
    for e in &errors {
        assert!(e.contains("batch size 70") && e.contains("batch of 20 images"), "{e}");
    }
    // Batches of 40: one 32-image unit and a part, not enough for 3 ranks.
    let mut small = cfg.clone();
    small.run.train.batch_size = 40;
    let out = dir.path().join("small");
    let errors = on_ranks(3, move |g| {
        let opts = TrainOptions { group: Some(g), ..TrainOptions::new(small.clone(), &out) };
        train(&opts, &mut |_| Ok(())).err().expect("refused").to_string()
    });
    for e in &errors {
        assert!(e.contains("batch size 40") && e.contains("3 ranks"), "{e}");
    }
}

#[test]
fn the_distributed_bench_counts_the_bytes_each_fold_sends() {
    // Tiny: conv 3x3x1x4 + bias (40), dense 256x10 + bias (2570): 2,610 parameters.
    let cfg = Config::from_toml(
        &common::model_config(
            "bench",
            "[8, 8, 1]",
            "[[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\npadding = \"same\"\n[[layers]]\ntype = \"relu\"\n\
             [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n",
        ),
        "bench.toml",
    )
    .unwrap();
    let cfg3 = cfg.clone();
    let figures = on_ranks(2, move |g| {
        let mut s = BenchSettings::defaults(BenchMode::Train, Some(64));
        (s.steps, s.reps, s.warmup) = (2, 3, 1);
        let r = run_bench_distributed(&cfg, &s, &g).unwrap();
        (r.distributed.unwrap(), r.ms_per_step_median)
    });
    // Rank 0 sends the running sums of its share: every gradient (f32), the loss (f64), and
    // two counts (u64: the batch's images for the loss, its correct answers); the last rank
    // broadcasts the same totals back.
    let per_rank = 4 * 2610 + 8 + 8 + 8;
    for (f, step_ms) in &figures {
        assert_eq!((f.ranks, f.bytes_sent_per_step, f.bytes_all_ranks_per_step), (2, per_rank, 2 * per_rank));
        assert!(f.comm_ms_per_step_median > 0.0 && f.comm_ms_per_step_median <= *step_ms, "{f:?} of {step_ms} ms");
    }
    // Three ranks: rank 0 sends to rank 1, rank 1 to rank 2, and rank 2's broadcasts reach two.
    let figures = on_ranks(3, move |g| {
        let mut s = BenchSettings::defaults(BenchMode::Train, Some(96));
        (s.steps, s.reps, s.warmup) = (1, 1, 0);
        run_bench_distributed(&cfg3, &s, &g).unwrap().distributed.unwrap()
    });
    assert_eq!((figures[0].bytes_sent_per_step, figures[0].bytes_all_ranks_per_step), (per_rank, 4 * per_rank));
    let mut s = BenchSettings::defaults(BenchMode::Infer, Some(64));
    s.reps = 1;
    let cfg = Config::from_toml(
        &common::model_config("x", "[8, 8, 1]", "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n"),
        "x.toml",
    )
    .unwrap();
    let errors = on_ranks(1, move |g| run_bench_distributed(&cfg, &s, &g).err().map(|e| e.to_string()));
    assert!(errors[0].as_deref().is_some_and(|e| e.contains("--mode train")), "{errors:?}");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn without_the_mpi_feature_distributed_is_refused_with_how_to_build_it() {
    for command in ["train", "bench"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_convnet")).args([command, "--distributed"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("built without MPI") && stderr.contains("--features mpi"), "{command}: {stderr}");
    }
}

#[test]
fn a_group_applies_only_inside_with_group() {
    let seen = on_ranks(2, |g| {
        let inside = with_group(Some(&g), 32 * g.rank(), || (convnet::dist::first_image(), convnet::dist::batch_count(5)));
        (inside, convnet::dist::first_image(), convnet::dist::batch_count(5))
    });
    // Inside: this rank's start and the ranks' total; after: one process again.
    assert_eq!(seen, [((0, 10), 0, 5), ((32, 10), 0, 5)]);
}
