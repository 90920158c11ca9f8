//! The model as data: its name, input shape, initialiser and layer list, as a config file's
//! top-level `name`, `input`, `init` and `[[layers]]` hold them (the run's settings are
//! `train::RunConfig`; `crate::config::Config` is the whole file). A checkpoint carries it as
//! JSON. `ModelSpec::plan` (model/plan.rs) resolves and checks every shape; `validate` adds the
//! checks of the name.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops::lrn::LrnParams;
use crate::ops::{Padding, Window};

/// A network's architecture: everything needed to build it, nothing about how it is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Names the run folder `runs/<name>` too.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// One example's shape: [height, width, channels].
    pub input: [usize; 3],
    /// The initialiser of every layer that does not name its own.
    #[serde(default)]
    pub init: Init,
    pub layers: Vec<LayerConfig>,
}

impl ModelSpec {
    /// Every check of the model: its name (a folder name), then the shape walk with every value
    /// and size (see `plan`). Errors name the layer: "layer 5 (dense): shape mismatch: ...".
    pub fn validate(&self) -> Result<()> {
        self.check_name().map_err(|detail| Error::Config { file: self.name.clone(), detail })?;
        self.plan().map(|_| ())
    }

    /// The number of parameters the model has (weights, biases, batch-norm statistics: what
    /// `Network::num_params` counts), counted without building it; None where the model does
    /// not validate.
    pub fn param_count(&self) -> Option<u64> {
        self.plan().ok().map(|p| p.param_count)
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
    /// Uniform(-a, a), a = 1 / sqrt(fan_in): PyTorch's default for `Conv2d` and `Linear`
    /// (`kaiming_uniform_` with a = sqrt(5)).
    FanInUniform,
}

impl Init {
    /// A truncated normal needs a positive, finite standard deviation.
    pub(crate) fn check(self) -> std::result::Result<(), String> {
        match self {
            Init::TruncatedNormal { stddev } if !(stddev.is_finite() && stddev > 0.0) => {
                Err(format!("init stddev must be a positive number, got {stddev}"))
            }
            _ => Ok(()),
        }
    }
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
        /// Starts as the identity on the first input channels (PyTorch's `nn.init.dirac_` on
        /// the first `C_in` filters): filter o < C_in passes input channel o through (1 at the
        /// kernel's centre, `k / 2`), the other filters keep `init`. Left out of a saved spec
        /// when false.
        #[serde(default, skip_serializing_if = "is_false")]
        dirac: bool,
        /// A frozen patch-whitening layer (the fast CIFAR-10 recipe's first layer): its weights
        /// are computed from the training images when a run starts (`model::whitening`) and
        /// never trained; the bias trains as usual. Only the first layer, with
        /// `filters = 2 * kernel height * kernel width * input channels`. Left out of a saved
        /// spec when false.
        #[serde(default, skip_serializing_if = "is_false")]
        whiten: bool,
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
    /// GELU, exact (erf-based): x Phi(x).
    Gelu {},
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
        /// False: gamma stays 1 and is not learnt, only the shift beta is (Keras's
        /// `scale=False`; the fast CIFAR-10 recipe's frozen weight). Gamma is still saved, as
        /// ones, so checkpoints and exports keep their layout. Left out of a saved spec when
        /// true, so specs without it read and write as before.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        scale: bool,
    },
    /// Inverted dropout of a fraction `rate` of the values, in training only.
    Dropout {
        rate: f32,
    },
    /// `[H, W, C]` -> `[C]`: the mean of each channel.
    GlobalAvgPool {},
    /// y = factor x (a fixed logit scale, for instance).
    Scale {
        factor: f32,
    },
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
        /// False: y = x W, no bias parameter at all. Left out of a saved spec when true.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
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
            LayerConfig::Gelu {} => "gelu",
            LayerConfig::Lrn { .. } => "lrn",
            LayerConfig::Flatten {} => "flatten",
            LayerConfig::BatchNorm { .. } => "batch_norm",
            LayerConfig::Dropout { .. } => "dropout",
            LayerConfig::GlobalAvgPool {} => "global_avg_pool",
            LayerConfig::Scale { .. } => "scale",
            LayerConfig::Residual { .. } => "residual",
            LayerConfig::Dense { .. } => "dense",
        }
    }
}

/// The window of a pooling layer.
pub fn pool_window(layer: &str, size: Pair, stride: Option<Pair>, padding: &PaddingConfig) -> Result<Window> {
    let (kh, kw) = size.hw();
    let (sh, sw) = stride.unwrap_or(size).hw();
    Ok(Window::new(kh, kw, sh, sw, padding.resolve(layer)?))
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

impl LayerConfig {
    /// Each number of the layer within its limit (see [`MAX_SIDE`], [`MAX_UNITS`]) and each
    /// float finite and in range; the message names the key. The one place where a layer's
    /// values are checked: the rules of batch norm, dropout and LRN are their layers' own.
    /// Not recursive: the shape walk checks a residual block's layers as it reaches them.
    pub(crate) fn check_values(&self) -> std::result::Result<(), String> {
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
            LayerConfig::Conv2d { filters, kernel, stride, padding: p, l2: lambda, init, .. } => {
                init.map_or(Ok(()), Init::check)?;
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
                LrnParams { depth_radius: *depth_radius, bias: *bias, alpha: *alpha, beta: *beta }.check()
            }
            LayerConfig::Dense { units: u, l2: lambda, init, .. } => {
                init.map_or(Ok(()), Init::check)?;
                units("units", *u)?;
                l2(*lambda)
            }
            LayerConfig::BatchNorm { momentum, eps, .. } => crate::layers::batch_norm::check_settings(*momentum, *eps),
            LayerConfig::Dropout { rate } => crate::layers::dropout::check_rate(*rate),
            LayerConfig::Scale { factor } => crate::layers::scale::check_factor(*factor),
            LayerConfig::Residual { .. } => Ok(()),
            LayerConfig::Relu {}
            | LayerConfig::Sigmoid {}
            | LayerConfig::Tanh {}
            | LayerConfig::Gelu {}
            | LayerConfig::Flatten {}
            | LayerConfig::GlobalAvgPool {} => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, init: Init, layer_init: Option<Init>) -> ModelSpec {
        let layers = vec![LayerConfig::Flatten {}, LayerConfig::Dense { units: 2, l2: 0.0, init: layer_init, bias: true }];
        ModelSpec { name: name.into(), description: String::new(), input: [2, 2, 1], init, layers }
    }

    fn refusal(m: &ModelSpec) -> String {
        m.validate().err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn the_name_must_be_one_plain_folder_name() {
        for bad in ["", ".", "..", "a/b", "a\\b", "nul\0"] {
            assert!(refusal(&spec(bad, Init::He, None)).contains("must be a plain folder name"), "{bad:?}");
        }
        for good in ["tiny", "cifar10-resnet", ".hidden", "a..b"] {
            assert!(spec(good, Init::He, None).validate().is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_truncated_normal_needs_a_positive_finite_stddev_for_the_model_and_for_a_layer() {
        for stddev in [0.0, -0.05, f32::INFINITY, f32::NAN] {
            let bad = Init::TruncatedNormal { stddev };
            assert!(refusal(&spec("m", bad, None)).contains(&format!("init stddev must be a positive number, got {stddev}")), "{stddev}");
            let layer = refusal(&spec("m", Init::He, Some(bad)));
            assert!(layer.contains(&format!("layer 1 (dense): init stddev must be a positive number, got {stddev}")), "{layer}");
        }
        let tiny = Init::TruncatedNormal { stddev: 1e-9 };
        assert!(spec("m", tiny, Some(tiny)).validate().is_ok());
    }

    #[test]
    fn paddings_resolve_by_name_in_any_case_by_number_or_by_side() {
        let resolve = |p: PaddingConfig| p.resolve("layer 0 (conv2d)").map_err(|e| e.to_string());
        assert_eq!(resolve(PaddingConfig::Named("SAME".into())), Ok(Padding::Same));
        assert_eq!(resolve(PaddingConfig::Named("Valid".into())), Ok(Padding::Valid));
        assert_eq!(resolve(PaddingConfig::Symmetric(2)), Ok(Padding::symmetric(2)));
        assert_eq!(resolve(PaddingConfig::Sides([1, 2, 3, 4])), Ok(Padding::Explicit { top: 1, bottom: 2, left: 3, right: 4 }));
        let err = resolve(PaddingConfig::Named("full".into())).unwrap_err();
        assert!(err.contains("layer 0 (conv2d)") && err.contains("padding \"full\" is not one of"), "{err}");
    }

    #[test]
    fn lrn_defaults_are_tensorflows() {
        // tf.nn.lrn: depth_radius 5, bias 1, alpha 1, beta 0.5.
        let layer: LayerConfig = toml::from_str("type = \"lrn\"").unwrap();
        assert_eq!(layer, LayerConfig::Lrn { depth_radius: 5, bias: 1.0, alpha: 1.0, beta: 0.5 });
        let bn: LayerConfig = toml::from_str("type = \"batch_norm\"").unwrap();
        assert_eq!(bn, LayerConfig::BatchNorm { momentum: 0.1, eps: 1e-5, scale: true }, "PyTorch's");
    }

    #[test]
    fn sizes_may_reach_their_limits_and_not_pass_them() {
        let conv = |kernel: usize, filters: usize| LayerConfig::Conv2d {
            filters,
            kernel: Pair::Both(kernel),
            stride: Pair::Both(1),
            padding: PaddingConfig::Symmetric(MAX_SIDE),
            l2: 0.0,
            init: None,
            dirac: false,
            whiten: false,
        };
        assert_eq!(conv(MAX_SIDE, MAX_UNITS).check_values(), Ok(()));
        assert_eq!(conv(MAX_SIDE + 1, 1).check_values(), Err(format!("kernel {} is over the limit of {MAX_SIDE}", MAX_SIDE + 1)));
        assert_eq!(conv(1, MAX_UNITS + 1).check_values(), Err(format!("filters {} is over the limit of {MAX_UNITS}", MAX_UNITS + 1)));
        let dense = |units: usize| LayerConfig::Dense { units, l2: 0.0, init: None, bias: true };
        assert_eq!(dense(MAX_UNITS).check_values(), Ok(()));
        assert!(dense(MAX_UNITS + 1).check_values().is_err());
    }
}
