//! From a plan (model/plan.rs) to layers. Every shape was inferred and checked by the plan, so
//! building only allocates, draws the initial weights and names each parameter: a layer names
//! its parameters by role ("weight", "gamma") and the builder prefixes them with the plan's
//! `param_prefix`, in this one place. Weights are drawn in plan order (a residual block's body,
//! then its shortcut), so a seed gives the same network on every build.

use rand_chacha::ChaCha8Rng;

use super::init::init_weight;
use super::plan::{ConvPlan, LayerPlan, PlannedOp};
use crate::error::Result;
use crate::layers::{
    ActivationLayer, AvgPoolLayer, BatchNormLayer, Conv2dLayer, DenseLayer, DropoutLayer, FlattenLayer, GeluLayer, GlobalAvgPoolLayer,
    Layer, LrnLayer, MaxPoolLayer, Param, ResidualLayer, ScaleLayer, Sequential,
};
use crate::tensor::Tensor;

/// The layers of `plans`, in order, with weights drawn from `rng`.
pub fn build(plans: &[LayerPlan], rng: &mut ChaCha8Rng) -> Result<Sequential> {
    let layers = plans.iter().map(|p| build_layer(p, rng)).collect::<Result<Vec<_>>>()?;
    Sequential::new(layers)
}

fn build_layer(plan: &LayerPlan, rng: &mut ChaCha8Rng) -> Result<Box<dyn Layer>> {
    let (label, input) = (plan.label.clone(), &plan.input[..]);
    let mut layer: Box<dyn Layer> = match &plan.op {
        PlannedOp::Conv2d(conv) => Box::new(conv_layer(plan, conv, rng)?),
        PlannedOp::MaxPool(window) => Box::new(MaxPoolLayer::new(label, input, *window)?),
        PlannedOp::AvgPool(window) => Box::new(AvgPoolLayer::new(label, input, *window)?),
        PlannedOp::Activation(activation) => Box::new(ActivationLayer::new(label, input, *activation)),
        PlannedOp::Gelu => Box::new(GeluLayer::new(label, input)),
        PlannedOp::Lrn(params) => Box::new(LrnLayer::new(label, input, *params)?),
        PlannedOp::Flatten => Box::new(FlattenLayer::new(label, input)),
        PlannedOp::BatchNorm { momentum, eps, relu, learn_scale } => {
            let mut bn = BatchNormLayer::new(label, input, *momentum, *eps);
            bn.relu = *relu;
            // Still computed by the backward pass (cheap), but the optimiser leaves it at 1.
            bn.gamma.trainable = *learn_scale;
            Box::new(bn)
        }
        PlannedOp::Dropout { rate } => Box::new(DropoutLayer::new(label, input, *rate)?),
        PlannedOp::GlobalAvgPool => Box::new(GlobalAvgPoolLayer::new(label, input)),
        PlannedOp::Scale(factor) => Box::new(ScaleLayer::new(label, input, *factor)),
        PlannedOp::Residual { body, shortcut } => {
            // Its parameters are its body's and its shortcut's, named as those are built.
            let body = build(body, rng)?;
            let projection = shortcut.as_deref().map(|s| build_layer(s, rng)).transpose()?;
            return Ok(Box::new(ResidualLayer::new(label, input, body, projection)?));
        }
        PlannedOp::Dense { units, l2, init, bias } => {
            let fin = input[0];
            let weight = Param::new("weight", init_weight(*init, &[fin, *units], fin, *units, rng), *l2, true);
            let bias = bias.then(|| Param::new("bias", Tensor::zeros(&[*units]), 0.0, false));
            Box::new(DenseLayer::new(label, input, weight, bias)?)
        }
    };
    debug_assert_eq!(layer.output_shape(), &plan.output[..], "{}: the layer and its plan disagree", plan.label);
    for p in layer.params_mut() {
        p.name = format!("{}{}", plan.param_prefix, p.name);
    }
    Ok(layer)
}

/// HWIO weights [kh, kw, C_in, C_out]: filter o < min(C_in, C_out) becomes the identity on
/// input channel o (1 at the centre (kh / 2, kw / 2), 0 elsewhere), as `torch.nn.init.dirac_`.
fn set_dirac(w: &mut Tensor) {
    let [kh, kw, c_in, c_out] = w.shape()[..] else { panic!("conv weights are 4-D, got {:?}", w.shape()) };
    let data = w.data_mut();
    for o in 0..c_in.min(c_out) {
        for tap in 0..kh * kw {
            for i in 0..c_in {
                data[(tap * c_in + i) * c_out + o] = 0.0;
            }
        }
        data[((kh / 2 * kw + kw / 2) * c_in + o) * c_out + o] = 1.0;
    }
}

fn conv_layer(plan: &LayerPlan, conv: &ConvPlan, rng: &mut ChaCha8Rng) -> Result<Conv2dLayer> {
    let (kh, kw, c_in, filters) = (conv.window.kh, conv.window.kw, plan.input[2], conv.filters);
    let mut w = init_weight(conv.init, &[kh, kw, c_in, filters], kh * kw * c_in, kh * kw * filters, rng);
    if conv.dirac {
        // Drawn first and then overwritten, so the random stream (and every later layer's
        // weights) is the same with or without it.
        set_dirac(&mut w);
    }
    let mut weight = Param::new("weight", w, conv.l2, true);
    // Set from the training data when a run starts (`model::whitening`), then never trained.
    weight.trainable = !conv.whiten;
    let bias = Param::new("bias", Tensor::zeros(&[filters]), 0.0, false);
    let mut layer = Conv2dLayer::new(plan.label.clone(), &plan.input, conv.window, weight, bias)?;
    layer.relu = conv.relu;
    Ok(layer)
}
