//! A checkpoint as an ONNX model (opset 17), in the conventions of ONNX vision models:
//!
//! - input `input`: float32 [N, C, H, W], pixels in [0, 1]; the checkpoint's normalisation is
//!   the graph's first two ops, `Sub(mean)` and `Div(std)`, per channel;
//! - output `logits`: [N, classes];
//! - `metadata_props`: `convnet.class_names`, `convnet.normalization`, `convnet.model` and
//!   `convnet.run` (JSON), which `convnet import` reads back.
//!
//! Layer by layer (convnet keeps images NHWC and weights HWIO; ONNX is NCHW and OIHW):
//!
//! ```text
//! conv2d          Conv (W transposed to OIHW, explicit pads [top, left, bottom, right]:
//!                 SAME puts the odd pixel after, as TensorFlow) [+ Relu if one is folded in]
//! max_pool        MaxPool (the padding never wins: ONNX pads max pooling with -inf)
//! avg_pool        AveragePool, count_include_pad = 0 (the mean of the cells inside the image)
//! relu/sigmoid/tanh  Relu / Sigmoid / Tanh
//! gelu            Mul(1/sqrt 2), Erf, Add(1), Mul(x), Mul(0.5) (Gelu itself is opset 20)
//! lrn             LRN, size = 2 depth_radius + 1, alpha = alpha * size (ONNX divides by size)
//! flatten         Flatten; convnet flattens (h, w, c), NCHW flattens (c, h, w): the rows of
//!                 the dense layer that follows are permuted to match, or, when another layer
//!                 comes first, a Transpose to NHWC goes before the Flatten
//! batch_norm      BatchNormalization (inference form: running statistics) [+ Relu]
//! dropout         nothing (inference)
//! scale           Mul by the factor (a one-value constant)
//! global_avg_pool GlobalAveragePool + Flatten
//! residual        the body, the shortcut (x, or its 1x1 Conv), Add
//! dense           Gemm with transB = 1 (W stored [out, in], as PyTorch's Linear; no C without a bias)
//! ```

use std::collections::HashMap;

use super::super::layout::{dense_out_in, flatten_order, hwio_to_oihw, FlattenOrder};
use super::proto::{AttributeValue as A, Dim, Graph, Model, Node, Tensor as OnnxTensor, ValueInfo, FLOAT};
use crate::error::{Error, Result};
use crate::model::plan::{LayerPlan, PlannedOp};
use crate::ops::window::{Geometry, Window};
use crate::ops::Padding;
use crate::tensor::Tensor;
use crate::train::Checkpoint;

/// The operator set the exported graphs use.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// The metadata keys convnet writes and reads back.
pub const META_CLASS_NAMES: &str = "convnet.class_names";
pub const META_NORMALIZATION: &str = "convnet.normalization";
pub const META_MODEL: &str = "convnet.model";
pub const META_RUN: &str = "convnet.run";

/// The checkpoint's network as an ONNX model, encoded.
pub fn export_onnx(ck: &Checkpoint) -> Result<Vec<u8>> {
    Ok(onnx_model(ck)?.encode())
}

/// The checkpoint's network as an ONNX model.
pub fn onnx_model(ck: &Checkpoint) -> Result<Model> {
    let net = ck.network()?;
    let spec = &ck.config.model;
    let plan = spec.plan()?;
    let params: HashMap<&str, &Tensor> = net.params().into_iter().map(|p| (p.name.as_str(), &p.value)).collect();
    let mut g = GraphBuilder { params, nodes: Vec::new(), initializers: Vec::new(), next: 0 };
    let [h, w, c] = spec.input;
    let norm = &ck.meta.normalization;
    let mean = g.constant("normalization.mean", &[1, c, 1, 1], norm.mean.clone());
    let std = g.constant("normalization.std", &[1, c, 1, 1], norm.std.clone());
    let centred = g.node("Sub", "normalize.sub", &["input", &mean], vec![]);
    let x = g.node("Div", "normalize.div", &[&centred, &std], vec![]);
    let logits = g.layers(&plan.layers, x)?;
    match g.nodes.iter_mut().rev().find(|n| n.outputs.contains(&logits)) {
        Some(last) => last.outputs = vec!["logits".into()],
        None => g.nodes.push(Node::new("Identity", "logits", &[&logits], &["logits"])),
    }
    let classes = plan.output[0];
    let batch = || Dim::Param("N".into());
    let dims = |d: &[usize]| d.iter().map(|&v| Dim::Value(v as i64)).collect::<Vec<_>>();
    let json = |v: serde_json::Result<String>| v.map_err(|e| Error::invalid("export", format!("metadata: {e}")));
    Ok(Model {
        ir_version: IR_VERSION,
        producer_name: "convnet".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: spec.description.clone(),
        opset_import: vec![(String::new(), OPSET)],
        metadata_props: vec![
            (META_CLASS_NAMES.into(), json(serde_json::to_string(&ck.meta.class_names))?),
            (META_NORMALIZATION.into(), json(serde_json::to_string(norm))?),
            (META_MODEL.into(), json(serde_json::to_string(spec))?),
            (META_RUN.into(), json(serde_json::to_string(&ck.config.run))?),
        ],
        graph: Graph {
            name: spec.name.clone(),
            nodes: g.nodes,
            initializers: g.initializers,
            inputs: vec![ValueInfo {
                name: "input".into(),
                elem_type: FLOAT,
                shape: std::iter::once(batch()).chain(dims(&[c, h, w])).collect(),
            }],
            outputs: vec![ValueInfo { name: "logits".into(), elem_type: FLOAT, shape: vec![batch(), Dim::Value(classes as i64)] }],
        },
    })
}

/// ONNX pads of a window on an input: [top, left, bottom, right].
pub fn onnx_pads(label: &str, input: &[usize], window: &Window) -> Result<Vec<i64>> {
    let g = Geometry::new(label, input[0], input[1], window)?;
    let after = |out: usize, stride: usize, kernel: usize, inp: usize, before: usize| match window.padding {
        // TensorFlow's SAME: the total padding that makes out = ceil(in / stride), the odd
        // pixel after.
        Padding::Same => ((out - 1) * stride + kernel).saturating_sub(inp) - before,
        Padding::Valid => 0,
        Padding::Explicit { .. } => unreachable!("handled below"),
    };
    let (bottom, right) = match window.padding {
        Padding::Explicit { bottom, right, .. } => (bottom, right),
        _ => (after(g.oh, g.sh, g.kh, g.ih, g.pad_top), after(g.ow, g.sw, g.kw, g.iw, g.pad_left)),
    };
    Ok([g.pad_top, g.pad_left, bottom, right].iter().map(|&p| p as i64).collect())
}

struct GraphBuilder<'a> {
    params: HashMap<&'a str, &'a Tensor>,
    nodes: Vec<Node>,
    initializers: Vec<OnnxTensor>,
    next: usize,
}

impl<'a> GraphBuilder<'a> {
    /// Adds a node named `name` with one output (named after the node) and returns the output.
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attributes: Vec<(&str, A)>) -> String {
        self.next += 1;
        let output = format!("{name}.out{}", self.next);
        let mut node = Node::new(op, name, inputs, &[&output]);
        for (k, v) in attributes {
            node = node.with(k, v);
        }
        self.nodes.push(node);
        output
    }

    fn constant(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        self.initializers.push(OnnxTensor::float(name, dims, data));
        name.to_string()
    }

    fn param(&self, name: &str) -> Result<&'a Tensor> {
        self.params.get(name).copied().ok_or_else(|| Error::invalid("export", format!("the network has no parameter {name}")))
    }

    /// Emits `layers` on value `x` and returns the name of their output.
    fn layers(&mut self, layers: &[LayerPlan], mut x: String) -> Result<String> {
        let mut dense_order: Option<Vec<usize>> = None;
        for (i, layer) in layers.iter().enumerate() {
            let name = layer.param_prefix.trim_end_matches('.').to_string();
            x = match &layer.op {
                PlannedOp::Conv2d(conv) => {
                    let y = self.conv(layer, &x)?;
                    if conv.relu {
                        self.node("Relu", &format!("{name}.relu"), &[&y], vec![])
                    } else {
                        y
                    }
                }
                PlannedOp::MaxPool(window) | PlannedOp::AvgPool(window) => {
                    let max = matches!(layer.op, PlannedOp::MaxPool(_));
                    let mut attrs = vec![
                        ("kernel_shape", A::Ints(vec![window.kh as i64, window.kw as i64])),
                        ("strides", A::Ints(vec![window.sh as i64, window.sw as i64])),
                        ("pads", A::Ints(onnx_pads(&layer.label, &layer.input, window)?)),
                    ];
                    if !max {
                        attrs.push(("count_include_pad", A::Int(0)));
                    }
                    self.node(if max { "MaxPool" } else { "AveragePool" }, &name, &[&x], attrs)
                }
                PlannedOp::Activation(a) => {
                    let op = match a {
                        crate::ops::activation::Activation::Relu => "Relu",
                        crate::ops::activation::Activation::Sigmoid => "Sigmoid",
                        crate::ops::activation::Activation::Tanh => "Tanh",
                    };
                    self.node(op, &name, &[&x], vec![])
                }
                PlannedOp::Gelu => {
                    // Opset 17 has no Gelu (it came in 20): 0.5 x (1 + erf(x / sqrt 2)), spelt out.
                    let inv_sqrt2 = self.constant(&format!("{name}.inv_sqrt2"), &[], vec![std::f32::consts::FRAC_1_SQRT_2]);
                    let one = self.constant(&format!("{name}.one"), &[], vec![1.0]);
                    let half = self.constant(&format!("{name}.half"), &[], vec![0.5]);
                    let scaled = self.node("Mul", &format!("{name}.scale"), &[&x, &inv_sqrt2], vec![]);
                    let erf = self.node("Erf", &format!("{name}.erf"), &[&scaled], vec![]);
                    let cdf = self.node("Add", &format!("{name}.add"), &[&erf, &one], vec![]);
                    let xcdf = self.node("Mul", &format!("{name}.mul"), &[&x, &cdf], vec![]);
                    self.node("Mul", &name, &[&xcdf, &half], vec![])
                }
                PlannedOp::Lrn(p) => {
                    let size = 2 * p.depth_radius + 1;
                    self.node(
                        "LRN",
                        &name,
                        &[&x],
                        vec![
                            ("size", A::Int(size as i64)),
                            ("alpha", A::Float(p.alpha * size as f32)),
                            ("beta", A::Float(p.beta)),
                            ("bias", A::Float(p.bias)),
                        ],
                    )
                }
                PlannedOp::Flatten => {
                    let flat = |g: &mut Self, x: &str| g.node("Flatten", &name, &[x], vec![("axis", A::Int(1))]);
                    match flatten_order(layers, i) {
                        FlattenOrder::AsIs => flat(self, &x),
                        FlattenOrder::PermuteNextDense(order) => {
                            dense_order = Some(order);
                            flat(self, &x)
                        }
                        FlattenOrder::Nhwc => {
                            let nhwc = self.node("Transpose", &format!("{name}.to_nhwc"), &[&x], vec![("perm", A::Ints(vec![0, 2, 3, 1]))]);
                            flat(self, &nhwc)
                        }
                    }
                }
                PlannedOp::BatchNorm { eps, momentum, relu, .. } => {
                    let inputs = ["gamma", "beta", "running_mean", "running_var"].map(|p| format!("{name}.{p}"));
                    for p in &inputs {
                        let t = self.param(p)?;
                        self.initializers.push(OnnxTensor::float(p, t.shape(), t.data().to_vec()));
                    }
                    let y = self.node(
                        "BatchNormalization",
                        &name,
                        &[&x, &inputs[0], &inputs[1], &inputs[2], &inputs[3]],
                        // ONNX's momentum weighs the running value: 1 - convnet's (PyTorch's).
                        vec![("epsilon", A::Float(*eps)), ("momentum", A::Float(1.0 - momentum))],
                    );
                    if *relu {
                        self.node("Relu", &format!("{name}.relu"), &[&y], vec![])
                    } else {
                        y
                    }
                }
                PlannedOp::Dropout { .. } => x,
                PlannedOp::Scale(factor) => {
                    let c = self.constant(&format!("{name}.factor"), &[], vec![*factor]);
                    self.node("Mul", &name, &[&x, &c], vec![])
                }
                PlannedOp::GlobalAvgPool => {
                    let pooled = self.node("GlobalAveragePool", &name, &[&x], vec![]);
                    self.node("Flatten", &format!("{name}.flatten"), &[&pooled], vec![("axis", A::Int(1))])
                }
                PlannedOp::Residual { body, shortcut } => {
                    let body_out = self.layers(body, x.clone())?;
                    let short = match shortcut {
                        Some(conv) => self.conv(conv, &x)?,
                        None => x,
                    };
                    self.node("Add", &format!("{name}.add"), &[&body_out, &short], vec![])
                }
                PlannedOp::Dense { bias, .. } => {
                    let w = self.param(&format!("{name}.weight"))?;
                    let (fin, fout) = (w.shape()[0], w.shape()[1]);
                    let order = dense_order.take().unwrap_or_else(|| (0..fin).collect());
                    let wname = format!("{name}.weight");
                    self.initializers.push(OnnxTensor::float(&wname, &[fout, fin], dense_out_in(w, &order)));
                    if *bias {
                        let bname = format!("{name}.bias");
                        let b = self.param(&bname)?;
                        self.initializers.push(OnnxTensor::float(&bname, &[fout], b.data().to_vec()));
                        self.node("Gemm", &name, &[&x, &wname, &bname], vec![("transB", A::Int(1))])
                    } else {
                        // Gemm's C is optional.
                        self.node("Gemm", &name, &[&x, &wname], vec![("transB", A::Int(1))])
                    }
                }
            };
        }
        Ok(x)
    }

    /// A Conv node with its weights and bias (a conv2d layer or a residual block's shortcut).
    fn conv(&mut self, layer: &LayerPlan, x: &str) -> Result<String> {
        let PlannedOp::Conv2d(conv) = &layer.op else { unreachable!("conv() is called on conv2d layers") };
        let name = layer.param_prefix.trim_end_matches('.').to_string();
        let (wname, bname) = (format!("{name}.weight"), format!("{name}.bias"));
        let w = self.param(&wname)?;
        let b = self.param(&bname)?;
        let [kh, kw, ci, co] = w.shape()[..] else { unreachable!("conv weights are 4-D") };
        self.initializers.push(OnnxTensor::float(&wname, &[co, ci, kh, kw], hwio_to_oihw(w)));
        self.initializers.push(OnnxTensor::float(&bname, &[co], b.data().to_vec()));
        let window = conv.window;
        let attrs = vec![
            ("kernel_shape", A::Ints(vec![kh as i64, kw as i64])),
            ("strides", A::Ints(vec![window.sh as i64, window.sw as i64])),
            ("pads", A::Ints(onnx_pads(&layer.label, &layer.input, &window)?)),
            ("dilations", A::Ints(vec![1, 1])),
            ("group", A::Int(1)),
        ];
        Ok(self.node("Conv", &name, &[x, &wname, &bname], attrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        // 5 wide, kernel 2, stride 2: out 3, total padding (3-1)*2+2-5 = 1, all after.
        let w = Window::new(2, 2, 2, 2, Padding::Same);
        assert_eq!(onnx_pads("t", &[5, 5, 1], &w).unwrap(), [0, 0, 1, 1]);
        // 6 high, 7 wide, kernel 4 stride 1: total 3 on both axes: 1 before, 2 after.
        let w = Window::new(4, 4, 1, 1, Padding::Same);
        assert_eq!(onnx_pads("t", &[6, 7, 1], &w).unwrap(), [1, 1, 2, 2]);
        // 4 wide, kernel 1 stride 2: no padding needed.
        let w = Window::new(1, 1, 2, 2, Padding::Same);
        assert_eq!(onnx_pads("t", &[4, 4, 1], &w).unwrap(), [0, 0, 0, 0]);
        let w = Window::new(3, 3, 1, 1, Padding::Explicit { top: 1, bottom: 2, left: 3, right: 0 });
        assert_eq!(onnx_pads("t", &[8, 8, 1], &w).unwrap(), [1, 3, 2, 0]);
        let w = Window::new(3, 3, 2, 2, Padding::Valid);
        assert_eq!(onnx_pads("t", &[8, 8, 1], &w).unwrap(), [0, 0, 0, 0]);
    }
}
