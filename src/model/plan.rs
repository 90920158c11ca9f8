//! The one shape walk: a model spec resolved layer by layer against its input before anything
//! is allocated. Each entry of the plan is one layer to build, with its input and output shape,
//! its window, whether a relu is folded into it, its label and the prefix of its parameters'
//! names. Validation, the builder, the summary and the checkpoint reader all read the plan, so
//! a shape is inferred, a relu folded, a value checked and a parameter named in one place.
//!
//! # Parameter names
//! One rule at every depth, from the indexes of the config file's lists:
//!
//! ```text
//! <config index>[.residual.<index in the block's layer list>]...<kind>.<param>
//! ```
//!
//! e.g. `0.conv2d.weight`, `4.residual.2.batch_norm.gamma`,
//! `4.residual.3.residual.0.conv2d.bias`. A block's projection shortcut (the 1x1 convolution
//! added when the body changes the shape) is `<block>.residual.shortcut.conv2d.<param>`. A relu
//! folded into the conv2d before it has no parameters, and its index is simply not used, so a
//! name can be read off the config file. `<param>` is `weight` and `bias` (conv2d, dense; a
//! dense layer with `bias = false` has no bias) or `gamma`, `beta`, `running_mean` and
//! `running_var` (batch_norm; the last two are saved state that the optimiser leaves alone, as
//! is gamma with `scale = false`). Checkpoints, exporters and other languages rely on this.

use super::spec::{pool_window, Init, LayerConfig, ModelSpec, MAX_PARAMS, MAX_SIDE, MAX_UNITS, MAX_VALUES};
use crate::error::{Error, Result};
use crate::layers::dims;
use crate::ops::activation::Activation;
use crate::ops::conv_shape::ConvShape;
use crate::ops::lrn::LrnParams;
use crate::ops::pool::pool_geometry;
use crate::ops::{Padding, Window};

/// A whole model, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub layers: Vec<LayerPlan>,
    /// One example's output: `[classes]`.
    pub output: Vec<usize>,
    /// Values of every parameter (weights, biases, batch-norm statistics).
    pub param_count: u64,
}

/// One layer to build.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPlan {
    /// The index of its entry in its config list (the block's list inside a residual block; a
    /// shortcut has its block's).
    pub index: usize,
    /// How messages, tables and pictures name it: "layer 3 (max_pool)", "layer 4.2 (conv2d +
    /// relu)" (a relu folded in), "layer 5 (residual) shortcut".
    pub label: String,
    /// What its parameters' names start with: "4.residual.2.conv2d." (see the module's rule).
    pub param_prefix: String,
    /// One example's input and output shapes.
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub op: PlannedOp,
}

/// A layer's settings, resolved: windows made, default initialisers applied.
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedOp {
    Conv2d(ConvPlan),
    MaxPool(Window),
    AvgPool(Window),
    Activation(Activation),
    /// GELU (its own op: its backward pass needs the input, not the output).
    Gelu,
    Lrn(LrnParams),
    Flatten,
    BatchNorm {
        momentum: f32,
        eps: f32,
        /// A relu that follows in the config, folded into this layer's pass.
        relu: bool,
        /// Whether gamma is learnt (false: it stays 1).
        learn_scale: bool,
    },
    Dropout {
        rate: f32,
    },
    GlobalAvgPool,
    /// y = factor x.
    Scale(f32),
    /// y = body(x) + shortcut(x): the shortcut is x itself, or a 1x1 convolution when the body
    /// changes the shape.
    Residual {
        body: Vec<LayerPlan>,
        shortcut: Option<Box<LayerPlan>>,
    },
    Dense {
        units: usize,
        l2: f32,
        init: Init,
        /// Whether it has a bias parameter.
        bias: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvPlan {
    pub window: Window,
    pub filters: usize,
    /// A relu that follows in the config, folded into this layer's pass.
    pub relu: bool,
    pub l2: f32,
    pub init: Init,
    /// Identity (Dirac) on the first input channels at the start (see `LayerConfig::Conv2d`).
    pub dirac: bool,
    /// Frozen weights computed from the training data (see `LayerConfig::Conv2d`).
    pub whiten: bool,
}

impl LayerPlan {
    /// The layer's type as configs write it.
    pub fn kind(&self) -> &'static str {
        match &self.op {
            PlannedOp::Conv2d(_) => "conv2d",
            PlannedOp::MaxPool(_) => "max_pool",
            PlannedOp::AvgPool(_) => "avg_pool",
            PlannedOp::Activation(a) => a.name(),
            PlannedOp::Gelu => "gelu",
            PlannedOp::Lrn(_) => "lrn",
            PlannedOp::Flatten => "flatten",
            PlannedOp::BatchNorm { .. } => "batch_norm",
            PlannedOp::Dropout { .. } => "dropout",
            PlannedOp::GlobalAvgPool => "global_avg_pool",
            PlannedOp::Scale(_) => "scale",
            PlannedOp::Residual { .. } => "residual",
            PlannedOp::Dense { .. } => "dense",
        }
    }
}

impl ModelSpec {
    /// Resolves every layer against its input, checking each value, shape and size on the way,
    /// so that a model that cannot be built, or would exhaust memory, is refused with a message
    /// that names the layer before anything is allocated.
    pub fn plan(&self) -> Result<Plan> {
        let model_error = |detail: String| Error::Config { file: self.name.clone(), detail };
        let [h, w, c] = self.input;
        if self.input.contains(&0) {
            return Err(model_error(format!("input {:?} must have no zero dimension", self.input)));
        }
        if h > MAX_SIDE || w > MAX_SIDE || c > MAX_UNITS {
            return Err(model_error(format!(
                "input {:?} is too large: height and width at most {MAX_SIDE}, channels at most {MAX_UNITS}",
                self.input
            )));
        }
        let values = shape_values(&self.input);
        if values > MAX_VALUES {
            return Err(model_error(format!("input {:?} has {values} values per example, over the limit of {MAX_VALUES}", self.input)));
        }
        if self.layers.is_empty() {
            return Err(model_error("the model has no layers".into()));
        }
        self.init.check().map_err(model_error)?;
        // Every value within its limit first: the shape arithmetic below relies on it.
        check_values(&self.layers, &Path::top()).map_err(model_error)?;
        let mut walk = Walk { default_init: self.init, model: &self.name, params: 0 };
        let (layers, output) = walk.list(&self.layers, &self.input, &Path::top())?;
        if output.len() != 1 {
            return Err(model_error(format!(
                "the last layer must output class scores [classes], got [{}] (end with flatten and dense)",
                dims(&output)
            )));
        }
        Ok(Plan { layers, output, param_count: walk.params })
    }
}

/// Where a layer list sits: the prefixes of its labels ("4." inside block 4) and of its
/// parameter names ("4.residual.").
struct Path {
    label: String,
    param: String,
}

impl Path {
    fn top() -> Path {
        Path { label: String::new(), param: String::new() }
    }

    /// The path of the body of the residual block at index `i`.
    fn block(&self, i: usize) -> Path {
        Path { label: format!("{}{i}.", self.label), param: format!("{}{i}.residual.", self.param) }
    }

    /// "layer 4.1 (conv2d)".
    fn label(&self, i: usize, kind: &str) -> String {
        format!("layer {}{i} ({kind})", self.label)
    }
}

/// Each layer's values (`LayerConfig::check_values`), blocks included; the message names the
/// layer.
fn check_values(layers: &[LayerConfig], path: &Path) -> std::result::Result<(), String> {
    for (i, layer) in layers.iter().enumerate() {
        layer.check_values().map_err(|detail| format!("{}: {detail}", path.label(i, layer.kind())))?;
        if let LayerConfig::Residual { layers } = layer {
            check_values(layers, &path.block(i))?;
        }
    }
    Ok(())
}

/// A whitening convolution sees the normalised images themselves (it is the model's first
/// layer) and has two filters per patch dimension: each whitened direction and its negative.
fn check_whitening(name: &str, path: &Path, i: usize, patch: usize, filters: usize, dirac: bool) -> Result<()> {
    if i != 0 || !path.param.is_empty() {
        return Err(Error::invalid(name, "whiten = true is only for the model's first layer (it whitens the input images' patches)"));
    }
    if filters != 2 * patch {
        return Err(Error::invalid(
            name,
            format!("whiten = true needs filters = 2 x kernel height x kernel width x input channels = {}, got {filters}", 2 * patch),
        ));
    }
    if dirac {
        return Err(Error::invalid(name, "whiten = true and dirac = true both set the weights: choose one"));
    }
    Ok(())
}

/// The walk's state: what it needs from the spec, and the parameters counted so far.
struct Walk<'a> {
    default_init: Init,
    model: &'a str,
    params: u64,
}

impl Walk<'_> {
    /// Plans `cfgs` on one example's shape `input`; returns the plans and the output shape.
    fn list(&mut self, cfgs: &[LayerConfig], input: &[usize], path: &Path) -> Result<(Vec<LayerPlan>, Vec<usize>)> {
        let mut shape = input.to_vec();
        let mut plans = Vec::new();
        let mut i = 0;
        while i < cfgs.len() {
            let cfg = &cfgs[i];
            let name = path.label(i, cfg.kind());
            // A relu that follows a convolution or a batch norm is folded into it: one pass over
            // memory less each way.
            let fold_relu = matches!(cfg, LayerConfig::Conv2d { .. } | LayerConfig::BatchNorm { .. })
                && matches!(cfgs.get(i + 1), Some(LayerConfig::Relu {}));
            let (op, output) = self.layer(cfg, &shape, &name, path, i, fold_relu)?;
            self.check_limits(&name, &output)?;
            let label = if fold_relu { path.label(i, &format!("{} + relu", cfg.kind())) } else { name };
            let param_prefix = format!("{}{i}.{}.", path.param, cfg.kind());
            plans.push(LayerPlan { index: i, label, param_prefix, input: shape, output: output.clone(), op });
            shape = output;
            i += if fold_relu { 2 } else { 1 };
        }
        Ok((plans, shape))
    }

    /// One layer's settings resolved against its input, and its output shape; its parameters
    /// are counted.
    fn layer(
        &mut self,
        cfg: &LayerConfig,
        shape: &[usize],
        name: &str,
        path: &Path,
        i: usize,
        relu: bool,
    ) -> Result<(PlannedOp, Vec<usize>)> {
        let image = || -> Result<[usize; 3]> {
            match shape[..] {
                [h, w, c] => Ok([h, w, c]),
                _ => Err(Error::shape(name, "an image input [H, W, C]", format!("[{}] (after a flatten or dense layer)", dims(shape)))),
            }
        };
        Ok(match cfg {
            LayerConfig::Conv2d { filters, kernel, stride, padding, l2, init, dirac, whiten } => {
                let [_, _, c_in] = image()?;
                let ((kh, kw), (sh, sw)) = (kernel.hw(), stride.hw());
                let window = Window::new(kh, kw, sh, sw, padding.resolve(name)?);
                if *filters == 0 {
                    return Err(Error::invalid(name, "filters must be at least 1"));
                }
                let output = conv_output(name, shape, &window, *filters)?;
                self.params = self.params.saturating_add(conv_params(kh, kw, c_in, *filters));
                if *whiten {
                    check_whitening(name, path, i, kh * kw * c_in, *filters, *dirac)?;
                }
                let init = init.unwrap_or(self.default_init);
                let conv = ConvPlan { window, filters: *filters, relu, l2: *l2, init, dirac: *dirac, whiten: *whiten };
                (PlannedOp::Conv2d(conv), output)
            }
            LayerConfig::MaxPool { size, stride, padding } | LayerConfig::AvgPool { size, stride, padding } => {
                let [h, w, c] = image()?;
                let window = pool_window(name, *size, *stride, padding)?;
                let max = matches!(cfg, LayerConfig::MaxPool { .. });
                let op = if max { "max_pool2d" } else { "avg_pool2d" };
                let (g, _, _) = pool_geometry(op, &[1, h, w, c], &window).map_err(|e| Error::invalid(name, e.to_string()))?;
                (if max { PlannedOp::MaxPool(window) } else { PlannedOp::AvgPool(window) }, vec![g.oh, g.ow, c])
            }
            LayerConfig::Relu {} => (PlannedOp::Activation(Activation::Relu), shape.to_vec()),
            LayerConfig::Sigmoid {} => (PlannedOp::Activation(Activation::Sigmoid), shape.to_vec()),
            LayerConfig::Tanh {} => (PlannedOp::Activation(Activation::Tanh), shape.to_vec()),
            LayerConfig::Gelu {} => (PlannedOp::Gelu, shape.to_vec()),
            LayerConfig::Scale { factor } => (PlannedOp::Scale(*factor), shape.to_vec()),
            LayerConfig::Lrn { depth_radius, bias, alpha, beta } => {
                image()?;
                (PlannedOp::Lrn(LrnParams { depth_radius: *depth_radius, bias: *bias, alpha: *alpha, beta: *beta }), shape.to_vec())
            }
            LayerConfig::Flatten {} => (PlannedOp::Flatten, vec![usize::try_from(shape_values(shape)).unwrap_or(usize::MAX)]),
            LayerConfig::BatchNorm { momentum, eps, scale } => {
                // gamma, beta, and the running mean and variance (stored with the weights).
                let c = shape.last().copied().unwrap_or(0) as u64;
                self.params = self.params.saturating_add(c.saturating_mul(4));
                (PlannedOp::BatchNorm { momentum: *momentum, eps: *eps, relu, learn_scale: *scale }, shape.to_vec())
            }
            LayerConfig::Dropout { rate } => (PlannedOp::Dropout { rate: *rate }, shape.to_vec()),
            LayerConfig::GlobalAvgPool {} => {
                let [_, _, c] = image()?;
                (PlannedOp::GlobalAvgPool, vec![c])
            }
            LayerConfig::Residual { layers } => {
                image()?;
                if layers.is_empty() {
                    return Err(Error::invalid(name, "a residual block needs at least one layer"));
                }
                let (body, output) = self.list(layers, shape, &path.block(i))?;
                let shortcut = if output == shape { None } else { Some(Box::new(self.shortcut(name, shape, &output, path, i)?)) };
                (PlannedOp::Residual { body, shortcut }, output)
            }
            LayerConfig::Dense { units, l2, init, bias } => {
                let [fin] = shape[..] else {
                    return Err(Error::shape(
                        name,
                        "a flat input [features] (add a flatten layer before it)",
                        format!("[{}]", dims(shape)),
                    ));
                };
                if *units == 0 {
                    return Err(Error::invalid(name, "units must be at least 1"));
                }
                let biases = if *bias { *units as u64 } else { 0 };
                self.params = self.params.saturating_add((fin as u64).saturating_mul(*units as u64).saturating_add(biases));
                (PlannedOp::Dense { units: *units, l2: *l2, init: init.unwrap_or(self.default_init), bias: *bias }, vec![*units])
            }
        })
    }

    /// The projection of residual block `i` (`name`): a 1x1 convolution with the stride that
    /// maps the block's input `shape` onto its body's `output`, with the model's initialiser and
    /// no L2.
    fn shortcut(&mut self, name: &str, shape: &[usize], output: &[usize], path: &Path, i: usize) -> Result<LayerPlan> {
        let [h, w, c] = shape[..] else { unreachable!("checked by the caller") };
        let [oh, ow, oc] = output[..] else {
            return Err(Error::shape(
                name,
                format!("the body to output an image like its input [{h}, {w}, {c}]"),
                format!("[{}]", dims(output)),
            ));
        };
        let window = Window::new(1, 1, h.div_ceil(oh.max(1)), w.div_ceil(ow.max(1)), Padding::Valid);
        let label = format!("{name} shortcut");
        let projected = conv_output(&label, shape, &window, oc)?;
        if projected != output {
            return Err(Error::shape(name, format!("the shortcut's shape {projected:?}"), format!("the body's output {output:?}")));
        }
        self.params = self.params.saturating_add(conv_params(1, 1, c, oc));
        let conv = ConvPlan { window, filters: oc, relu: false, l2: 0.0, init: self.default_init, dirac: false, whiten: false };
        let param_prefix = format!("{}{i}.residual.shortcut.conv2d.", path.param);
        Ok(LayerPlan { index: i, label, param_prefix, input: shape.to_vec(), output: projected, op: PlannedOp::Conv2d(conv) })
    }

    /// Refuses an output over [`MAX_VALUES`] values per example or a model over [`MAX_PARAMS`].
    fn check_limits(&self, name: &str, output: &[usize]) -> Result<()> {
        let error = |detail: String| Err(Error::Config { file: self.model.to_string(), detail });
        let values = shape_values(output);
        if values > MAX_VALUES {
            return error(format!("{name} outputs {output:?} = {values} values per example, over the limit of {MAX_VALUES}"));
        }
        if self.params > MAX_PARAMS {
            return error(format!("{name} brings the model to {} parameters, over the limit of {MAX_PARAMS}", self.params));
        }
        Ok(())
    }
}

/// One example's output shape of a convolution with `filters` filters over an image `input`.
fn conv_output(name: &str, input: &[usize], window: &Window, filters: usize) -> Result<Vec<usize>> {
    let [h, w, c] = input[..] else { unreachable!("checked to be an image by the caller") };
    let shape =
        ConvShape::of(&[1, h, w, c], &[window.kh, window.kw, c, filters], None, window).map_err(|e| Error::invalid(name, e.to_string()))?;
    Ok(shape.output_shape()[1..].to_vec())
}

fn conv_params(kh: usize, kw: usize, c_in: usize, filters: usize) -> u64 {
    (kh as u64).saturating_mul(kw as u64).saturating_mul(c_in as u64).saturating_mul(filters as u64).saturating_add(filters as u64)
}

/// The number of values of a shape, saturating.
fn shape_values(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of `input` that pools it globally into a dense layer of 2.
    fn flat(input: [usize; 3]) -> ModelSpec {
        let layers = vec![LayerConfig::GlobalAvgPool {}, LayerConfig::Dense { units: 2, l2: 0.0, init: None, bias: true }];
        ModelSpec { name: "m".into(), description: String::new(), input, init: Init::He, layers }
    }

    fn refusal(input: [usize; 3]) -> String {
        flat(input).plan().err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn the_input_limits_hold_at_their_bounds() {
        for ok in [[MAX_SIDE, 1, 1], [1, MAX_SIDE, 1], [1, 1, MAX_UNITS], [1 << 14, 1 << 14, 1]] {
            assert_eq!(flat(ok).plan().ok().map(|p| p.output), Some(vec![2]), "{ok:?} is within the limits");
        }
        for side in [[MAX_SIDE + 1, 1, 1], [1, MAX_SIDE + 1, 1], [1, 1, MAX_UNITS + 1]] {
            assert!(refusal(side).contains("is too large"), "{side:?}: {}", refusal(side));
        }
        // 2^28 values is the most an example may have.
        let over = [1 << 14, (1 << 14) + 1, 1];
        assert!(refusal(over).contains("values per example, over the limit of 268435456"), "{}", refusal(over));
        assert!(refusal([0, 1, 1]).contains("must have no zero dimension"));
    }

    #[test]
    fn a_layer_may_output_exactly_the_most_values_and_a_model_have_exactly_the_most_parameters() {
        let relu_first = |input: [usize; 3]| {
            let mut m = flat(input);
            m.layers.insert(0, LayerConfig::Relu {});
            m.plan().err().map(|e| e.to_string())
        };
        assert_eq!(relu_first([1 << 14, 1 << 14, 1]), None, "2^28 values at the relu's output");
        // 16383 inputs into 16384 units: 16383 * 16384 weights + 16384 biases = 2^28.
        let dense = |inputs: usize| {
            let mut m = flat([1, 1, inputs]);
            m.layers[1] = LayerConfig::Dense { units: 1 << 14, l2: 0.0, init: None, bias: true };
            m.plan().map(|p| p.param_count).map_err(|e| e.to_string())
        };
        assert_eq!(dense((1 << 14) - 1), Ok(MAX_PARAMS));
        let over = dense(1 << 14).unwrap_err();
        assert!(over.contains("layer 1 (dense) brings the model to 268451840 parameters, over the limit of 268435456"), "{over}");
    }
}
