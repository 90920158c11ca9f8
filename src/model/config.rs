//! The model file format: a small TOML file that lists the layers in order with their
//! parameters, the initialiser, per-layer L2 lambdas, the optimiser and its schedule, batch size,
//! epochs and the data set. See `configs/` for examples.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::lrn::LrnParams;
use crate::ops::{Padding, Window};
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
            PaddingConfig::Named(s) => {
                Err(Error::invalid(layer, format!("padding \"{s}\" is not one of \"same\", \"valid\", a number or [top, bottom, left, right]")))
            }
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
    Dense {
        units: usize,
        #[serde(default)]
        l2: f32,
        #[serde(default)]
        init: Option<Init>,
    },
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
        let cfg: ModelConfig = toml::from_str(text).map_err(|e| {
            let detail = e.to_string().trim_end().to_string();
            let hint = suggestion(&detail).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
            Error::Config { file: file.into(), detail: detail + &hint }
        })?;
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
        if self.train.batch_size == 0 {
            return err("train.batch_size must be at least 1, got 0".into());
        }
        if self.input.contains(&0) {
            return err(format!("input {:?} must have no zero dimension", self.input));
        }
        if self.layers.is_empty() {
            return err("the model has no layers".into());
        }
        let layer_inits = self.layers.iter().filter_map(|l| match l {
            LayerConfig::Conv2d { init, .. } | LayerConfig::Dense { init, .. } => *init,
            _ => None,
        });
        for init in std::iter::once(self.init).chain(layer_inits) {
            if let Init::TruncatedNormal { stddev } = init {
                if !(stddev.is_finite() && stddev > 0.0) {
                    return err(format!("init stddev must be a positive number, got {stddev}"));
                }
            }
        }
        self.optimizer.validate().or_else(|e| err(e.to_string()))?;
        self.schedule.validate().or_else(|e| err(e.to_string()))?;
        Ok(())
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
