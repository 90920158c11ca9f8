//! From a list of layer configs to layers, inferring each layer's input shape from the one
//! before and checking it: a mismatch names the layer and both shapes, before any data is read.
//! Residual blocks build their sub-list the same way (recursively).

use rand_chacha::ChaCha8Rng;

use super::config::{pool_window, Init, LayerConfig};
use super::init::init_weight;
use crate::error::{Error, Result};
use crate::layers::{
    dims, ActivationLayer, AvgPoolLayer, BatchNormLayer, Conv2dLayer, DenseLayer, DropoutLayer, FlattenLayer, GlobalAvgPoolLayer, Layer,
    LrnLayer, MaxPoolLayer, Param, ResidualLayer,
};
use crate::ops::activation::Activation;
use crate::ops::{Padding, Window};
use crate::tensor::Tensor;

/// A layer's name in messages: "layer 3 (conv2d)", or "layer 4.1 (conv2d)" inside a block.
pub fn layer_name(index: impl std::fmt::Display, kind: &str) -> String {
    format!("layer {index} ({kind})")
}

pub struct Built {
    pub layers: Vec<Box<dyn Layer>>,
    /// For each built layer, the index of its config entry (a relu folded into the conv before
    /// it has no layer of its own).
    pub config_index: Vec<usize>,
    /// The output shape of the last layer.
    pub output: Vec<usize>,
}

/// Builds `cfgs` on per-example input shape `input`. `path` prefixes layer numbers in messages
/// ("" at the top, "4." inside block 4).
pub fn build_layers(cfgs: &[LayerConfig], input: &[usize], path: &str, default_init: Init, rng: &mut ChaCha8Rng) -> Result<Built> {
    let mut shape = input.to_vec();
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    let mut config_index = Vec::new();
    let mut i = 0;
    while i < cfgs.len() {
        let name = layer_name(format!("{path}{i}"), cfgs[i].kind());
        let spatial = || -> Result<(usize, usize, usize)> {
            match shape[..] {
                [h, w, c] => Ok((h, w, c)),
                _ => Err(Error::shape(&name, "an image input [H, W, C]", format!("[{}] (after a flatten or dense layer)", dims(&shape)))),
            }
        };
        // Fold a relu that follows a convolution into it: one pass over memory less.
        let fold_relu = matches!(cfgs[i], LayerConfig::Conv2d { .. }) && matches!(cfgs.get(i + 1), Some(LayerConfig::Relu {}));
        let layer: Box<dyn Layer> = match &cfgs[i] {
            LayerConfig::Conv2d { filters, kernel, stride, padding, l2, init } => {
                let (_, _, c_in) = spatial()?;
                let (kh, kw) = kernel.hw();
                let (sh, sw) = stride.hw();
                let window = Window::new(kh, kw, sh, sw, padding.resolve(&name)?);
                let mut conv = conv_layer(&name, &shape, c_in, *filters, window, *l2, init.unwrap_or(default_init), rng)?;
                conv.relu = fold_relu;
                Box::new(conv)
            }
            LayerConfig::MaxPool { size, stride, padding } => {
                spatial()?;
                Box::new(MaxPoolLayer::new(name.clone(), &shape, pool_window(&name, *size, *stride, padding)?)?)
            }
            LayerConfig::AvgPool { size, stride, padding } => {
                spatial()?;
                Box::new(AvgPoolLayer::new(name.clone(), &shape, pool_window(&name, *size, *stride, padding)?)?)
            }
            LayerConfig::Relu {} => Box::new(ActivationLayer::new(name.clone(), &shape, Activation::Relu)),
            LayerConfig::Sigmoid {} => Box::new(ActivationLayer::new(name.clone(), &shape, Activation::Sigmoid)),
            LayerConfig::Tanh {} => Box::new(ActivationLayer::new(name.clone(), &shape, Activation::Tanh)),
            LayerConfig::Lrn { .. } => {
                spatial()?;
                let params = cfgs[i].lrn_params().ok_or_else(|| Error::invalid(&name, "not an lrn layer"))?;
                Box::new(LrnLayer::new(name.clone(), &shape, params)?)
            }
            LayerConfig::Flatten {} => Box::new(FlattenLayer::new(name.clone(), &shape)),
            LayerConfig::BatchNorm { momentum, eps } => {
                let valid = (0.0..=1.0).contains(momentum) && *eps > 0.0; // false for NaN too
                if !valid {
                    return Err(Error::invalid(&name, format!("momentum must be in [0, 1] and eps > 0, got {momentum} and {eps}")));
                }
                Box::new(BatchNormLayer::new(name.clone(), &shape, *momentum, *eps))
            }
            LayerConfig::Dropout { rate } => Box::new(DropoutLayer::new(name.clone(), &shape, *rate)?),
            LayerConfig::GlobalAvgPool {} => {
                spatial()?;
                Box::new(GlobalAvgPoolLayer::new(name.clone(), &shape))
            }
            LayerConfig::Residual { layers: body_cfgs } => {
                let (h, w, c) = spatial()?;
                let body = build_layers(body_cfgs, &shape, &format!("{path}{i}."), default_init, rng)?;
                let projection: Option<Box<dyn Layer>> = if body.output == shape {
                    None
                } else {
                    // A 1x1 convolution with the stride that maps the input onto the body's output.
                    let [oh, ow, oc] = body.output[..] else {
                        return Err(Error::shape(
                            &name,
                            format!("the body to output an image like its input [{h}, {w}, {c}]"),
                            format!("[{}]", dims(&body.output)),
                        ));
                    };
                    let (sh, sw) = (h.div_ceil(oh.max(1)), w.div_ceil(ow.max(1)));
                    let window = Window::new(1, 1, sh, sw, Padding::Valid);
                    let proj = conv_layer(&format!("{name} shortcut"), &shape, c, oc, window, 0.0, default_init, rng)?;
                    Some(Box::new(proj))
                };
                Box::new(ResidualLayer::new(name.clone(), &shape, body.layers, projection)?)
            }
            LayerConfig::Dense { units, l2, init } => {
                let fin = match shape[..] {
                    [f] => f,
                    _ => {
                        return Err(Error::shape(
                            &name,
                            "a flat input [features] (add a flatten layer before it)",
                            format!("[{}]", dims(&shape)),
                        ))
                    }
                };
                if *units == 0 {
                    return Err(Error::invalid(&name, "units must be at least 1"));
                }
                let w = init_weight(init.unwrap_or(default_init), &[fin, *units], fin, *units, rng);
                let weight = Param::new("weight", w, *l2, true);
                let bias = Param::new("bias", Tensor::zeros(&[*units]), 0.0, false);
                Box::new(DenseLayer::new(name.clone(), &shape, weight, bias)?)
            }
        };
        shape = layer.output_shape().to_vec();
        layers.push(layer);
        config_index.push(i);
        i += if fold_relu { 2 } else { 1 };
    }
    Ok(Built { layers, config_index, output: shape })
}

#[allow(clippy::too_many_arguments)]
fn conv_layer(
    name: &str,
    input: &[usize],
    c_in: usize,
    filters: usize,
    window: Window,
    l2: f32,
    init: Init,
    rng: &mut ChaCha8Rng,
) -> Result<Conv2dLayer> {
    if filters == 0 {
        return Err(Error::invalid(name, "filters must be at least 1"));
    }
    let (kh, kw) = (window.kh, window.kw);
    let w = init_weight(init, &[kh, kw, c_in, filters], kh * kw * c_in, kh * kw * filters, rng);
    let weight = Param::new("weight", w, l2, true);
    let bias = Param::new("bias", Tensor::zeros(&[filters]), 0.0, false);
    Conv2dLayer::new(name.to_string(), input, window, weight, bias)
}
