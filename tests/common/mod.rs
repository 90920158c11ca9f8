//! Shared test helpers: seeded random tensors, a finite-difference gradient checker, and a
//! relative comparison of two tensors.
#![allow(dead_code)]

use convnet::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut r = rng(seed);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| r.gen_range(-1.0..1.0)).collect()).unwrap()
}

/// Values that are all at least 0.05 apart (a shuffled ramp), so that a max never changes its
/// winner under a small perturbation.
pub fn distinct(shape: &[usize], seed: u64) -> Tensor {
    use rand::seq::SliceRandom;
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    v.shuffle(&mut rng(seed));
    Tensor::from_vec(shape, v).unwrap()
}

/// max |a - b| / max(|b|, 1e-6) over the tensors: the relative error of `a` against `b`.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    rel_err_of(a.data(), b.data())
}

/// [`rel_err`] of two slices of the same length.
pub fn rel_err_of(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f32::max).max(1e-6);
    diff / scale
}

pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    let e = rel_err(a, b);
    assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
}

/// Checks `analytic` = d/dx of L(x) = sum(f(x) * r) against central differences, where `r` is
/// a fixed random weighting (so every output contributes). Every coordinate of x is checked.
/// A coordinate passes when |analytic - numeric| <= tol * max(|analytic|, |numeric|, 1).
pub fn check_gradient(name: &str, x: &Tensor, r: &Tensor, eps: f32, tol: f32, analytic: &Tensor, f: impl Fn(&Tensor) -> Tensor) {
    let loss = |t: &Tensor| -> f64 { f(t).data().iter().zip(r.data()).map(|(&y, &w)| y as f64 * w as f64).sum() };
    assert_eq!(analytic.shape(), x.shape(), "{name}: gradient shape");
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        let mut plus = x.clone();
        plus.data_mut()[i] += eps;
        let mut minus = x.clone();
        minus.data_mut()[i] -= eps;
        let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
        let a = analytic.data()[i] as f64;
        let err = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1.0);
        worst = worst.max(err);
        assert!(err <= tol as f64, "{name}: d/dx[{i}] analytic {a} vs numeric {numeric} (error {err:e})");
    }
    eprintln!("{name}: worst gradient error {worst:.2e}");
}

/// A small learnable data set written as IDX files (MNIST layout) into `dir`: 8x8 grayscale
/// images of 4 classes, class k having a bright 4x4 quadrant k over noise. Returns the paths'
/// folder. `n_train` / `n_test` images.
pub fn write_quadrant_idx(dir: &std::path::Path, n_train: usize, n_test: usize, seed: u64) {
    let mut r = rng(seed);
    let mut make = |n: usize| {
        let mut images = Vec::with_capacity(n * 64);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let k = i % 4;
            for row in 0..8 {
                for col in 0..8 {
                    let quadrant = (row / 4) * 2 + col / 4;
                    let base: u8 = if quadrant == k { 180 } else { 40 };
                    images.push(base.saturating_add(r.gen_range(0..60)));
                }
            }
            labels.push(k as u8);
        }
        (images, labels)
    };
    let (ti, tl) = make(n_train);
    let (vi, vl) = make(n_test);
    use convnet::data::write_idx;
    write_idx(dir.join("train-images-idx3-ubyte"), &[n_train, 8, 8], &ti, false).unwrap();
    write_idx(dir.join("train-labels-idx1-ubyte"), &[n_train], &tl, false).unwrap();
    write_idx(dir.join("t10k-images-idx3-ubyte.gz"), &[n_test, 8, 8], &vi, true).unwrap();
    write_idx(dir.join("t10k-labels-idx1-ubyte.gz"), &[n_test], &vl, true).unwrap();
}

/// A tiny model config for the quadrant data set in `dir` (MNIST layout, 4 classes... the
/// MNIST reader names 10 classes, so the model outputs 10 scores).
/// A config of the given model (name, input shape, `[[layers]]` TOML) with the smallest run
/// that validates: for tests that build a network and never train it.
pub fn model_config(name: &str, input: &str, layers: &str) -> String {
    format!("name = \"{name}\"\ninput = {input}\n[data]\ndataset = \"mnist\"\n[train]\nbatch_size = 4\nepochs = 1\n[optimizer]\nkind = \"sgd\"\nlr = 0.1\n{layers}")
}

pub fn tiny_config(dir: &std::path::Path, epochs: usize, optimizer: &str) -> String {
    format!(
        r#"
name = "tiny"
input = [8, 8, 1]
[data]
dataset = "mnist"
path = "{}"
validation = 16
[train]
batch_size = 8
epochs = {epochs}
seed = 3
[optimizer]
{optimizer}
[[layers]]
type = "conv2d"
filters = 4
kernel = 3
padding = "same"
l2 = 0.001
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "lrn"
depth_radius = 1
alpha = 0.01
beta = 0.75
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 10
"#,
        dir.display()
    )
}

/// The JSON header of a safetensors file, and where its data starts.
pub fn header(bytes: &[u8]) -> (serde_json::Value, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), 8 + n)
}

/// `bytes` with the header replaced by `value`.
pub fn with_header(bytes: &[u8], value: &serde_json::Value) -> Vec<u8> {
    let (_, start) = header(bytes);
    let text = serde_json::to_vec(value).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend_from_slice(&bytes[start..]);
    out
}

/// Parameters (batch norm's running statistics included) and optimiser state of a checkpoint.
pub fn checkpoint_state(path: &std::path::Path) -> (Vec<Tensor>, Vec<(String, Vec<f32>)>) {
    let ck = convnet::train::Checkpoint::load(path).unwrap();
    let net = ck.network().unwrap();
    (net.params().iter().map(|p| p.value.clone()).collect(), ck.optimizer_state())
}

/// A run folder's metrics.csv without the two timing columns (seconds, images/s), which differ
/// between two runs of the same training.
pub fn metrics_without_timing(out: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().map(|l| l.split(',').take(8).collect::<Vec<_>>().join(",")).collect()
}

/// Every parameter drawn at random (so that biases, batch-norm shifts and running statistics
/// all matter), the running variances positive.
pub fn randomize(net: &mut convnet::model::Network, seed: u64) {
    let mut r = rng(seed);
    for p in net.params_mut() {
        let positive = p.name.ends_with("running_var");
        for v in p.value.data_mut() {
            *v = if positive { r.gen_range(0.5..1.5) } else { r.gen_range(-0.5..0.5) };
        }
    }
}

/// A checkpoint of `config_text`'s model with random weights and normalisation, in `dir`.
pub fn random_checkpoint(dir: &std::path::Path, config_text: &str, seed: u64) -> std::path::PathBuf {
    let cfg = convnet::Config::from_toml(config_text, "test.toml").unwrap();
    let mut net = convnet::model::Network::build(&cfg.model, seed).unwrap();
    randomize(&mut net, seed);
    let c = cfg.model.input[2];
    let mut r = rng(seed + 1);
    let normalization = convnet::data::Normalization {
        mean: (0..c).map(|_| r.gen_range(0.2..0.6)).collect(),
        std: (0..c).map(|_| r.gen_range(0.2..0.4)).collect(),
    };
    let meta = convnet::train::CheckpointMeta {
        class_names: (0..net.num_classes()).map(|i| format!("class {i}")).collect(),
        normalization,
        epoch: 1,
        optimizer_step: 1,
        seed,
        best_val_accuracy: 0.5,
    };
    let path = dir.join(format!("{}.safetensors", cfg.model.name));
    convnet::train::save_checkpoint(&path, &net, &cfg.run, None, &meta).unwrap();
    path
}

/// Small networks for the export and import tests (name, input, layers): every layer type,
/// SAME, VALID and explicit padding, odd sizes and strides, nested residual blocks with and
/// without a projection, a flatten before a dense layer and one before a batch norm.
pub const INTEROP_NETWORKS: [(&str, &str, &str); 3] = [
    (
        "plain",
        "[13, 11, 3]",
        r#"
[[layers]]
type = "conv2d"
filters = 5
kernel = 3
stride = 2
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
size = 3
stride = 2
padding = "same"
[[layers]]
type = "lrn"
depth_radius = 2
alpha = 0.1
beta = 0.75
[[layers]]
type = "conv2d"
filters = 4
kernel = [2, 3]
padding = [1, 0, 2, 1]
[[layers]]
type = "sigmoid"
[[layers]]
type = "avg_pool"
size = 2
stride = 1
padding = "same"
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.5
[[layers]]
type = "dense"
units = 7
[[layers]]
type = "tanh"
[[layers]]
type = "dense"
units = 3
[[layers]]
type = "scale"
factor = 0.125
"#,
    ),
    (
        "resnet",
        "[9, 10, 2]",
        r#"
[[layers]]
type = "conv2d"
filters = 6
kernel = 3
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 6, kernel = 3 },
  { type = "batch_norm" },
  { type = "relu" },
  { type = "residual", layers = [{ type = "conv2d", filters = 6, kernel = 1, padding = "valid" }] },
]
[[layers]]
type = "gelu"
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 8, kernel = 3, stride = 2 },
  { type = "gelu" },
  { type = "batch_norm", eps = 0.001 },
]
[[layers]]
type = "global_avg_pool"
[[layers]]
type = "dense"
units = 4
bias = false
"#,
    ),
    (
        "padded",
        "[7, 8, 2]",
        r#"
[[layers]]
type = "conv2d"
filters = 3
kernel = 3
padding = [1, 2, 0, 1]
[[layers]]
type = "avg_pool"
size = 3
stride = 2
padding = [1, 1, 1, 0]
[[layers]]
type = "max_pool"
size = 2
stride = [1, 2]
padding = [0, 1, 1, 0]
[[layers]]
type = "flatten"
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "dense"
units = 5
"#,
    ),
];

/// u8 NHWC images as f32 NCHW in [0, 1]: what exported models take.
pub fn nchw_unit(pixels: &[u8], n: usize, [h, w, c]: [usize; 3]) -> Vec<f32> {
    let mut nchw = vec![0f32; pixels.len()];
    for img in 0..n {
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    nchw[((img * c + k) * h + y) * w + x] = f32::from(pixels[((img * h + y) * w + x) * c + k]) / 255.0;
                }
            }
        }
    }
    nchw
}

/// The reference for a `Sequential`'s training step: `layers` run one by one, each keeping all
/// its buffers, forward in training mode on `x`, then backward from `dy` (every input gradient
/// computed).
pub fn train_one_by_one(layers: &mut [Box<dyn convnet::layers::Layer>], x: &Tensor, dy: &Tensor) {
    use convnet::layers::Mode;
    for i in 0..layers.len() {
        let (before, rest) = layers.split_at_mut(i);
        rest[0].forward(before.last().map_or(x, |l| l.output()), Mode::Train).unwrap();
    }
    for i in (0..layers.len()).rev() {
        let (before, rest) = layers.split_at_mut(i);
        let (current, after) = rest.split_at_mut(1);
        let d_output = after.first().map_or(dy, |l| l.input_grad());
        current[0].backward(before.last().map_or(x, |l| l.output()), d_output, true).unwrap();
    }
}
