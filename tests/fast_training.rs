//! The fast-training recipe's pieces (issue 12): the whitening layer against a direct
//! computation, param groups reaching the optimiser, alternating flip's schedule, test-time
//! translation, and a tiny airbench-style run end to end: its summary, the frozen whitening
//! bias, determinism and resume with a lookahead average in the checkpoint.
mod common;

use common::*;
use convnet::data::augment::{alternating_flip, make_augmented_batch, translate_batch, AugmentConfig, BatchAt};
use convnet::data::{make_batch, Dataset, Normalization};
use convnet::model::whitening::{patch_covariance, whiten_first_layer, whitening_weights, WHITENING_EPS};
use convnet::model::{Loss, ModelSpec, Network};
use convnet::optim::{Optimizer, OptimizerConfig, ParamGroup};
use convnet::train::datasets::load_splits;
use convnet::train::{evaluate, train, Checkpoint, EvalOptions, ExistingRun, TrainOptions};
use convnet::{Config, Tensor};

fn param<'a>(net: &'a Network, name: &str) -> &'a Tensor {
    &net.params().into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no parameter {name}")).value
}

/// The patch covariance by its definition: the mean over every kh x kw patch of every image of
/// the patch's outer product with itself (values in row, column, channel order).
fn direct_patch_covariance(x: &Tensor, kh: usize, kw: usize) -> Vec<f64> {
    let [n, h, w, c] = x.shape()[..] else { panic!("images [N, H, W, C]") };
    let d = kh * kw * c;
    let patches = (n * (h - kh + 1) * (w - kw + 1)) as f64;
    let mut want = vec![0.0f64; d * d];
    for img in 0..n {
        for y in 0..h - kh + 1 {
            for xx in 0..w - kw + 1 {
                let mut patch = Vec::new();
                for ky in 0..kh {
                    for kx in 0..kw {
                        for ch in 0..c {
                            patch.push(f64::from(x.data()[((img * h + y + ky) * w + xx + kx) * c + ch]));
                        }
                    }
                }
                for i in 0..d {
                    for j in 0..d {
                        want[i * d + j] += patch[i] * patch[j] / patches;
                    }
                }
            }
        }
    }
    want
}

#[test]
fn the_patch_covariance_is_the_mean_outer_product_of_every_patch() {
    // 2 images 3x4x2, 2x2 patches: 2 x 2 x 3 = 12 patches of 8 values; and 40 images 5x3x3,
    // more than one chunk of the parallel sum, 3x2 patches.
    for (shape, kh, kw, seed) in [([2, 3, 4, 2], 2, 2, 7), ([40, 5, 3, 3], 3, 2, 8)] {
        let x = random(&shape, seed);
        let cov = patch_covariance(&x, kh, kw).unwrap();
        let want = direct_patch_covariance(&x, kh, kw);
        assert_eq!(cov.len(), want.len());
        for (a, b) in cov.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{shape:?}: {a} vs {b}");
        }
    }
    assert!(patch_covariance(&random(&[2, 3, 4, 2], 7), 4, 2).is_err(), "a patch taller than the images");
}

#[test]
fn a_patch_as_large_as_the_image_is_one_patch_and_a_larger_one_is_refused() {
    // Two 1-channel 2x2 images, a 2x2 window: one patch per image, so the covariance is the
    // mean of the two images' outer products, by hand.
    let x = Tensor::from_vec(&[2, 2, 2, 1], vec![1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 0.0, -1.0]).unwrap();
    let cov = patch_covariance(&x, 2, 2).unwrap();
    let (a, b) = ([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]);
    for i in 0..4 {
        for j in 0..4 {
            let want = (a[i] * a[j] + b[i] * b[j]) / 2.0;
            assert_eq!(cov[i * 4 + j], want, "cov[{i}][{j}]");
        }
    }
    let wide = patch_covariance(&x, 2, 3).unwrap_err().to_string();
    assert!(wide.contains("2x3 patch"), "{wide}");
    assert!(patch_covariance(&x, 3, 2).is_err(), "a patch taller than the images");
    let none = Tensor::from_vec(&[0, 2, 2, 1], vec![]).unwrap();
    assert!(patch_covariance(&none, 2, 2).is_err(), "no images");
}

#[test]
fn whitening_weights_whiten_the_patches_of_a_generated_data_set() {
    // Correlated 3-channel images (channel 1 follows channel 0, neighbours share a component):
    // the first d filters map the patches to coordinates with covariance diag(l / (l + eps)),
    // the eigenvalues l of the patch covariance, and the other d are their negatives.
    let (n, h, w, c) = (6, 7, 6, 3);
    let base = random(&[n, h, w, c], 11);
    let mut data = base.data().to_vec();
    for i in 0..n * h * w {
        data[i * c + 1] = 0.8 * data[i * c] + 0.2 * data[i * c + 1];
        if i % w > 0 {
            data[i * c + 2] += 0.5 * data[(i - 1) * c + 2];
        }
    }
    let images = Tensor::from_vec(&[n, h, w, c], data).unwrap();
    let cov = patch_covariance(&images, 2, 2).unwrap();
    let d = 12;
    let weights = whitening_weights(&cov, 2, 2, c, WHITENING_EPS);
    assert_eq!(weights.shape(), &[2, 2, 3, 24]);
    let col = |o: usize| -> Vec<f64> { (0..d).map(|i| f64::from(weights.data()[i * 2 * d + o])).collect() };
    let mut previous = f64::INFINITY;
    for o in 0..d {
        let (u, neg) = (col(o), col(d + o));
        assert!(u.iter().zip(&neg).all(|(a, b)| a == &-b), "filter {} is filter {o} negated", d + o);
        // u^T C u = l / (l + eps); the v = u sqrt(l + eps) are unit eigenvectors: C v = l v.
        let cu: Vec<f64> = (0..d).map(|i| (0..d).map(|j| cov[i * d + j] * u[j]).sum()).collect();
        let quad: f64 = u.iter().zip(&cu).map(|(a, b)| a * b).sum();
        let norm2: f64 = u.iter().map(|a| a * a).sum();
        let lambda = quad / norm2;
        assert!(lambda <= previous * (1.0 + 1e-5), "eigenvalues largest first: {lambda} after {previous}");
        previous = lambda;
        assert!((quad - lambda / (lambda + WHITENING_EPS)).abs() < 1e-4, "filter {o}: {quad} vs {lambda}");
        assert!((norm2 - 1.0 / (lambda + WHITENING_EPS)).abs() < 1e-4 * norm2, "filter {o}: |u|^2 {norm2}");
        for (i, value) in cu.iter().enumerate() {
            assert!((value - lambda * u[i]).abs() < 1e-4 * (1.0 + lambda * norm2.sqrt()), "C u = l u, filter {o} row {i}");
        }
        for p in 0..o {
            let v = col(p);
            let cross: f64 = v.iter().zip(&cu).map(|(a, b)| a * b).sum();
            assert!(cross.abs() < 1e-4, "outputs {p} and {o} are correlated: {cross}");
        }
    }
    // Through a network: whiten_first_layer sets the first layer to these weights.
    let layers = "[[layers]]\ntype = \"conv2d\"\nfilters = 24\nkernel = 2\npadding = \"valid\"\nwhiten = true\n\
                  [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n";
    let spec = Config::from_toml(&model_config("w", "[7, 6, 3]", layers), "w.toml").unwrap().model;
    let mut net = Network::build(&spec, 1).unwrap();
    assert!(whiten_first_layer(&mut net, &images).unwrap());
    assert_eq!(param(&net, "0.conv2d.weight"), &weights);
    let trainable: Vec<String> = net.trainable_sizes().into_iter().map(|(name, _)| name).collect();
    assert!(!trainable.contains(&"0.conv2d.weight".to_string()) && trainable.contains(&"0.conv2d.bias".to_string()));
}

#[test]
fn a_whitening_layer_is_checked_where_it_is_declared() {
    let conv =
        |filters: usize, extra: &str| format!("[[layers]]\ntype = \"conv2d\"\nfilters = {filters}\nkernel = 2\nwhiten = true\n{extra}");
    let tail = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n";
    let err = |layers: String| Config::from_toml(&model_config("w", "[6, 6, 3]", &layers), "w.toml").unwrap_err().to_string();
    assert!(err(conv(12, "") + tail).contains("filters = 2 x kernel height x kernel width x input channels = 24, got 12"));
    let second = format!("[[layers]]\ntype = \"relu\"\n{}{tail}", conv(24, ""));
    assert!(err(second).contains("layer 1 (conv2d): whiten = true is only for the model's first layer"));
    assert!(err(conv(24, "dirac = true\n") + tail).contains("choose one"));
    let ok = Config::from_toml(&model_config("w", "[6, 6, 3]", &(conv(24, "") + tail)), "w.toml").unwrap();
    assert!(serde_json::to_string(&ok.model).unwrap().contains("\"whiten\":true"));
}

/// A 2x2x1 input, flattened, into dense 3: the smallest net with a weight and a bias.
fn flatten_dense_3() -> ModelSpec {
    let layers = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 3\n";
    Config::from_toml(&model_config("dense", "[2, 2, 1]", layers), "dense.toml").unwrap().model
}

#[test]
fn param_group_multipliers_and_freezing_reach_the_optimiser() {
    let spec = flatten_dense_3();
    let x = random(&[4, 2, 2, 1], 3);
    let labels = [0, 1, 2, 1];
    let (lr, wd) = (0.1f32, 0.01f32);
    let step = |groups: &[ParamGroup], epoch: usize| {
        let mut net = Network::build(&spec, 5).unwrap();
        net.compute_gradients(&x, &labels, Loss::default()).unwrap();
        let before: Vec<(Tensor, Tensor)> = ["1.dense.weight", "1.dense.bias"]
            .iter()
            .map(|n| (param(&net, n).clone(), net.params().into_iter().find(|p| p.name == *n).unwrap().grad.clone()))
            .collect();
        let mut opt = Optimizer::new(OptimizerConfig::Sgd { lr, momentum: 0.0, nesterov: false, weight_decay: wd }).unwrap();
        net.apply_gradients_grouped(&mut opt, lr, groups, epoch).unwrap();
        (before, param(&net, "1.dense.weight").clone(), param(&net, "1.dense.bias").clone())
    };
    let group = |params: &str, extra: &str| -> ParamGroup {
        toml::from_str(&format!("layers = \"dense\"\nparams = [\"{params}\"]\n{extra}")).unwrap()
    };
    // By hand, per element: w - lr_scaled (g + wd_scaled w) where decay applies.
    let expect = |(w, g): &(Tensor, Tensor), lr: f32, wd: Option<f32>| -> Vec<f32> {
        w.data().iter().zip(g.data()).map(|(&w, &g)| w - lr * wd.map_or(g, |wd| g + wd * w)).collect()
    };
    let (before, weight, bias) = step(&[], 0);
    assert_eq!(weight.data(), expect(&before[0], lr, Some(wd)), "no group: weights decayed");
    assert_eq!(bias.data(), expect(&before[1], lr, None), "no group: biases not");
    let groups = [group("weight", "lr_scale = 2.0\nweight_decay_scale = 0.5"), group("bias", "decay = true\nlr_scale = 4.0")];
    let (before, weight, bias) = step(&groups, 0);
    assert_eq!(weight.data(), expect(&before[0], lr * 2.0, Some(wd * 0.5)));
    assert_eq!(bias.data(), expect(&before[1], lr * 4.0, Some(wd)));
    // Trained in epoch 1 (index 0) only: from the second, left exactly as it was.
    let frozen = [group("bias", "train_epochs = 1")];
    let (before, _, bias) = step(&frozen, 1);
    assert_eq!(bias.data(), before[1].0.data());
    let (before, _, bias) = step(&frozen, 0);
    assert_eq!(bias.data(), expect(&before[1], lr, None));
}

#[test]
fn a_groups_decay_scale_is_the_optimisers_decay_scaled_for_sgd_and_adam() {
    // One step with weight_decay 0.02 and a group scaling the weights' decay by 0.25 gives the
    // same bits as weight_decay 0.005 without groups (biases are not decayed in either).
    let spec = flatten_dense_3();
    let x = random(&[4, 2, 2, 1], 8);
    let labels = [2, 1, 0, 1];
    let group: ParamGroup = toml::from_str("layers = \"dense\"\nparams = [\"weight\"]\nweight_decay_scale = 0.25").unwrap();
    let optimisers = |wd: f32| {
        [
            OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: wd },
            OptimizerConfig::Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd },
            OptimizerConfig::Adamw { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd },
        ]
    };
    for (grouped, plain) in optimisers(0.02).into_iter().zip(optimisers(0.005)) {
        let after = |cfg: OptimizerConfig, groups: &[ParamGroup]| {
            let mut net = Network::build(&spec, 5).unwrap();
            let lr = cfg.lr();
            let mut opt = Optimizer::new(cfg).unwrap();
            for _ in 0..2 {
                net.compute_gradients(&x, &labels, Loss::default()).unwrap();
                net.apply_gradients_grouped(&mut opt, lr, groups, 0).unwrap();
            }
            param(&net, "1.dense.weight").clone()
        };
        let (a, b) = (after(grouped.clone(), std::slice::from_ref(&group)), after(plain, &[]));
        assert_eq!(a, b, "{grouped:?}");
        assert_ne!(a, after(grouped.clone(), &[]), "{grouped:?}: the scale changes the step");
    }
}

#[test]
fn alternating_flip_mirrors_each_image_in_every_other_epoch() {
    let seed = 9;
    let flips: Vec<[bool; 4]> = (0..400).map(|i| [0, 1, 2, 3].map(|e| alternating_flip(seed, i, e))).collect();
    for f in &flips {
        assert_eq!((f[0], f[2]), (f[1] ^ true, f[3] ^ true), "once in each pair of epochs");
        assert_eq!((f[0], f[1]), (f[2], f[3]), "and the same again two epochs on");
    }
    let first = flips.iter().filter(|f| f[0]).count();
    assert!((160..=240).contains(&first), "about half flipped in the first epoch: {first} of 400");
    assert!(flips.iter().map(|f| f[0]).ne((0..400).map(|i| alternating_flip(seed + 1, i, 0))), "each seed its own coins");

    // In a batch: exactly the images the schedule names are mirrored, whatever the rng.
    let (h, w, c) = (3, 4, 1);
    let pixels: Vec<u8> = (0..8 * h * w).map(|i| (i * 7 % 251) as u8).collect();
    let ds = Dataset::new(pixels, vec![0; 8], h, w, c, vec!["a".into()]).unwrap();
    let norm = Normalization { mean: vec![0.0], std: vec![1.0] };
    let cfg = AugmentConfig { alternating_flip: true, ..Default::default() };
    assert!(cfg.is_active());
    let order = [5, 2, 7, 0, 1, 3, 6, 4];
    let (plain, _) = make_batch(&ds, &order, &norm);
    for epoch in 0..3 {
        let mut rng = rand_chacha::rand_core::SeedableRng::seed_from_u64(epoch as u64);
        let (x, _) = make_augmented_batch(&ds, &order, &norm, &cfg, &mut rng, BatchAt { seed, epoch });
        for (k, &i) in order.iter().enumerate() {
            let (got, src) = (&x.data()[k * h * w..][..h * w], &plain.data()[k * h * w..][..h * w]);
            let mirrored: Vec<f32> = (0..h * w).map(|p| src[(p / w) * w + (w - 1 - p % w)]).collect();
            let want = if alternating_flip(seed, i, epoch) { &mirrored[..] } else { src };
            assert_eq!(got, want, "image {i}, epoch {epoch}");
        }
    }
    let both = AugmentConfig { flip: true, alternating_flip: true, ..Default::default() };
    assert!(both.validate().unwrap_err().contains("choose one"));
}

#[test]
fn translate_batch_shifts_with_reflection_by_hand() {
    // One 3x3 image 1..9: a shift by (-1, -1) reads out[y][x] = in[y - 1][x - 1], reflected
    // at the top and left border (row -1 is row 1).
    let x = Tensor::from_vec(&[1, 3, 3, 1], (1..=9).map(|v| v as f32).collect()).unwrap();
    assert_eq!(translate_batch(&x, -1, -1).data(), &[5.0, 4.0, 5.0, 2.0, 1.0, 2.0, 5.0, 4.0, 5.0]);
    assert_eq!(translate_batch(&x, 1, 1).data(), &[5.0, 6.0, 5.0, 8.0, 9.0, 8.0, 5.0, 6.0, 5.0]);
    assert_eq!(translate_batch(&x, 0, 1).data(), &[2.0, 3.0, 2.0, 5.0, 6.0, 5.0, 8.0, 9.0, 8.0]);
    assert_eq!(translate_batch(&x, 0, 0).data(), x.data());
}

#[test]
fn tta_translate_weighs_the_shifted_views_a_quarter_each() {
    let layers = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 3\n";
    let spec = Config::from_toml(&model_config("t", "[4, 4, 1]", layers), "t.toml").unwrap().model;
    let mut net = Network::build(&spec, 2).unwrap();
    let n = 5;
    let pixels: Vec<u8> = (0..n * 16).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let ds = Dataset::new(pixels, labels.clone(), 4, 4, 1, vec!["a".into(), "b".into(), "c".into()]).unwrap();
    let norm = Normalization { mean: vec![0.4], std: vec![0.3] };
    let (x, _) = make_batch(&ds, &(0..n).collect::<Vec<_>>(), &norm);
    let probs = |net: &mut Network, x: &Tensor| -> Vec<f64> {
        let logits = net.predict(x).unwrap();
        logits
            .data()
            .chunks(3)
            .flat_map(|z| {
                let s: f64 = z.iter().map(|&v| (v as f64).exp()).sum();
                z.iter().map(move |&v| (v as f64).exp() / s).collect::<Vec<_>>()
            })
            .collect()
    };
    let (p0, pa, pb) = (probs(&mut net, &x), probs(&mut net, &translate_batch(&x, -1, -1)), probs(&mut net, &translate_batch(&x, 1, 1)));
    let mixed: Vec<f64> = (0..n * 3).map(|i| 0.5 * p0[i] + 0.25 * pa[i] + 0.25 * pb[i]).collect();
    let want: f64 = -(0..n).map(|i| mixed[i * 3 + labels[i] as usize].ln()).sum::<f64>() / n as f64;
    let got = evaluate(&mut net, &ds, &norm, EvalOptions { batch_size: 2, tta_flip: false, tta_translate: 1 }).unwrap();
    assert!((f64::from(got.loss) - want).abs() < 1e-5 * want, "{} vs {want}", got.loss);
    let plain = evaluate(&mut net, &ds, &norm, EvalOptions { batch_size: 2, tta_flip: false, tta_translate: 0 }).unwrap();
    assert!((plain.loss - got.loss).abs() > 1e-4, "the shifted views count");
}

/// A tiny run with every ingredient of the recipe, on the quadrant data set (8x8x1).
fn recipe_config(data: &std::path::Path, epochs: usize) -> Config {
    let text = format!(
        r#"
name = "tiny-airbench"
input = [8, 8, 1]
init = {{ kind = "fan_in_uniform" }}
[data]
dataset = "mnist"
path = "{}"
validation = 16
[train]
batch_size = 32
epochs = {epochs}
seed = 4
label_smoothing = 0.2
tta_flip = true
tta_translate = 1
tta_final_only = true
[train.lookahead]
every = 2
from_epoch = 2
[augment]
crop_padding = 1
padding_mode = "reflect"
alternating_flip = true
[optimizer]
kind = "sgd"
lr = 0.2
momentum = 0.85
nesterov = true
weight_decay = 0.001
[schedule]
kind = "triangle"
[[param_groups]]
layers = "batch_norm"
params = ["beta"]
lr_scale = 8.0
weight_decay_scale = 0.125
decay = true
[[param_groups]]
layers = "0.conv2d"
params = ["bias"]
decay = true
train_epochs = 1
[[layers]]
type = "conv2d"
filters = 8
kernel = 2
padding = "valid"
whiten = true
[[layers]]
type = "gelu"
[[layers]]
type = "conv2d"
filters = 12
kernel = 3
dirac = true
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "batch_norm"
momentum = 0.6
eps = 1e-12
scale = false
[[layers]]
type = "gelu"
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 10
bias = false
[[layers]]
type = "scale"
factor = 0.5
"#,
        data.display()
    );
    Config::from_toml(&text, "tiny-airbench.toml").unwrap()
}

#[test]
fn a_tiny_recipe_run_learns_records_its_cost_and_resumes_bit_identically() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 240, 64, 2);
    let dir = tempfile::tempdir().unwrap();
    let epochs = 3;
    let cfg = recipe_config(data.path(), epochs);
    let reference = dir.path().join("reference");
    let report = train(&TrainOptions::new(cfg.clone(), &reference), &mut |_| Ok(())).unwrap();
    let test = report.final_test.as_ref().unwrap();
    // Mirroring swaps the left and right quadrants' classes, so flips cap the accuracy on
    // this data set near 1/2 (chance: 1/4); the mechanics are what is tested here.
    assert!(test.accuracy > 0.4, "test accuracy {}", test.accuracy);
    assert!(report.epochs[2].train_loss < report.epochs[0].train_loss, "{:?}", report.epochs);

    // summary.json: 3 x forward FLOPs x 224 training images x 3 epochs, 6 views at the end.
    let summary = report.summary.clone().unwrap();
    let net = Network::build(&cfg.model, 0).unwrap();
    assert_eq!(summary.forward_flops_per_example, net.flops());
    assert_eq!(summary.train_flops, 3.0 * net.flops() as f64 * 224.0 * 3.0);
    assert_eq!(summary.eval_flops, net.flops() as f64 * (3.0 * (16.0 + 64.0) + 64.0 * 6.0));
    assert_eq!((summary.final_test_views, summary.epochs, summary.final_test_accuracy), (6, 3, test.accuracy));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reference.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["train_flops"].as_f64(), Some(summary.train_flops));
    assert!(json["wall_seconds"].as_f64().unwrap() >= json["train_seconds"].as_f64().unwrap());
    // The final evaluation took the views; metrics.csv's last row did not.
    let per_epoch = report.epochs.last().unwrap();
    let last = Checkpoint::load(&reference.join("last.safetensors")).unwrap();
    let mut final_net = last.network().unwrap();
    let again = evaluate(&mut final_net, &test_set(data.path()), &last.meta.normalization, EvalOptions::for_run(&cfg.run)).unwrap();
    assert_eq!(again.loss.to_bits(), test.loss.to_bits());
    assert!((per_epoch.test_loss - test.loss).abs() > 1e-6, "six views against one");

    // The whitening weights are those of the first 224 (all) training images, never trained.
    let ck_weight = last.tensor("0.conv2d.weight").unwrap();
    let train_set = train_set(data.path());
    let first: Vec<usize> = (0..train_set.len()).collect();
    let (images, _) = make_batch(&train_set, &first, &last.meta.normalization);
    assert_eq!(ck_weight, whitening_weights(&patch_covariance(&images, 2, 2).unwrap(), 2, 2, 1, WHITENING_EPS));
    // The lookahead average is saved and equals the weights at the end (the net takes it).
    for p in final_net.params() {
        assert_eq!(last.tensor(&format!("lookahead.{}", p.name)).as_ref(), Some(&p.value), "{}", p.name);
    }

    // Same seed, same bits.
    let again = dir.path().join("again");
    train(&TrainOptions::new(cfg.clone(), &again), &mut |_| Ok(())).unwrap();
    assert_eq!(checkpoint_state(&again.join("last.safetensors")), checkpoint_state(&reference.join("last.safetensors")));
    assert_eq!(metrics_without_timing(&again), metrics_without_timing(&reference));

    // Stopped after epochs 1 and 2 (the whitening bias frozen from epoch 2, the average
    // started in it), each time resumed: the same bits as never stopped.
    let out = dir.path().join("stopped");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut biases = Vec::new();
    for (i, existing) in [ExistingRun::Refuse, ExistingRun::Resume, ExistingRun::Resume].into_iter().enumerate() {
        stop.store(false, std::sync::atomic::Ordering::SeqCst);
        let opts = TrainOptions { existing, stop: Some(stop.clone()), ..TrainOptions::new(cfg.clone(), &out) };
        let report = train(&opts, &mut |history| {
            stop.store(history.len() == i + 1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(report.stopped.is_some(), i < 2);
        let ck = Checkpoint::load(&out.join("last.safetensors")).unwrap();
        assert_eq!(ck.tensor("lookahead.0.conv2d.bias").is_some(), i >= 1, "the average starts in epoch 2");
        biases.push(ck.tensor("0.conv2d.bias").unwrap());
    }
    assert_eq!(biases[1], biases[2], "frozen after epoch 1");
    assert_ne!(biases[0], Tensor::zeros(&[8]), "trained in epoch 1");
    assert_eq!(checkpoint_state(&out.join("last.safetensors")), checkpoint_state(&reference.join("last.safetensors")));
    assert_eq!(metrics_without_timing(&out), metrics_without_timing(&reference));
}

/// The training split of the recipe's run (validation images set apart).
fn train_set(dir: &std::path::Path) -> Dataset {
    load_splits(&recipe_config(dir, 1), None).unwrap().train
}

fn test_set(dir: &std::path::Path) -> Dataset {
    load_splits(&recipe_config(dir, 1), None).unwrap().test
}

#[test]
fn a_param_group_that_matches_nothing_is_refused_before_training() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 40, 8, 2);
    let mut cfg = recipe_config(data.path(), 1);
    cfg.run.param_groups[0].layers = "batchnorm".into();
    let out = tempfile::tempdir().unwrap();
    let err = train(&TrainOptions::new(cfg, out.path()), &mut |_| Ok(())).err().unwrap().to_string();
    assert!(err.contains("group 1 (layers = \"batchnorm\"") && err.contains("matches no trainable parameter"), "{err}");
    assert!(!out.path().join("last.safetensors").exists());
}
