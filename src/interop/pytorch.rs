//! A checkpoint as a PyTorch model: `model.safetensors`, a state_dict in PyTorch's layouts, and
//! `model.py`, a self-contained `torch.nn.Module` of the same network, so that
//!
//! ```python
//! from model import Net
//! from safetensors.torch import load_file
//! net = Net().eval()
//! net.load_state_dict(load_file("model.safetensors"))
//! logits = net(x)   # x: float32 [N, C, H, W], pixels in [0, 1]
//! ```
//!
//! gives convnet's logits. The modules sit in `Net.layers` (an `nn.Sequential`) at their config
//! indexes, so the keys read like convnet's parameter names: `3.conv2d.weight` is
//! `layers.3.weight`, `4.residual.2.batch_norm.gamma` is `layers.4.body.2.weight`, a block's
//! projection `layers.4.shortcut.weight`. Layouts: conv weights OIHW, dense weights [out, in],
//! batch norm's `weight`/`bias`/`running_mean`/`running_var` and `num_batches_tracked` (the
//! optimiser steps). What PyTorch lacks is written as small modules in model.py: TensorFlow's
//! SAME padding (the odd pixel after) and explicit padding for convolution and pooling, average
//! pooling over the cells inside the image only, TensorFlow's LRN, a flatten in convnet's
//! (h, w, c) order where no dense layer follows (where one does, its columns are permuted to
//! PyTorch's (c, h, w) order instead). The input normalisation is the first step of `forward`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::layout::{dense_out_in, flatten_order, hwio_to_oihw, FlattenOrder};
use crate::error::{Error, Result};
use crate::fs::write_atomically;
use crate::model::plan::{LayerPlan, PlannedOp};
use crate::ops::activation::Activation;
use crate::ops::Padding;
use crate::tensor::Tensor;
use crate::train::Checkpoint;

/// One state_dict entry: its key and its values (f32, or the i64 of num_batches_tracked).
enum Value {
    F32(Vec<usize>, Vec<f32>),
    I64(i64),
}

/// The files of the export: model.py's text and the state_dict.
pub struct PytorchExport {
    pub model_py: String,
    state: Vec<(String, Value)>,
}

/// Writes `model.safetensors` and `model.py` into `dir` (created if missing), each atomically.
pub fn export_pytorch(ck: &Checkpoint, dir: &Path) -> Result<()> {
    let export = pytorch_export(ck)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomically(&dir.join("model.safetensors"), &export.safetensors()?)?;
    write_atomically(&dir.join("model.py"), export.model_py.as_bytes())
}

impl PytorchExport {
    /// The state_dict as safetensors bytes.
    pub fn safetensors(&self) -> Result<Vec<u8>> {
        let bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = self
            .state
            .iter()
            .map(|(k, v)| match v {
                Value::F32(shape, data) => (k.clone(), shape.clone(), Dtype::F32, data.iter().flat_map(|x| x.to_le_bytes()).collect()),
                Value::I64(n) => (k.clone(), vec![], Dtype::I64, n.to_le_bytes().to_vec()),
            })
            .collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(k, shape, dtype, data)| {
                TensorView::new(*dtype, shape.clone(), data).map(|v| (k.clone(), v)).map_err(|e| Error::invalid("export", e.to_string()))
            })
            .collect::<Result<_>>()?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize(views, &Some(meta)).map_err(|e| Error::invalid("export", e.to_string()))
    }

    /// The state_dict's keys, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.state.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The checkpoint as model.py and a state_dict.
pub fn pytorch_export(ck: &Checkpoint) -> Result<PytorchExport> {
    let net = ck.network()?;
    let spec = &ck.config.model;
    let plan = spec.plan()?;
    let params: HashMap<&str, &Tensor> = net.params().into_iter().map(|p| (p.name.as_str(), &p.value)).collect();
    let mut w = Writer { params, state: Vec::new(), steps: ck.meta.optimizer_step as i64 };
    let modules = w.sequential(&plan.layers, "layers.", 2)?;
    let norm = &ck.meta.normalization;
    let list = |v: &[f32]| v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ");
    let mut py = String::new();
    let _ = write!(
        py,
        "{HEADER}\n\n# The model's name and class names (JSON strings are Python string literals).\nNAME = {name}\nCLASSES = {classes_list}\n\n\nclass Net(nn.Module):\n    \"\"\"Input float32 [N, {c}, {h}, {w}], pixels in [0, 1]; output logits [N, {classes}] (see CLASSES).\"\"\"\n\n    \
         def __init__(self):\n        super().__init__()\n        \
         self.register_buffer(\"mean\", torch.tensor([{mean}]).view(1, -1, 1, 1), persistent=False)\n        \
         self.register_buffer(\"std\", torch.tensor([{std}]).view(1, -1, 1, 1), persistent=False)\n        \
         self.layers = nn.Sequential(\n{modules}        )\n\n    \
         def forward(self, x):\n        return self.layers((x - self.mean) / self.std)\n",
        name = serde_json::to_string(&spec.name).map_err(|e| Error::invalid("export", e.to_string()))?,
        c = spec.input[2],
        h = spec.input[0],
        w = spec.input[1],
        classes = plan.output[0],
        classes_list = serde_json::to_string(&ck.meta.class_names).map_err(|e| Error::invalid("export", e.to_string()))?,
        mean = list(&norm.mean),
        std = list(&norm.std),
    );
    Ok(PytorchExport { model_py: py, state: w.state })
}

struct Writer<'a> {
    params: HashMap<&'a str, &'a Tensor>,
    state: Vec<(String, Value)>,
    steps: i64,
}

/// PyTorch's padding argument order for F.pad on the last two axes: (left, right, top, bottom).
fn tf_pads(layer: &LayerPlan, window: &crate::ops::Window) -> Result<String> {
    Ok(match window.padding {
        Padding::Same => "\"same\"".to_string(),
        Padding::Valid => "(0, 0, 0, 0)".to_string(),
        Padding::Explicit { .. } => {
            let p = super::onnx::export::onnx_pads(&layer.label, &layer.input, window)?;
            // ONNX order [top, left, bottom, right] to F.pad's (left, right, top, bottom).
            format!("({}, {}, {}, {})", p[1], p[3], p[0], p[2])
        }
    })
}

impl<'a> Writer<'a> {
    fn param(&self, name: &str) -> Result<&'a Tensor> {
        self.params.get(name).copied().ok_or_else(|| Error::invalid("export", format!("the network has no parameter {name}")))
    }

    fn f32(&mut self, key: String, shape: &[usize], data: Vec<f32>) {
        self.state.push((key, Value::F32(shape.to_vec(), data)));
    }

    /// The modules of `layers` as lines of an nn.Sequential, one per config index (an unused
    /// index, where convnet folded a relu into the layer before, gets the relu).
    fn sequential(&mut self, layers: &[LayerPlan], key_prefix: &str, indent: usize) -> Result<String> {
        let pad = "    ".repeat(indent + 1);
        let mut out = String::new();
        let mut dense_order: Option<Vec<usize>> = None;
        let mut next_index = 0;
        for (i, layer) in layers.iter().enumerate() {
            // Indexes convnet left unused (a relu folded into the layer before) keep their relu.
            while next_index < layer.index {
                let _ = writeln!(out, "{pad}nn.ReLU(),  # {next_index}: folded into the layer before in convnet");
                next_index += 1;
            }
            next_index = layer.index + 1;
            let key = format!("{key_prefix}{}.", layer.index);
            let name = layer.param_prefix.trim_end_matches('.');
            let module = match &layer.op {
                PlannedOp::Conv2d(conv) => {
                    let m = self.conv(layer, name, &key)?;
                    if conv.relu {
                        // The relu that follows in the config sits at the next index.
                        let _ = writeln!(out, "{pad}{m},  # {}", layer.label);
                        let _ = writeln!(out, "{pad}nn.ReLU(),");
                        next_index += 1;
                        continue;
                    }
                    m
                }
                PlannedOp::MaxPool(win) | PlannedOp::AvgPool(win) => {
                    let kind = if matches!(layer.op, PlannedOp::MaxPool(_)) { "MaxPool2dTF" } else { "AvgPool2dTF" };
                    format!("{kind}(({}, {}), ({}, {}), {})", win.kh, win.kw, win.sh, win.sw, tf_pads(layer, win)?)
                }
                PlannedOp::Activation(a) => match a {
                    Activation::Relu => "nn.ReLU()".into(),
                    Activation::Sigmoid => "nn.Sigmoid()".into(),
                    Activation::Tanh => "nn.Tanh()".into(),
                },
                // PyTorch's default is the exact (erf) form, as convnet's.
                PlannedOp::Gelu => "nn.GELU()".into(),
                PlannedOp::Lrn(p) => format!("LocalResponseNormTF({}, {:?}, {:?}, {:?})", p.depth_radius, p.bias, p.alpha, p.beta),
                PlannedOp::Flatten => match flatten_order(layers, i) {
                    FlattenOrder::AsIs => "nn.Flatten()".into(),
                    FlattenOrder::PermuteNextDense(order) => {
                        dense_order = Some(order);
                        "nn.Flatten()".into()
                    }
                    FlattenOrder::Nhwc => "FlattenNHWC()".into(),
                },
                PlannedOp::BatchNorm { momentum, eps, relu, .. } => {
                    let c = *layer.input.last().unwrap_or(&0);
                    let dims = if layer.input.len() == 3 { "2d" } else { "1d" };
                    for (ours, theirs) in
                        [("gamma", "weight"), ("beta", "bias"), ("running_mean", "running_mean"), ("running_var", "running_var")]
                    {
                        let t = self.param(&format!("{name}.{ours}"))?;
                        self.f32(format!("{key}{theirs}"), t.shape(), t.data().to_vec());
                    }
                    self.state.push((format!("{key}num_batches_tracked"), Value::I64(self.steps)));
                    let m = format!("nn.BatchNorm{dims}({c}, eps={eps:?}, momentum={momentum:?})");
                    if *relu {
                        let _ = writeln!(out, "{pad}{m},  # {}", layer.label);
                        let _ = writeln!(out, "{pad}nn.ReLU(),");
                        next_index += 1;
                        continue;
                    }
                    m
                }
                PlannedOp::Dropout { rate } => format!("nn.Dropout({rate:?})"),
                PlannedOp::GlobalAvgPool => "GlobalAvgPool()".into(),
                PlannedOp::Scale(factor) => format!("Scale({factor:?})"),
                PlannedOp::Residual { body, shortcut } => {
                    let inner = self.sequential(body, &format!("{key}body."), indent + 2)?;
                    let short = match shortcut {
                        Some(conv) => self.conv(conv, conv.param_prefix.trim_end_matches('.'), &format!("{key}shortcut."))?,
                        None => "None".into(),
                    };
                    let p2 = "    ".repeat(indent + 2);
                    format!("Residual(\n{p2}nn.Sequential(\n{inner}{p2}),\n{p2}{short},\n{pad})")
                }
                PlannedOp::Dense { bias, .. } => {
                    let wt = self.param(&format!("{name}.weight"))?;
                    let (fin, fout) = (wt.shape()[0], wt.shape()[1]);
                    let order = dense_order.take().unwrap_or_else(|| (0..fin).collect());
                    self.f32(format!("{key}weight"), &[fout, fin], dense_out_in(wt, &order));
                    if *bias {
                        let b = self.param(&format!("{name}.bias"))?;
                        self.f32(format!("{key}bias"), &[fout], b.data().to_vec());
                        format!("nn.Linear({fin}, {fout})")
                    } else {
                        format!("nn.Linear({fin}, {fout}, bias=False)")
                    }
                }
            };
            let _ = writeln!(out, "{pad}{module},  # {}", layer.label);
        }
        Ok(out)
    }

    /// A Conv2dTF module line, its weights put in the state_dict under `key`.
    fn conv(&mut self, layer: &LayerPlan, name: &str, key: &str) -> Result<String> {
        let PlannedOp::Conv2d(conv) = &layer.op else { unreachable!("conv() is called on conv2d layers") };
        let wt = self.param(&format!("{name}.weight"))?;
        let b = self.param(&format!("{name}.bias"))?;
        let [kh, kw, ci, co] = wt.shape()[..] else { unreachable!("conv weights are 4-D") };
        self.f32(format!("{key}weight"), &[co, ci, kh, kw], hwio_to_oihw(wt));
        self.f32(format!("{key}bias"), &[co], b.data().to_vec());
        let win = conv.window;
        Ok(format!("Conv2dTF({ci}, {co}, ({kh}, {kw}), ({}, {}), {})", win.sh, win.sw, tf_pads(layer, &win)?))
    }
}

/// The helper modules every model.py starts with.
const HEADER: &str = r#""""A network exported by convnet (`convnet export --format pytorch`).

    from model import Net
    from safetensors.torch import load_file
    net = Net().eval()
    net.load_state_dict(load_file("model.safetensors"))
    logits = net(x)  # x: float32 [N, C, H, W], pixels in [0, 1]

The modules below are what PyTorch has no built-in for: TensorFlow's SAME padding (the odd
pixel after), average pooling over the cells inside the image only, TensorFlow's LRN, and a
flatten in (h, w, c) order.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _same_pads(size, kernel, stride):
    """TensorFlow's SAME on one axis: output ceil(size / stride), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(x, kernel, stride, padding):
    """(left, right, top, bottom) for F.pad."""
    if padding == "same":
        top, bottom = _same_pads(x.shape[2], kernel[0], stride[0])
        left, right = _same_pads(x.shape[3], kernel[1], stride[1])
        return (left, right, top, bottom)
    return padding


class Conv2dTF(nn.Conv2d):
    """nn.Conv2d with TensorFlow's SAME or explicit (left, right, top, bottom) zero padding."""

    def __init__(self, cin, cout, kernel, stride, padding):
        super().__init__(cin, cout, kernel, stride)
        self.tf_padding = padding

    def forward(self, x):
        return super().forward(F.pad(x, _pads(x, self.kernel_size, self.stride, self.tf_padding)))


class MaxPool2dTF(nn.Module):
    """Max pooling where the padding never wins (padded with -inf)."""

    def __init__(self, kernel, stride, padding):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        x = F.pad(x, _pads(x, self.kernel, self.stride, self.padding), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class AvgPool2dTF(nn.Module):
    """Average pooling over the cells inside the image (count_include_pad=False, any padding)."""

    def __init__(self, kernel, stride, padding):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        pads = _pads(x, self.kernel, self.stride, self.padding)
        total = F.avg_pool2d(F.pad(x, pads), self.kernel, self.stride)
        inside = F.avg_pool2d(F.pad(torch.ones_like(x[:, :1]), pads), self.kernel, self.stride)
        return total / inside


class LocalResponseNormTF(nn.Module):
    """tf.nn.lrn: y = x / (bias + alpha * sum of x^2 over channels c-r..c+r) ** beta.
    (nn.LocalResponseNorm divides alpha by the window size 2r + 1.)"""

    def __init__(self, depth_radius, bias, alpha, beta):
        super().__init__()
        self.r, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def forward(self, x):
        sq = F.pad(x * x, (0, 0, 0, 0, self.r, self.r))
        window = sum(sq[:, i : i + x.shape[1]] for i in range(2 * self.r + 1))
        return x / (self.bias + self.alpha * window) ** self.beta


class FlattenNHWC(nn.Module):
    """Flatten in convnet's (h, w, c) order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


class Scale(nn.Module):
    """y = factor * x."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class Residual(nn.Module):
    """y = body(x) + shortcut(x); the shortcut is x itself or a 1x1 convolution."""

    def __init__(self, body, shortcut):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))
"#;
