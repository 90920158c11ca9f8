//! The model file format: a small TOML file that lists the layers in order with their
//! parameters, the initialiser, per-layer L2 lambdas, the optimiser and its schedule, batch size,
//! epochs and the data set. See `configs/` for examples.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::lrn::LrnParams;
use crate::ops::{Geometry, Padding, Window};
use crate::optim::{OptimizerConfig, ScheduleConfig};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// One example's shape: [height, width, channels].
    pub input: [usize; 3],
    /// The initialiser of every layer that does not name its own.
    #[serde(default)]
    pub init: Init,
    pub layers: Vec<LayerConfig>,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Where the data set lives; each kind has a default (see `DatasetKind::default_path`).
    #[serde(default)]
    pub path: Option<String>,
    /// Examples taken from the end of the training set for validation.
    #[serde(default)]
    pub validation: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// CIFAR-10, binary version.
    Cifar10,
    /// Fashion-MNIST, IDX files.
    FashionMnist,
    /// MNIST digits, IDX files.
    Mnist,
    /// One sub-folder per class of PNG/JPEG images, with a `test` and a `train` folder.
    ImageFolder,
}

impl DatasetKind {
    pub fn default_path(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "../shared/data/cifar-10-batches-bin",
            DatasetKind::FashionMnist => "/usr/share/datasets/fashion-mnist",
            DatasetKind::Mnist => "/usr/share/datasets/mnist",
            DatasetKind::ImageFolder => "data/images",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub epochs: usize,
    #[serde(default)]
    pub seed: u64,
    /// Label smoothing eps in [0, 1): targets (1 - eps) onehot + eps / classes.
    #[serde(default)]
    pub label_smoothing: f32,
    /// Evaluate on each image and its mirror image, averaging the probabilities.
    #[serde(default)]
    pub tta_flip: bool,
}

/// Data augmentation, applied on the fly to training batches only (never to validation or
/// test), from a seeded RNG.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random crop of the original size from the image padded by this many pixels (0: off).
    #[serde(default)]
    pub crop_padding: usize,
    /// How the crop pads: "zero" (black) or "reflect" (mirror the border).
    #[serde(default)]
    pub padding_mode: CropPadding,
    /// Mirror left-right with probability 1/2.
    #[serde(default)]
    pub flip: bool,
    /// Zero (after normalisation: set to the mean) a random square of this side (0: off).
    #[serde(default)]
    pub cutout: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropPadding {
    #[default]
    Zero,
    Reflect,
}

/// How a weight tensor starts. Biases always start at zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Init {
    /// Normal(0, stddev) redrawn outside two standard deviations (tf.truncated_normal).
    TruncatedNormal { stddev: f32 },
    /// Normal(0, sqrt(2 / fan_in)) (He et al., for ReLU networks). The default.
    #[default]
    He,
    /// Uniform(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio).
    Xavier,
}

/// A kernel size or stride: one number for both axes, or [height, width].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pair {
    Both(usize),
    HW([usize; 2]),
}

impl Pair {
    pub fn hw(self) -> (usize, usize) {
        match self {
            Pair::Both(v) => (v, v),
            Pair::HW([h, w]) => (h, w),
        }
    }
}

/// "same", "valid", one number for every side, or [top, bottom, left, right].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PaddingConfig {
    Named(String),
    Symmetric(usize),
    Sides([usize; 4]),
}

impl Default for PaddingConfig {
    fn default() -> Self {
        PaddingConfig::Named("valid".into())
    }
}

impl PaddingConfig {
    pub fn resolve(&self, layer: &str) -> Result<Padding> {
        match self {
            PaddingConfig::Named(s) if s.eq_ignore_ascii_case("same") => Ok(Padding::Same),
            PaddingConfig::Named(s) if s.eq_ignore_ascii_case("valid") => Ok(Padding::Valid),
            PaddingConfig::Named(s) => Err(Error::invalid(
                layer,
                format!("padding \"{s}\" is not one of \"same\", \"valid\", a number or [top, bottom, left, right]"),
            )),
            PaddingConfig::Symmetric(p) => Ok(Padding::symmetric(*p)),
            PaddingConfig::Sides([top, bottom, left, right]) => {
                Ok(Padding::Explicit { top: *top, bottom: *bottom, left: *left, right: *right })
            }
        }
    }
}

fn one() -> Pair {
    Pair::Both(1)
}
fn same() -> PaddingConfig {
    PaddingConfig::Named("same".into())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerConfig {
    Conv2d {
        filters: usize,
        kernel: Pair,
        #[serde(default = "one")]
        stride: Pair,
        #[serde(default = "same")]
        padding: PaddingConfig,
        /// L2 penalty lambda on the weights (tf.nn.l2_loss(W) * l2).
        #[serde(default)]
        l2: f32,
        #[serde(default)]
        init: Option<Init>,
    },
    MaxPool {
        size: Pair,
        /// Defaults to the size (non-overlapping windows).
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default)]
        padding: PaddingConfig,
    },
    AvgPool {
        size: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default)]
        padding: PaddingConfig,
    },
    Relu {},
    Sigmoid {},
    Tanh {},
    /// Defaults are TensorFlow's: depth_radius 5, bias 1, alpha 1, beta 0.5.
    Lrn {
        #[serde(default = "lrn_radius")]
        depth_radius: usize,
        #[serde(default = "lrn_one")]
        bias: f32,
        #[serde(default = "lrn_one")]
        alpha: f32,
        #[serde(default = "lrn_beta")]
        beta: f32,
    },
    Flatten {},
    /// Per-channel normalisation with learnt scale and shift (PyTorch's defaults).
    BatchNorm {
        #[serde(default = "bn_momentum")]
        momentum: f32,
        #[serde(default = "bn_eps")]
        eps: f32,
    },
    /// Inverted dropout of a fraction `rate` of the values, in training only.
    Dropout {
        rate: f32,
    },
    /// [H, W, C] -> [C]: the mean of each channel.
    GlobalAvgPool {},
    /// y = F(x) + x, F being the sub-list `layers`; a 1x1 convolution projects x when F changes
    /// the shape.
    Residual {
        layers: Vec<LayerConfig>,
    },
    Dense {
        units: usize,
        #[serde(default)]
        l2: f32,
        #[serde(default)]
        init: Option<Init>,
    },
}

fn bn_momentum() -> f32 {
    0.1
}
fn bn_eps() -> f32 {
    1e-5
}
fn lrn_radius() -> usize {
    5
}
fn lrn_one() -> f32 {
    1.0
}
fn lrn_beta() -> f32 {
    0.5
}

impl LayerConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            LayerConfig::Conv2d { .. } => "conv2d",
            LayerConfig::MaxPool { .. } => "max_pool",
            LayerConfig::AvgPool { .. } => "avg_pool",
            LayerConfig::Relu {} => "relu",
            LayerConfig::Sigmoid {} => "sigmoid",
            LayerConfig::Tanh {} => "tanh",
            LayerConfig::Lrn { .. } => "lrn",
            LayerConfig::Flatten {} => "flatten",
            LayerConfig::BatchNorm { .. } => "batch_norm",
            LayerConfig::Dropout { .. } => "dropout",
            LayerConfig::GlobalAvgPool {} => "global_avg_pool",
            LayerConfig::Residual { .. } => "residual",
            LayerConfig::Dense { .. } => "dense",
        }
    }

    pub fn lrn_params(&self) -> Option<LrnParams> {
        match *self {
            LayerConfig::Lrn { depth_radius, bias, alpha, beta } => Some(LrnParams { depth_radius, bias, alpha, beta }),
            _ => None,
        }
    }
}

/// The window of a pooling layer.
pub fn pool_window(layer: &str, size: Pair, stride: Option<Pair>, padding: &PaddingConfig) -> Result<Window> {
    let (kh, kw) = size.hw();
    let (sh, sw) = stride.unwrap_or(size).hw();
    Ok(Window::new(kh, kw, sh, sw, padding.resolve(layer)?))
}

impl ModelConfig {
    /// Parses a config from TOML text; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<ModelConfig> {
        let cfg: ModelConfig =
            toml::from_str(text).map_err(|e| Error::Config { file: file.into(), detail: describe_toml_error(text, &e) })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        ModelConfig::from_toml(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# could not serialise the config: {e}\n"))
    }

    /// Checks the values that serde cannot: positive sizes, a valid optimiser.
    pub fn validate(&self, file: &str) -> Result<()> {
        let err = |detail: String| Err(Error::Config { file: file.into(), detail });
        let eps = self.train.label_smoothing;
        if !(0.0..1.0).contains(&eps) {
            return err(format!("train.label_smoothing must be in [0, 1), got {eps}"));
        }
        if self.train.batch_size == 0 {
            return err("train.batch_size must be at least 1, got 0".into());
        }
        if self.input.contains(&0) {
            return err(format!("input {:?} must have no zero dimension", self.input));
        }
        if self.layers.is_empty() {
            return err("the model has no layers".into());
        }
        fn inits(layers: &[LayerConfig], out: &mut Vec<Init>) {
            for l in layers {
                match l {
                    LayerConfig::Conv2d { init: Some(i), .. } | LayerConfig::Dense { init: Some(i), .. } => out.push(*i),
                    LayerConfig::Residual { layers } => inits(layers, out),
                    _ => {}
                }
            }
        }
        let mut all = vec![self.init];
        inits(&self.layers, &mut all);
        for init in all {
            if let Init::TruncatedNormal { stddev } = init {
                if !(stddev.is_finite() && stddev > 0.0) {
                    return err(format!("init stddev must be a positive number, got {stddev}"));
                }
            }
        }
        self.optimizer.validate().or_else(|e| err(e.to_string()))?;
        self.schedule.validate().or_else(|e| err(e.to_string()))?;
        self.check_name().or_else(err)?;
        self.check_sizes().map_err(|detail| Error::Config { file: file.into(), detail })?;
        Ok(())
    }

    /// The name becomes the run folder `runs/<name>`, so it must be one plain folder name.
    fn check_name(&self) -> std::result::Result<(), String> {
        let n = &self.name;
        if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\\', '\0']) {
            return Err(format!(
                "name {n:?} must be a plain folder name (it names the run folder runs/<name>): not empty, \
                 no '/' or '\\', not \".\" or \"..\""
            ));
        }
        Ok(())
    }

    /// Checks every size in the config against the limits above, then walks the layers' shapes
    /// (as `Network::build` will) counting parameters and per-example values, so that a config
    /// asking for an absurd model is refused with a message instead of exhausting memory or
    /// overflowing arithmetic. Where a shape does not fit, the walk stops: `Network::build`
    /// reports that with the layer and both shapes.
    /// Returns the parameter count when the walk reaches the end.
    fn check_sizes(&self) -> std::result::Result<Option<u64>, String> {
        let [h, w, c] = self.input;
        if h > MAX_SIDE || w > MAX_SIDE || c > MAX_UNITS {
            return Err(format!("input {:?} is too large: height and width at most {MAX_SIDE}, channels at most {MAX_UNITS}", self.input));
        }
        if self.train.batch_size > MAX_BATCH {
            return Err(format!("train.batch_size {} is over the limit of {MAX_BATCH}", self.train.batch_size));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            layer.check_values().map_err(|detail| format!("{}: {detail}", layer_label(i, layer)))?;
        }

        let values = shape_values(&self.input);
        if values > MAX_VALUES {
            return Err(format!("input {:?} has {values} values per example, over the limit of {MAX_VALUES}", self.input));
        }
        let mut params: u64 = 0;
        Ok(walk_sizes(&self.layers, self.input.to_vec(), "", &mut params)?.map(|_| params))
    }

    /// The number of parameters the config asks for (weights, biases, batch-norm statistics:
    /// what `Network::num_params` counts), counted without building the network; None where a
    /// size is over a limit or a shape does not fit (see `Network::build`).
    pub fn estimated_params(&self) -> Option<u64> {
        self.check_sizes().ok().flatten()
    }
}

/// Largest input side, kernel, stride, pool size, padding or LRN radius a config may give.
pub const MAX_SIDE: usize = 1 << 16;
/// Most filters, dense units or input channels.
pub const MAX_UNITS: usize = 1 << 20;
/// Most values one example may have at the input or at any layer's output (1 GiB of f32).
pub const MAX_VALUES: u64 = 1 << 28;
/// Most trainable parameters (1 GiB of f32; gradients and optimiser state take as much again
/// two or three times).
pub const MAX_PARAMS: u64 = 1 << 28;
/// Largest batch size.
pub const MAX_BATCH: usize = 1 << 20;

/// "layer 3 (max_pool)", as `Network::build` names layers ("layer 4.1 (conv2d)" in a block).
fn layer_label(i: impl std::fmt::Display, layer: &LayerConfig) -> String {
    format!("layer {i} ({})", layer.kind())
}

/// The number of values of a shape, saturating.
fn shape_values(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

/// Walks `layers` from per-example shape `shape` as `build_layers` will, adding their
/// parameters to `params` and checking every output against [`MAX_VALUES`] and the running
/// count against [`MAX_PARAMS`]. Returns the output shape, or None where a shape does not fit
/// (the builder reports that, with both shapes). Residual blocks are walked recursively, with
/// the 1x1 projection the builder adds when the body changes the shape. `path` prefixes the
/// layer numbers ("4." inside block 4). Expects the values checked by `check_values`, so that
/// no sum or product below can overflow.
fn walk_sizes(
    layers: &[LayerConfig],
    mut shape: Vec<usize>,
    path: &str,
    params: &mut u64,
) -> std::result::Result<Option<Vec<usize>>, String> {
    let conv_params = |kh: usize, kw: usize, c_in: usize, filters: usize| {
        (kh as u64).saturating_mul(kw as u64).saturating_mul(c_in as u64).saturating_mul(filters as u64).saturating_add(filters as u64)
    };
    for (i, layer) in layers.iter().enumerate() {
        let geometry = |window: Window| match shape[..] {
            [h, w, _] => Geometry::new("", h, w, &window).ok(),
            _ => None,
        };
        match layer {
            LayerConfig::Conv2d { filters, kernel, stride, padding, .. } => {
                let (kh, kw) = kernel.hw();
                let (sh, sw) = stride.hw();
                let Ok(padding) = padding.resolve("") else { return Ok(None) };
                let Some(g) = geometry(Window::new(kh, kw, sh, sw, padding)) else { return Ok(None) };
                *params = params.saturating_add(conv_params(kh, kw, shape[2], *filters));
                shape = vec![g.oh, g.ow, *filters];
            }
            LayerConfig::MaxPool { size, stride, padding } | LayerConfig::AvgPool { size, stride, padding } => {
                let Ok(window) = pool_window("", *size, *stride, padding) else { return Ok(None) };
                let Some(g) = geometry(window) else { return Ok(None) };
                shape = vec![g.oh, g.ow, shape[2]];
            }
            LayerConfig::Relu {}
            | LayerConfig::Sigmoid {}
            | LayerConfig::Tanh {}
            | LayerConfig::Lrn { .. }
            | LayerConfig::Dropout { .. } => {}
            LayerConfig::BatchNorm { .. } => {
                // gamma, beta, and the running mean and variance (stored with the weights).
                let c = shape.last().copied().unwrap_or(0) as u64;
                *params = params.saturating_add(c.saturating_mul(4));
            }
            LayerConfig::GlobalAvgPool {} => {
                let [_, _, c] = shape[..] else { return Ok(None) };
                shape = vec![c];
            }
            LayerConfig::Residual { layers: body } => {
                let [_, _, c] = shape[..] else { return Ok(None) };
                let Some(out) = walk_sizes(body, shape.clone(), &format!("{path}{i}."), params)? else { return Ok(None) };
                if out != shape {
                    // The projection of the shortcut: a 1x1 convolution from c to the body's
                    // channels (whether its stride fits is the builder's to check).
                    let [_, _, oc] = out[..] else { return Ok(None) };
                    *params = params.saturating_add(conv_params(1, 1, c, oc));
                }
                shape = out;
            }
            LayerConfig::Flatten {} => {
                shape = vec![usize::try_from(shape_values(&shape)).unwrap_or(usize::MAX)];
            }
            LayerConfig::Dense { units, .. } => {
                let [fin] = shape[..] else { return Ok(None) };
                *params = params.saturating_add((fin as u64).saturating_mul(*units as u64).saturating_add(*units as u64));
                shape = vec![*units];
            }
        }
        let label = layer_label(format!("{path}{i}"), layer);
        let values = shape_values(&shape);
        if values > MAX_VALUES {
            return Err(format!("{label} outputs {shape:?} = {values} values per example, over the limit of {MAX_VALUES}"));
        }
        if *params > MAX_PARAMS {
            return Err(format!("{label} brings the model to {params} parameters, over the limit of {MAX_PARAMS}"));
        }
    }
    Ok(Some(shape))
}

impl LayerConfig {
    /// Each number of the layer within its limit (see [`MAX_SIDE`], [`MAX_UNITS`]) and each
    /// float finite and in range; the message names the key.
    fn check_values(&self) -> std::result::Result<(), String> {
        let side = |key: &str, v: usize| {
            if v > MAX_SIDE {
                Err(format!("{key} {v} is over the limit of {MAX_SIDE}"))
            } else {
                Ok(())
            }
        };
        let pair = |key: &str, p: Pair| {
            let (a, b) = p.hw();
            side(key, a.max(b))
        };
        let padding = |p: &PaddingConfig| match p {
            PaddingConfig::Named(_) => Ok(()),
            PaddingConfig::Symmetric(v) => side("padding", *v),
            PaddingConfig::Sides(v) => side("padding", v.iter().copied().max().unwrap_or(0)),
        };
        let l2 = |v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("l2 must be a non-negative number, got {v}"))
            }
        };
        let units = |key: &str, v: usize| {
            if v > MAX_UNITS {
                Err(format!("{key} {v} is over the limit of {MAX_UNITS}"))
            } else {
                Ok(())
            }
        };
        match self {
            LayerConfig::Conv2d { filters, kernel, stride, padding: p, l2: lambda, .. } => {
                units("filters", *filters)?;
                pair("kernel", *kernel)?;
                pair("stride", *stride)?;
                padding(p)?;
                l2(*lambda)
            }
            LayerConfig::MaxPool { size, stride, padding: p } | LayerConfig::AvgPool { size, stride, padding: p } => {
                pair("size", *size)?;
                if let Some(s) = stride {
                    pair("stride", *s)?;
                }
                padding(p)
            }
            LayerConfig::Lrn { depth_radius, bias, alpha, beta } => {
                side("depth_radius", *depth_radius)?;
                for (key, v) in [("bias", bias), ("alpha", alpha), ("beta", beta)] {
                    if !v.is_finite() {
                        return Err(format!("{key} must be a finite number, got {v}"));
                    }
                }
                Ok(())
            }
            LayerConfig::Dense { units: u, l2: lambda, .. } => {
                units("units", *u)?;
                l2(*lambda)
            }
            LayerConfig::BatchNorm { momentum, eps } => {
                if (0.0..=1.0).contains(momentum) && eps.is_finite() && *eps > 0.0 {
                    Ok(())
                } else {
                    Err(format!("momentum must be in [0, 1] and eps a positive number, got {momentum} and {eps}"))
                }
            }
            LayerConfig::Dropout { rate } => {
                if (0.0..1.0).contains(rate) {
                    Ok(())
                } else {
                    Err(format!("rate must be in [0, 1), got {rate}"))
                }
            }
            LayerConfig::Residual { layers } => layers.iter().try_for_each(|l| l.check_values()),
            LayerConfig::Relu {}
            | LayerConfig::Sigmoid {}
            | LayerConfig::Tanh {}
            | LayerConfig::Flatten {}
            | LayerConfig::GlobalAvgPool {} => Ok(()),
        }
    }
}

/// A TOML or serde error on one line: "line 29: unknown field `filtrs`, expected one of
/// `filters`, ... (did you mean `filters`?)". toml's own text spans several lines (a snippet
/// with a caret), which does not fit a one-line error; an unknown key inside `[[layers]]` is
/// reported by toml at the table's header, so the line of the key itself is looked up.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    let hint = suggestion(&message).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
    let line = e.span().map(|span| {
        let start = span.start.min(text.len());
        let mut line = text.get(..start).map_or(0, |t| t.matches('\n').count()) + 1;
        if let Some(key) = message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
            // The first line from the span on that assigns the key.
            let found = text
                .lines()
                .enumerate()
                .skip(line - 1)
                .find(|(_, l)| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')));
            if let Some((i, _)) = found {
                line = i + 1;
            }
        }
        line
    });
    match line {
        Some(line) => format!("line {line}: {message}{hint}"),
        None => format!("{message}{hint}"),
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), the
/// expected name nearest to `x` by edit distance, if it is close enough to be a typo.
fn suggestion(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1).or_else(|| message.split("unknown variant `").nth(1))?;
    let (wrong, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let names = expected.split('`').skip(1).step_by(2);
    let (dist, best) = names.map(|n| (edit_distance(wrong, n), n)).min()?;
    (dist <= wrong.len().max(2) / 2 + 1).then(|| best.to_string())
}

/// Levenshtein distance between two short names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
