//! An ONNX model as a convnet checkpoint: the graph, read node by node from its input to its
//! output, becomes a model spec and the weights convnet's layouts (OIHW -> HWIO, Gemm's
//! [out, in] -> [in, out]). What convnet can express:
//!
//! ```text
//! Sub / Div / Mul by per-channel constants, first      the input normalisation
//! Transpose [0, 3, 1, 2] on the input                  an NHWC input (Keras converters)
//! Conv (group 1, dilation 1)                           conv2d (SAME when the pads are TF's)
//! MaxPool, AveragePool (no ceil_mode; padded average
//!   pooling only with count_include_pad = 0)          max_pool, avg_pool
//! Relu, Sigmoid, Tanh                                  relu, sigmoid, tanh
//! Gelu (approximate = none), or spelt out: Mul(1/sqrt 2)
//!   or Div(sqrt 2), Erf, Add(1), Mul(x) and Mul(0.5)
//!   in either order                                    gelu
//! LRN (odd size)                                       lrn, alpha / size
//! BatchNormalization (inference)                       batch_norm
//! Flatten (axis 1), Reshape to [N, -1]                 flatten: the next dense layer's rows
//!                                                      go from (c, h, w) to (h, w, c) order,
//!                                                      unless a Transpose to NHWC came first
//! GlobalAveragePool, ReduceMean over axes [2, 3]
//!   (+ Flatten / Reshape / Squeeze)                   global_avg_pool
//! Gemm (alpha = beta = 1), MatMul (+ Add)              dense
//! Add of a value and a chain that starts from it       residual (shortcut: x or a 1x1 Conv)
//! Mul or Div by one constant value (after the start)   scale
//! Dropout, Identity; a Softmax at the very end         nothing
//! ```
//!
//! Anything else is an error that names the node, its op and the attribute. Training-only
//! settings (dropout, L2, initialisers) are not in an inference graph: the imported config has
//! none of them.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::super::layout::{chw_to_hwc_order, oihw_to_hwio};
use super::export::{META_CLASS_NAMES, META_MODEL, META_RUN};
use super::proto::{AttributeValue, Dim, Model, Node, Tensor as OnnxTensor, TensorData};
use crate::data::normalize::Normalization;
use crate::error::{Error, Result};
use crate::model::spec::{LayerConfig, PaddingConfig, Pair, MAX_PARAMS, MAX_SIDE, MAX_UNITS};
use crate::model::{ModelSpec, Network};
use crate::train::{save_checkpoint, CheckpointMeta, RunConfig};

/// What an ONNX file becomes.
pub struct Imported {
    pub model: ModelSpec,
    pub run: RunConfig,
    pub class_names: Vec<String>,
    pub normalization: Normalization,
    /// Every parameter under convnet's name, in convnet's layout: (name, shape, values).
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// What was left out or assumed, for the user to read.
    pub notes: Vec<String>,
}

/// Reads an ONNX file's bytes (`path` names it in errors).
pub fn import_onnx(bytes: &[u8], path: &Path) -> Result<Imported> {
    let fail = |detail: String| Error::data(path, detail);
    let mut model = Model::decode(bytes).map_err(|e| fail(format!("not a valid ONNX file: {e}")))?;
    // Weights kept beside the model (torch.onnx.export's default for the dynamo exporter).
    let dir = path.parent().unwrap_or(Path::new("."));
    let used: HashSet<String> = model.graph.nodes.iter().flat_map(|n| n.inputs.iter().cloned()).collect();
    let mut external_bytes = 0u64;
    for t in model.graph.initializers.iter_mut().filter(|t| used.contains(&t.name)) {
        if let TensorData::External(e) = &t.data {
            external_bytes = external_bytes.saturating_add(t.dims.iter().fold(8u64, |acc, &d| acc.saturating_mul(d.max(0) as u64)));
            if external_bytes > MAX_PARAMS * 8 {
                return Err(fail(format!("the tensors kept in {} and beside it are larger than any model convnet builds", e.location)));
            }
        }
        t.read_external(dir).map_err(fail)?;
    }
    let mut reader = GraphReader::new(&model, path)?;
    let (layers, notes) = reader.read()?;
    let meta = |key: &str| model.metadata_props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let theirs: Option<ModelSpec> = meta(META_MODEL).and_then(|m| serde_json::from_str(m).ok());
    let [h, w, c] = reader.input;
    let name = theirs.as_ref().map(|m| m.name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if stem.is_empty() || stem.contains(['/', '\\']) {
            "imported".into()
        } else {
            stem
        }
    });
    let spec = ModelSpec {
        name,
        description: theirs.as_ref().map(|m| m.description.clone()).unwrap_or_else(|| format!("imported from {}", path.display())),
        input: [h, w, c],
        init: Default::default(),
        layers,
    };
    spec.validate().map_err(|e| fail(format!("the graph reads as a model convnet cannot build: {e}")))?;
    let run = match meta(META_RUN).map(serde_json::from_str::<RunConfig>) {
        Some(Ok(run)) => run,
        _ => default_run([h, w, c]),
    };
    let class_names: Vec<String> = meta(META_CLASS_NAMES).and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    let normalization = reader.normalization.clone().unwrap_or(Normalization { mean: vec![0.0; c], std: vec![1.0; c] });
    normalization.validate(c).map_err(|e| fail(format!("the input normalisation: {e}")))?;
    Ok(Imported { model: spec, run, class_names, normalization, params: std::mem::take(&mut reader.params), notes })
}

/// The run settings of a model that came without them: the data set its input suggests.
fn default_run(input: [usize; 3]) -> RunConfig {
    let dataset = match input {
        [28, 28, 1] => "fashion-mnist",
        [32, 32, 3] => "cifar10",
        _ => "image-folder",
    };
    let text =
        format!("[data]\ndataset = \"{dataset}\"\n[train]\nbatch_size = 64\nepochs = 10\n[optimizer]\nkind = \"adam\"\nlr = 0.0001\n");
    toml::from_str(&text).expect("a valid run config")
}

impl Imported {
    /// The network with the imported weights, checked against the spec's plan: every
    /// parameter present with its shape.
    pub fn network(&self, path: &Path) -> Result<Network> {
        let mut net = Network::build(&self.model, 0)?;
        let mut by_name: HashMap<&str, (&Vec<usize>, &Vec<f32>)> = self.params.iter().map(|(n, s, d)| (n.as_str(), (s, d))).collect();
        for p in net.params_mut() {
            let (shape, data) = by_name.remove(p.name.as_str()).ok_or_else(|| {
                Error::data(path, format!("the graph gives no values for parameter {} (a convnet bug: please report)", p.name))
            })?;
            if shape.as_slice() != p.value.shape() {
                return Err(Error::data(
                    path,
                    format!("parameter {} has shape {shape:?}, the model expects {:?}", p.name, p.value.shape()),
                ));
            }
            p.value.data_mut().copy_from_slice(data);
        }
        if let Some(name) = by_name.keys().next() {
            return Err(Error::data(
                path,
                format!("the graph gives values for {name}, which the model has not (a convnet bug: please report)"),
            ));
        }
        Ok(net)
    }

    /// Writes the checkpoint `out`, with `class_names` (or the file's own, or "class 0"...).
    pub fn save(&self, path: &Path, out: &Path, class_names: Option<Vec<String>>) -> Result<Network> {
        let net = self.network(path)?;
        let classes = net.num_classes();
        let names = class_names.unwrap_or_else(|| self.class_names.clone());
        let names = if names.is_empty() { (0..classes).map(|i| format!("class {i}")).collect() } else { names };
        if names.len() != classes {
            return Err(Error::data(path, format!("the model outputs {classes} classes but {} class names were given", names.len())));
        }
        let meta = CheckpointMeta {
            class_names: names,
            normalization: self.normalization.clone(),
            epoch: 0,
            optimizer_step: 0,
            seed: 0,
            best_val_accuracy: -1.0,
        };
        save_checkpoint(out, &net, &self.run, None, &meta)?;
        Ok(net)
    }
}

/// The shape of the value being read, one example's: an image (NCHW in the graph) or features.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// `nhwc`: a Transpose to NHWC happened, so a Flatten next takes convnet's order.
    /// `pooled`: the output of a global pool, already flat in convnet.
    Image {
        h: usize,
        w: usize,
        c: usize,
        nhwc: bool,
        pooled: bool,
    },
    Flat {
        n: usize,
        chw_from: Option<(usize, usize, usize)>,
    },
}

struct GraphReader<'a> {
    path: &'a Path,
    nodes: &'a [Node],
    constants: HashMap<&'a str, &'a OnnxTensor>,
    consumers: HashMap<&'a str, Vec<usize>>,
    output: &'a str,
    input_name: &'a str,
    input: [usize; 3],
    /// NCHW dims of the graph input as declared (NHWC when a Transpose follows).
    declared: [usize; 3],
    normalization: Option<Normalization>,
    params: Vec<(String, Vec<usize>, Vec<f32>)>,
    notes: Vec<String>,
    /// Nodes folded into the one before them (an Add after a MatMul).
    folded: HashSet<usize>,
    /// Nodes read so far: reading one twice means the graph has a cycle.
    read: HashSet<usize>,
    /// Residual blocks open around the node being read.
    depth: usize,
}

/// Residual blocks nested deeper than this are refused: the reader recurses into each, and a
/// checkpoint's JSON metadata nests two levels per block (serde_json reads 128 at most).
pub const MAX_NESTING: usize = 32;
/// Graphs of more nodes than this are refused (a ResNet-152 has about 500): finding where a
/// residual block's branches meet walks the nodes after it.
pub const MAX_NODES: usize = 10_000;
/// Kernel sizes, strides and pads above this are refused (convnet's largest image side).
const MAX_WINDOW: i64 = MAX_SIDE as i64;

fn attr<'n>(node: &'n Node, name: &str) -> Option<&'n AttributeValue> {
    node.attribute(name)
}

impl<'a> GraphReader<'a> {
    fn new(model: &'a Model, path: &'a Path) -> Result<GraphReader<'a>> {
        let g = &model.graph;
        let fail = |detail: String| Error::data(path, detail);
        if g.nodes.len() > MAX_NODES {
            return Err(fail(format!("the graph has {} nodes, more than the {MAX_NODES} convnet reads", g.nodes.len())));
        }
        if let Some(n) = g.nodes.iter().find(|n| n.outputs.first().is_none_or(|o| o.is_empty())) {
            return Err(fail(format!("node \"{}\" ({}) has no output", n.name, n.op_type)));
        }
        let mut constants: HashMap<&str, &OnnxTensor> = g.initializers.iter().map(|t| (t.name.as_str(), t)).collect();
        for n in &g.nodes {
            if n.op_type == "Constant" {
                match (attr(n, "value"), n.outputs.first()) {
                    (Some(AttributeValue::Tensor(t)), Some(out)) => {
                        constants.insert(out.as_str(), t);
                    }
                    _ => return Err(fail(format!("node \"{}\" (Constant): only a \"value\" tensor attribute is supported", n.name))),
                }
            }
        }
        let inputs: Vec<_> = g.inputs.iter().filter(|i| !constants.contains_key(i.name.as_str())).collect();
        let [input] = inputs[..] else {
            return Err(fail(format!("the graph has {} inputs besides its weights; convnet models take one image batch", inputs.len())));
        };
        let [output] = &g.outputs[..] else {
            return Err(fail(format!("the graph has {} outputs; convnet models have one, the logits", g.outputs.len())));
        };
        if input.elem_type != super::proto::FLOAT {
            return Err(fail(format!("input \"{}\" has element type {}, expected float32 (1)", input.name, input.elem_type)));
        }
        let dims: Vec<Option<usize>> =
            input.shape.iter().map(|d| if let Dim::Value(v) = d { usize::try_from(*v).ok().filter(|&v| v > 0) } else { None }).collect();
        let declared = match dims[..] {
            // Bounded here, before anything is sized by them; the model's own limits follow.
            [_, Some(a), Some(b), Some(c)] if a.max(b).max(c) <= MAX_UNITS => [a, b, c],
            [_, Some(_), Some(_), Some(_)] => {
                return Err(fail(format!(
                    "input \"{}\" has shape {:?}: larger than any image convnet takes (each dimension at most {MAX_UNITS})",
                    input.name, input.shape
                )))
            }
            _ => {
                return Err(fail(format!(
                    "input \"{}\" has shape {:?}; convnet needs [N, C, H, W] (or NHWC) with the image dimensions given as numbers",
                    input.name, input.shape
                )))
            }
        };
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            if n.op_type == "Constant" {
                continue;
            }
            for inp in &n.inputs {
                if !inp.is_empty() && !constants.contains_key(inp.as_str()) {
                    let list = consumers.entry(inp.as_str()).or_default();
                    if !list.contains(&i) {
                        list.push(i);
                    }
                }
            }
        }
        let [c, h, w] = declared;
        Ok(GraphReader {
            path,
            nodes: &g.nodes,
            constants,
            consumers,
            output: output.name.as_str(),
            input_name: input.name.as_str(),
            input: [h, w, c],
            declared,
            normalization: None,
            params: Vec::new(),
            notes: Vec::new(),
            folded: HashSet::new(),
            read: HashSet::new(),
            depth: 0,
        })
    }

    fn node_error(&self, i: usize, detail: impl std::fmt::Display) -> Error {
        let n = &self.nodes[i];
        Error::data(self.path, format!("node \"{}\" ({}): {detail}", n.name, n.op_type))
    }

    fn consumers_of(&self, value: &str) -> Vec<usize> {
        self.consumers.get(value).map(|v| v.iter().copied().filter(|i| !self.folded.contains(i)).collect()).unwrap_or_default()
    }

    /// The one consumer of `value` (None at the graph's output).
    fn single_consumer(&self, value: &str) -> Result<Option<usize>> {
        if value == self.output {
            return Ok(None);
        }
        match self.consumers_of(value)[..] {
            [i] => Ok(Some(i)),
            [] => Err(Error::data(self.path, format!("value \"{value}\" is used by no node and is not the graph's output"))),
            _ => Ok(None),
        }
    }

    fn constant(&self, i: usize, input: usize) -> Result<&'a OnnxTensor> {
        let name = self.nodes[i].inputs.get(input).ok_or_else(|| self.node_error(i, format!("input {input} is missing")))?;
        self.constants
            .get(name.as_str())
            .copied()
            .ok_or_else(|| self.node_error(i, format!("input {input} (\"{name}\") must be a constant")))
    }

    fn floats(&self, i: usize, input: usize) -> Result<(Vec<usize>, &'a [f32])> {
        let t = self.constant(i, input)?;
        match &t.data {
            TensorData::Float(v) if v.is_empty() => Err(self.node_error(i, format!("constant \"{}\" is empty", t.name))),
            TensorData::Float(v) => Ok((t.dims.iter().map(|&d| d as usize).collect(), v)),
            _ => Err(self.node_error(i, format!("constant \"{}\" must be float32", t.name))),
        }
    }

    /// The value of input `input` of node `i` when it is a float constant holding one value
    /// (a scalar, or any shape of ones).
    fn one_value(&self, i: usize, input: usize) -> Option<f32> {
        let (dims, data) = self.floats(i, input).ok()?;
        (data.len() == 1 && dims.iter().all(|&d| d == 1)).then_some(data[0])
    }

    fn ints(&self, i: usize, name: &str) -> Result<Option<Vec<i64>>> {
        match attr(&self.nodes[i], name) {
            None => Ok(None),
            Some(AttributeValue::Ints(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.node_error(i, format!("attribute {name} must be a list of integers"))),
        }
    }

    fn int(&self, i: usize, name: &str, default: i64) -> Result<i64> {
        match attr(&self.nodes[i], name) {
            None => Ok(default),
            Some(AttributeValue::Int(v)) => Ok(*v),
            Some(_) => Err(self.node_error(i, format!("attribute {name} must be an integer"))),
        }
    }

    fn float(&self, i: usize, name: &str, default: f32) -> Result<f32> {
        match attr(&self.nodes[i], name) {
            None => Ok(default),
            Some(AttributeValue::Float(v)) => Ok(*v),
            Some(_) => Err(self.node_error(i, format!("attribute {name} must be a float"))),
        }
    }

    fn string(&self, i: usize, name: &str, default: &str) -> Result<String> {
        match attr(&self.nodes[i], name) {
            None => Ok(default.into()),
            Some(AttributeValue::String(v)) => Ok(String::from_utf8_lossy(v).into_owned()),
            Some(_) => Err(self.node_error(i, format!("attribute {name} must be a string"))),
        }
    }

    /// The attributes a node has that convnet does not read must not change its meaning:
    /// every attribute must be one of `known`.
    fn only_known(&self, i: usize, known: &[&str]) -> Result<()> {
        match self.nodes[i].attributes.iter().find(|a| !known.contains(&a.name.as_str())) {
            Some(a) => Err(self.node_error(i, format!("attribute {} is not supported", a.name))),
            None => Ok(()),
        }
    }

    /// The whole graph: the normalisation prefix, then the layers up to the output.
    fn read(&mut self) -> Result<(Vec<LayerConfig>, Vec<String>)> {
        let mut value = self.input_name.to_string();
        let [c0, h0, w0] = self.declared;
        let mut shape = Shape::Image { h: h0, w: w0, c: c0, nhwc: false, pooled: false };
        // An NHWC input: a Transpose [0, 3, 1, 2] first.
        if let Some(i) = self.single_consumer(&value)? {
            if self.nodes[i].op_type == "Transpose" && self.ints(i, "perm")? == Some(vec![0, 3, 1, 2]) {
                let [h, w, c] = self.declared;
                self.input = [h, w, c];
                shape = Shape::Image { h, w, c, nhwc: false, pooled: false };
                value = self.nodes[i].outputs[0].clone();
            }
        }
        value = self.normalization_prefix(value)?;
        let layers = self.chain(value, self.output.to_string(), None, shape, "")?.0;
        Ok((layers, std::mem::take(&mut self.notes)))
    }

    /// Sub(mean) then Div(std) or Mul(1 / std) by per-channel constants, at the start.
    fn normalization_prefix(&mut self, mut value: String) -> Result<String> {
        let c = self.input[2];
        let per_channel = |dims: &[usize], data: &[f32]| -> Option<Vec<f32>> {
            let channel_shaped = matches!(dims, [1, k, 1, 1] | [k, 1, 1] if *k == c);
            if data.len() == 1 && dims.iter().all(|&d| d == 1) {
                Some(vec![data[0]; c])
            } else if channel_shaped {
                Some(data.to_vec())
            } else {
                None
            }
        };
        let mut mean = vec![0.0; c];
        let mut std = vec![1.0; c];
        let mut found = false;
        for op in ["Sub", "Div|Mul"] {
            let Some(i) = self.single_consumer(&value)? else { break };
            let n = &self.nodes[i];
            if !op.split('|').any(|o| o == n.op_type) || n.inputs.first() != Some(&value) {
                continue;
            }
            let Ok((dims, data)) = self.floats(i, 1) else { break };
            let Some(v) = per_channel(&dims, data) else { break };
            match n.op_type.as_str() {
                "Sub" => mean = v,
                "Div" => std = v,
                _ => std = v.iter().map(|s| 1.0 / s).collect(),
            }
            found = true;
            value = n.outputs[0].clone();
        }
        if found {
            self.normalization = Some(Normalization { mean, std });
        }
        Ok(value)
    }

    fn param(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>) {
        self.params.push((name, shape, data));
    }

    /// Reads nodes from `value` up to `end`, as a layer list whose parameters are named with
    /// `prefix` ("" at the top, "4.residual." in block 4). `first` forces the first node (at a
    /// branch point). Returns the layers and the shape at `end`.
    fn chain(
        &mut self,
        mut value: String,
        end: String,
        mut first: Option<usize>,
        mut shape: Shape,
        prefix: &str,
    ) -> Result<(Vec<LayerConfig>, Shape)> {
        let mut layers = Vec::new();
        while value != end {
            let i = match first.take() {
                Some(i) => i,
                None => {
                    let consumers = self.consumers_of(&value);
                    match consumers[..] {
                        [i] => i,
                        [] => {
                            return Err(Error::data(
                                self.path,
                                format!("value \"{value}\" is used by no node before the graph's output \"{end}\""),
                            ))
                        }
                        _ => {
                            if let Some((nodes, out)) = self.spelt_out_gelu(&value, &consumers) {
                                for i in nodes {
                                    if !self.read.insert(i) {
                                        return Err(self.node_error(i, "is reached twice: the graph has a cycle"));
                                    }
                                }
                                layers.push(LayerConfig::Gelu {});
                                value = out;
                                continue;
                            }
                            let (block, out, out_shape) =
                                self.residual(&value, &consumers, shape, &format!("{prefix}{}.residual.", layers.len()))?;
                            layers.push(block);
                            value = out;
                            shape = out_shape;
                            continue;
                        }
                    }
                }
            };
            if !self.read.insert(i) {
                return Err(self.node_error(i, "is reached twice: the graph has a cycle"));
            }
            let (out, next_shape) = self.layer(i, shape, prefix, &mut layers)?;
            value = out;
            shape = next_shape;
        }
        Ok((layers, shape))
    }

    /// The exact GELU spelt out in the ops of opsets before 20: `Mul(x, 1/sqrt 2)` or
    /// `Div(x, sqrt 2)`, `Erf`, `Add(1)`, then either `Mul(x, that)` and `Mul(0.5)` (convnet,
    /// PyTorch's TorchScript exporter) or `Mul(0.5)` and `Mul(x, that)` (PyTorch's dynamo
    /// exporter); constants on either side where the op commutes. Its five nodes and its
    /// output, or None for anything else.
    fn spelt_out_gelu(&self, value: &str, consumers: &[usize]) -> Option<([usize; 5], String)> {
        let [a, b] = consumers[..] else { return None };
        let node = |i: usize| &self.nodes[i];
        let out = |i: usize| node(i).outputs[0].as_str();
        let next = |i: usize| self.single_consumer(out(i)).ok().flatten();
        // Node i is `op` of `v` and a one-value constant equal to `want`.
        let with_constant = |i: usize, op: &str, v: &str, want: f32| {
            let n = node(i);
            let Some(at) = n.inputs.iter().position(|x| x == v) else { return false };
            n.op_type == op
                && n.inputs.len() == 2
                && (op != "Div" || at == 0)
                && self.one_value(i, 1 - at).is_some_and(|c| (c - want).abs() <= 1e-6 * want)
        };
        let product_of = |i: usize, u: &str, v: &str| {
            let n = node(i);
            n.op_type == "Mul" && n.inputs.len() == 2 && n.inputs.iter().any(|x| x == u) && n.inputs.iter().any(|x| x == v)
        };
        let (scale, times_x) = [(a, b), (b, a)].into_iter().find(|&(s, _)| {
            with_constant(s, "Mul", value, std::f32::consts::FRAC_1_SQRT_2) || with_constant(s, "Div", value, std::f32::consts::SQRT_2)
        })?;
        let erf = next(scale).filter(|&i| node(i).op_type == "Erf" && node(i).inputs.len() == 1)?;
        let add = next(erf).filter(|&i| with_constant(i, "Add", out(erf), 1.0))?;
        let after_add = next(add)?;
        if after_add == times_x {
            // x (1 + erf), then halved.
            let half = next(times_x).filter(|&i| product_of(times_x, value, out(add)) && with_constant(i, "Mul", out(times_x), 0.5))?;
            Some(([scale, erf, add, times_x, half], out(half).to_string()))
        } else {
            // (1 + erf) halved, then times x.
            let ok = with_constant(after_add, "Mul", out(add), 0.5)
                && next(after_add) == Some(times_x)
                && product_of(times_x, value, out(after_add));
            ok.then(|| ([scale, erf, add, after_add, times_x], out(times_x).to_string()))
        }
    }

    /// A residual block at branch point `value`: the consumers meet at an Add; one branch is
    /// the body, the other nothing (the Add takes `value`) or one 1x1 Conv.
    fn residual(&mut self, value: &str, consumers: &[usize], shape: Shape, prefix: &str) -> Result<(LayerConfig, String, Shape)> {
        let [a, b] = consumers[..] else {
            return Err(Error::data(
                self.path,
                format!("value \"{value}\" feeds {} nodes; convnet reads two (a residual block)", consumers.len()),
            ));
        };
        let add = self.merge_point(&[a, b]).ok_or_else(|| {
            Error::data(
                self.path,
                format!("the branches from value \"{value}\" do not meet at an Add (convnet reads residual blocks only)"),
            )
        })?;
        let add_inputs = &self.nodes[add].inputs;
        // The shortcut: the Add itself (identity) or a Conv feeding it.
        let (shortcut, body_first) = if a == add {
            (None, b)
        } else if b == add {
            (None, a)
        } else if self.nodes[a].op_type == "Conv" && add_inputs.contains(&self.nodes[a].outputs[0]) {
            (Some(a), b)
        } else if self.nodes[b].op_type == "Conv" && add_inputs.contains(&self.nodes[b].outputs[0]) {
            (Some(b), a)
        } else {
            return Err(self.node_error(
                add,
                "its inputs are two chains; convnet reads a residual block's shortcut only as the block's input or one 1x1 Conv",
            ));
        };
        let short_value = match shortcut {
            Some(s) => self.nodes[s].outputs[0].clone(),
            None => value.to_string(),
        };
        let body_end =
            add_inputs.iter().find(|v| **v != short_value).cloned().ok_or_else(|| self.node_error(add, "adds a value to itself"))?;
        if self.depth == MAX_NESTING {
            return Err(self.node_error(add, format!("ends a residual block nested more than {MAX_NESTING} deep")));
        }
        self.depth += 1;
        let body = self.chain(value.to_string(), body_end, Some(body_first), shape, prefix);
        self.depth -= 1;
        let (body, body_shape) = body?;
        if let Some(s) = shortcut {
            let mut scratch = Vec::new();
            let short_shape = self.conv(s, shape, &format!("{prefix}shortcut.conv2d."), &mut scratch)?;
            let [LayerConfig::Conv2d { kernel, stride, padding, .. }] = &scratch[..] else { unreachable!("conv() adds one conv2d") };
            // convnet's shortcut: stride ceil(in / out) on each axis.
            let expected_stride = match (shape, body_shape) {
                (Shape::Image { h, w, .. }, Shape::Image { h: oh, w: ow, .. }) => Some(pair(h.div_ceil(oh.max(1)), w.div_ceil(ow.max(1)))),
                _ => None,
            };
            if body_shape == shape {
                return Err(self.node_error(
                    s,
                    "a 1x1 convolution on a residual block's shortcut is supported only where the body changes the shape (convnet adds the input itself otherwise)",
                ));
            }
            if *kernel != Pair::Both(1)
                || *padding != PaddingConfig::Named("valid".into())
                || Some(*stride) != expected_stride
                || short_shape != body_shape
            {
                return Err(self.node_error(
                    s,
                    "a residual shortcut must be a 1x1 convolution without padding mapping the block's input onto its body's output",
                ));
            }
        } else if body_shape != shape {
            return Err(self.node_error(add, "adds the block's input to a body output of another shape without a shortcut convolution"));
        }
        let out = self.nodes[add].outputs[0].clone();
        Ok((LayerConfig::Residual { layers: body }, out, body_shape))
    }

    /// The first node in graph order that every one of `starts` reaches (or is).
    fn merge_point(&self, starts: &[usize]) -> Option<usize> {
        let reach = |start: usize| {
            let mut seen = HashSet::new();
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                if seen.insert(i) {
                    for out in &self.nodes[i].outputs {
                        stack.extend(self.consumers_of(out));
                    }
                }
            }
            seen
        };
        let sets: Vec<HashSet<usize>> = starts.iter().map(|&s| reach(s)).collect();
        (0..self.nodes.len()).find(|i| self.nodes[*i].op_type == "Add" && sets.iter().all(|s| s.contains(i)))
    }

    /// One node (and an Add folded into a MatMul) as layers; returns its output and shape.
    fn layer(&mut self, i: usize, shape: Shape, prefix: &str, layers: &mut Vec<LayerConfig>) -> Result<(String, Shape)> {
        let nodes = self.nodes;
        let node = &nodes[i];
        let out = node.outputs.first().cloned().ok_or_else(|| self.node_error(i, "has no output"))?;
        let image = |what: &str| match shape {
            Shape::Image { h, w, c, .. } => Ok((h, w, c)),
            Shape::Flat { .. } => Err(self.node_error(i, format!("{what} needs an image input, but the input here is flat"))),
        };
        let next = match node.op_type.as_str() {
            "Conv" => self.conv(i, shape, &format!("{prefix}{}.conv2d.", layers.len()), layers)?,
            "MaxPool" | "AveragePool" => {
                let max = node.op_type == "MaxPool";
                let known: &[&str] = if max {
                    &["kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations", "storage_order"]
                } else {
                    &["kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad"]
                };
                self.only_known(i, known)?;
                if self.int(i, "ceil_mode", 0)? != 0 {
                    return Err(self.node_error(i, "attribute ceil_mode = 1 is not supported (convnet rounds output sizes down)"));
                }
                if self.ints(i, "dilations")?.is_some_and(|d| d.iter().any(|&v| v != 1)) {
                    return Err(self.node_error(i, "attribute dilations other than 1 is not supported"));
                }
                if self.int(i, "storage_order", 0)? != 0 {
                    return Err(self.node_error(i, "attribute storage_order = 1 is not supported"));
                }
                let (h, w, c) = image("pooling")?;
                let kernel = self.ints(i, "kernel_shape")?.ok_or_else(|| self.node_error(i, "attribute kernel_shape is missing"))?;
                let (kh, kw) = two(&kernel).ok_or_else(|| self.node_error(i, format!("attribute kernel_shape {kernel:?} is not 2-D")))?;
                let (sh, sw) = match self.ints(i, "strides")? {
                    Some(s) => two(&s).ok_or_else(|| self.node_error(i, format!("attribute strides {s:?} is not 2-D")))?,
                    None => (1, 1),
                };
                let (padding, pads) = self.padding(i, h, w, kh, kw, sh, sw)?;
                if !max && pads.iter().any(|&p| p > 0) && self.int(i, "count_include_pad", 0)? != 0 {
                    return Err(self.node_error(
                        i,
                        "attribute count_include_pad = 1 with padding is not supported (convnet averages only the cells inside the image)",
                    ));
                }
                let (oh, ow) = window_out(h, w, kh, kw, sh, sw, &pads)
                    .ok_or_else(|| self.node_error(i, "the window is larger than the padded input"))?;
                let size = pair(kh, kw);
                let stride = Some(pair(sh, sw));
                layers.push(if max {
                    LayerConfig::MaxPool { size, stride, padding }
                } else {
                    LayerConfig::AvgPool { size, stride, padding }
                });
                Shape::Image { h: oh, w: ow, c, nhwc: false, pooled: false }
            }
            "Relu" | "Sigmoid" | "Tanh" => {
                layers.push(match node.op_type.as_str() {
                    "Relu" => LayerConfig::Relu {},
                    "Sigmoid" => LayerConfig::Sigmoid {},
                    _ => LayerConfig::Tanh {},
                });
                shape
            }
            "Gelu" => {
                self.only_known(i, &["approximate"])?;
                let approximate = self.string(i, "approximate", "none")?;
                if approximate != "none" {
                    return Err(self.node_error(
                        i,
                        format!("approximate = \"{approximate}\" is not supported: convnet's gelu is the exact (erf) form"),
                    ));
                }
                layers.push(LayerConfig::Gelu {});
                shape
            }
            "LRN" => {
                self.only_known(i, &["size", "alpha", "beta", "bias"])?;
                image("LRN")?;
                if attr(node, "size").is_none() {
                    return Err(self.node_error(i, "attribute size is missing"));
                }
                let size = self.int(i, "size", 0)?;
                if size < 1 || size % 2 == 0 {
                    return Err(self.node_error(i, format!("attribute size {size} must be odd (convnet's window is symmetric)")));
                }
                layers.push(LayerConfig::Lrn {
                    depth_radius: ((size - 1) / 2) as usize,
                    bias: self.float(i, "bias", 1.0)?,
                    alpha: self.float(i, "alpha", 1e-4)? / size as f32,
                    beta: self.float(i, "beta", 0.75)?,
                });
                shape
            }
            "BatchNormalization" => {
                self.only_known(i, &["epsilon", "momentum", "training_mode", "spatial"])?;
                if self.int(i, "training_mode", 0)? != 0 || node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(self.node_error(i, "training mode is not supported (an inference graph uses the running statistics)"));
                }
                let channels = match shape {
                    Shape::Image { c, .. } => c,
                    Shape::Flat { n, chw_from: Some(_) } => {
                        return Err(
                            self.node_error(i, format!("a batch norm over the {n} features of a flattened NCHW image is not supported"))
                        )
                    }
                    Shape::Flat { n, .. } => n,
                };
                let name = format!("{prefix}{}.batch_norm.", layers.len());
                for (k, p) in ["gamma", "beta", "running_mean", "running_var"].iter().enumerate() {
                    let (_, data) = self.floats(i, k + 1)?;
                    if data.len() != channels {
                        return Err(self.node_error(i, format!("input {} has {} values for {channels} channels", k + 1, data.len())));
                    }
                    self.param(format!("{name}{p}"), vec![channels], data.to_vec());
                }
                // ONNX weighs the running value by momentum, convnet (like PyTorch) the batch's;
                // read to 6 decimals, so that 0.1 written as 0.9 in f32 comes back as 0.1.
                let momentum = ((1.0 - f64::from(self.float(i, "momentum", 0.9)?)) * 1e6).round() as f32 / 1e6;
                let eps = self.float(i, "epsilon", 1e-5)?;
                layers.push(LayerConfig::BatchNorm { momentum, eps, scale: true });
                shape
            }
            "Dropout" | "Identity" => shape,
            "Mul" | "Div" => {
                // By one constant value (not per channel): a scale layer.
                let x = &self.nodes[i].inputs;
                let at = x.iter().position(|v| !self.constants.contains_key(v.as_str())).unwrap_or(0);
                let divide = self.nodes[i].op_type == "Div";
                if x.len() != 2 || (divide && at != 0) {
                    return Err(self.node_error(i, "only a value times (or divided by) one constant is supported"));
                }
                let Some(c) = self.one_value(i, 1 - at) else {
                    let (dims, _) = self.floats(i, 1 - at)?;
                    return Err(self.node_error(i, format!("a constant of shape {dims:?}: only one value (a scale) is supported here")));
                };
                let factor = if divide { 1.0 / c } else { c };
                crate::layers::scale::check_factor(factor).map_err(|e| self.node_error(i, e))?;
                layers.push(LayerConfig::Scale { factor });
                shape
            }
            "Transpose" => match (shape, self.ints(i, "perm")?) {
                (Shape::Image { h, w, c, nhwc: false, pooled }, Some(p)) if p == [0, 2, 3, 1] => {
                    // Only a Flatten may follow: convnet flattens (h, w, c).
                    let next = self.single_consumer(&out)?;
                    if !next.is_some_and(|n| self.nodes[n].op_type == "Flatten" || self.nodes[n].op_type == "Reshape") {
                        return Err(self.node_error(i, "a Transpose to NHWC is supported only right before a Flatten"));
                    }
                    Shape::Image { h, w, c, nhwc: true, pooled }
                }
                (_, p) => return Err(self.node_error(i, format!("attribute perm {p:?} is not supported here"))),
            },
            "Flatten" | "Reshape" | "Squeeze" => {
                if node.op_type == "Flatten" && self.int(i, "axis", 1)? != 1 {
                    return Err(self.node_error(i, "attribute axis must be 1 (keep the batch axis)"));
                }
                if node.op_type == "Reshape" {
                    // [N, features], the batch as 0 (kept), -1 or a number, the features as -1
                    // or their number.
                    let features = match shape {
                        Shape::Image { pooled: true, c, .. } => c,
                        Shape::Image { h, w, c, .. } => h * w * c,
                        Shape::Flat { n, .. } => n,
                    } as i64;
                    let t = self.constant(i, 1)?;
                    let ok = matches!(&t.data, TensorData::Int64(v) if v.len() == 2
                        && (v[1] == features || (v[1] == -1 && v[0] != -1))
                        && (v[0] == 0 || v[0] == -1 || v[0] > 0));
                    // allowzero = 1 makes a 0 mean zero, not "keep": only a shape with a 0 minds.
                    let zero = matches!(&t.data, TensorData::Int64(v) if v.contains(&0));
                    if !ok || (zero && self.int(i, "allowzero", 0)? != 0) {
                        return Err(self.node_error(i, format!("only a reshape to [N, {features}] is supported")));
                    }
                }
                match shape {
                    Shape::Image { pooled: true, c, .. } => Shape::Flat { n: c, chw_from: None },
                    Shape::Image { h, w, .. } if node.op_type == "Squeeze" && h * w > 1 => {
                        return Err(self.node_error(i, "squeezes an image larger than 1x1"))
                    }
                    Shape::Image { h, w, c, nhwc, .. } => {
                        layers.push(LayerConfig::Flatten {});
                        let chw_from = (!nhwc && h * w > 1).then_some((h, w, c));
                        Shape::Flat { n: h * w * c, chw_from }
                    }
                    Shape::Flat { .. } if node.op_type == "Squeeze" => return Err(self.node_error(i, "squeezes a flat value")),
                    flat => flat,
                }
            }
            "GlobalAveragePool" => {
                let (_, _, c) = image("GlobalAveragePool")?;
                layers.push(LayerConfig::GlobalAvgPool {});
                Shape::Image { h: 1, w: 1, c, nhwc: false, pooled: true }
            }
            // torch.export's AdaptiveAvgPool2d(1): the mean over axes 2 and 3 (an attribute
            // before opset 18, an input since).
            "ReduceMean" => {
                self.only_known(i, &["axes", "keepdims", "noop_with_empty_axes"])?;
                let (_, _, c) = image("ReduceMean")?;
                let axes = match self.ints(i, "axes")? {
                    Some(a) => a,
                    None => match node.inputs.get(1).map(|_| self.constant(i, 1)).transpose()? {
                        Some(OnnxTensor { data: TensorData::Int64(v), .. }) => v.clone(),
                        _ => return Err(self.node_error(i, "only a mean over the spatial axes [2, 3] is supported")),
                    },
                };
                let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + 4 } else { a }).collect();
                axes.sort_unstable();
                if axes != [2, 3] {
                    return Err(self.node_error(i, format!("a mean over axes {axes:?} is not supported (only the spatial axes [2, 3])")));
                }
                layers.push(LayerConfig::GlobalAvgPool {});
                if self.int(i, "keepdims", 1)? != 0 {
                    Shape::Image { h: 1, w: 1, c, nhwc: false, pooled: true }
                } else {
                    Shape::Flat { n: c, chw_from: None }
                }
            }
            "Gemm" | "MatMul" => self.dense(i, shape, &format!("{prefix}{}.dense.", layers.len()), layers)?,
            "Softmax" if out == self.output => {
                self.notes.push(format!("node \"{}\" (Softmax) at the end left out: convnet models output logits", node.name));
                shape
            }
            "Add" => return Err(self.node_error(i, "an Add that is not the end of a residual block is not supported")),
            other => return Err(self.node_error(i, format!("operator {other} is not supported by convnet (see docs/interop.md)"))),
        };
        // An Add folded into a MatMul ends at that Add's output.
        let out = match self.folded.iter().find(|&&f| self.nodes[f].inputs.contains(&out)) {
            Some(&f) => self.nodes[f].outputs[0].clone(),
            None => out,
        };
        Ok((out, next))
    }

    /// SAME, VALID or explicit padding from pads / auto_pad; also the pads [t, l, b, r].
    #[allow(clippy::too_many_arguments)]
    fn padding(&self, i: usize, h: usize, w: usize, kh: usize, kw: usize, sh: usize, sw: usize) -> Result<(PaddingConfig, [usize; 4])> {
        let same = same_pads(h, w, kh, kw, sh, sw);
        let auto = self.string(i, "auto_pad", "NOTSET")?;
        let pads = match auto.as_str() {
            "NOTSET" => match self.ints(i, "pads")? {
                None => [0; 4],
                Some(p) => match p[..] {
                    [t, l, b, r] if p.iter().all(|&v| (0..=MAX_WINDOW).contains(&v)) => [t as usize, l as usize, b as usize, r as usize],
                    _ => return Err(self.node_error(i, format!("attribute pads {p:?} must be 4 numbers from 0 to {MAX_WINDOW}"))),
                },
            },
            "VALID" => [0; 4],
            "SAME_UPPER" => same,
            _ => return Err(self.node_error(i, format!("attribute auto_pad = {auto} is not supported"))),
        };
        let config = if pads == [0; 4] {
            PaddingConfig::Named("valid".into())
        } else if pads == same {
            PaddingConfig::Named("same".into())
        } else {
            let [t, l, b, r] = pads;
            PaddingConfig::Sides([t, b, l, r])
        };
        Ok((config, pads))
    }

    /// A Conv node as a conv2d layer whose parameters' names start with `name` ("3.conv2d.").
    fn conv(&mut self, i: usize, shape: Shape, name: &str, layers: &mut Vec<LayerConfig>) -> Result<Shape> {
        self.only_known(i, &["kernel_shape", "strides", "pads", "auto_pad", "dilations", "group"])?;
        if self.int(i, "group", 1)? != 1 {
            return Err(self.node_error(i, "attribute group other than 1 is not supported (no grouped or depthwise convolution)"));
        }
        if self.ints(i, "dilations")?.is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(self.node_error(i, "attribute dilations other than 1 is not supported"));
        }
        let (h, w, c) = match shape {
            Shape::Image { h, w, c, nhwc: false, .. } => (h, w, c),
            _ => return Err(self.node_error(i, "a convolution needs an NCHW image input here")),
        };
        let (dims, data) = self.floats(i, 1)?;
        let [co, ci, kh, kw] = dims[..] else { return Err(self.node_error(i, format!("weights of shape {dims:?} are not OIHW"))) };
        if ci != c {
            return Err(self.node_error(i, format!("weights take {ci} input channels, the input has {c}")));
        }
        if let Some(k) = self.ints(i, "kernel_shape")? {
            if two(&k) != Some((kh, kw)) {
                return Err(self.node_error(i, format!("attribute kernel_shape {k:?} does not match the weights {dims:?}")));
            }
        }
        let (sh, sw) = match self.ints(i, "strides")? {
            Some(s) => two(&s).ok_or_else(|| self.node_error(i, format!("attribute strides {s:?} is not 2-D")))?,
            None => (1, 1),
        };
        let (padding, pads) = self.padding(i, h, w, kh, kw, sh, sw)?;
        let (oh, ow) =
            window_out(h, w, kh, kw, sh, sw, &pads).ok_or_else(|| self.node_error(i, "the kernel is larger than the padded input"))?;
        let hwio = oihw_to_hwio(data, [co, ci, kh, kw]);
        let bias = match self.nodes[i].inputs.get(2).filter(|s| !s.is_empty()) {
            Some(_) => {
                let (_, b) = self.floats(i, 2)?;
                if b.len() != co {
                    return Err(self.node_error(i, format!("the bias has {} values for {co} filters", b.len())));
                }
                b.to_vec()
            }
            None => vec![0.0; co],
        };
        self.param(format!("{name}weight"), vec![kh, kw, ci, co], hwio);
        self.param(format!("{name}bias"), vec![co], bias);
        layers.push(LayerConfig::Conv2d {
            filters: co,
            kernel: pair(kh, kw),
            stride: pair(sh, sw),
            padding,
            l2: 0.0,
            init: None,
            dirac: false,
            whiten: false,
        });
        Ok(Shape::Image { h: oh, w: ow, c: co, nhwc: false, pooled: false })
    }

    /// Gemm, or MatMul with the Add of a constant bias after it, as a dense layer.
    fn dense(&mut self, i: usize, shape: Shape, name: &str, layers: &mut Vec<LayerConfig>) -> Result<Shape> {
        let nodes = self.nodes;
        let node = &nodes[i];
        let (fin, chw_from) = match shape {
            Shape::Flat { n, chw_from } => (n, chw_from),
            Shape::Image { pooled: true, c, .. } => (c, None),
            Shape::Image { .. } => return Err(self.node_error(i, "a dense layer needs a flat input (a Flatten first)")),
        };
        let (dims, data) = self.floats(i, 1)?;
        let gemm = node.op_type == "Gemm";
        if gemm {
            self.only_known(i, &["alpha", "beta", "transA", "transB"])?;
            if self.float(i, "alpha", 1.0)? != 1.0 || self.float(i, "beta", 1.0)? != 1.0 || self.int(i, "transA", 0)? != 0 {
                return Err(self.node_error(i, "only alpha = 1, beta = 1 and transA = 0 are supported"));
            }
        }
        let trans_b = gemm && self.int(i, "transB", 0)? != 0;
        let (rows, cols) = match dims[..] {
            [r, c] => (r, c),
            _ => return Err(self.node_error(i, format!("weights of shape {dims:?} are not 2-D"))),
        };
        let (k, fout) = if trans_b { (cols, rows) } else { (rows, cols) };
        if k != fin {
            return Err(self.node_error(i, format!("weights take {k} inputs, the input has {fin}")));
        }
        // convnet's [in, out], its row r_hwc holding ONNX's input at the (c, h, w) position.
        let onnx_at = |kk: usize, o: usize| if trans_b { data[o * k + kk] } else { data[kk * fout + o] };
        let mut w = vec![0.0; k * fout];
        let order: Vec<usize> = match chw_from {
            Some((h, wd, c)) => chw_to_hwc_order(h, wd, c),
            None => (0..k).collect(),
        };
        for (kk, &row) in order.iter().enumerate() {
            for o in 0..fout {
                w[row * fout + o] = onnx_at(kk, o);
            }
        }
        let mut bias = None;
        let bias_of = |t: &[f32]| -> Option<Vec<f32>> {
            match t.len() {
                1 => Some(vec![t[0]; fout]),
                n if n == fout => Some(t.to_vec()),
                _ => None,
            }
        };
        if gemm {
            if node.inputs.get(2).is_some_and(|s| !s.is_empty()) {
                let (_, b) = self.floats(i, 2)?;
                bias = Some(bias_of(b).ok_or_else(|| self.node_error(i, format!("the bias has {} values for {fout} outputs", b.len())))?);
            }
        } else if let Some(add) = self.single_consumer(&node.outputs[0])? {
            let a = &nodes[add];
            if a.op_type == "Add" {
                let other = a.inputs.iter().position(|v| *v != node.outputs[0]).unwrap_or(1);
                if let Ok((_, b)) = self.floats(add, other) {
                    bias = Some(
                        bias_of(b).ok_or_else(|| self.node_error(add, format!("the bias has {} values for {fout} outputs", b.len())))?,
                    );
                    self.folded.insert(add);
                }
            }
        }
        self.param(format!("{name}weight"), vec![k, fout], w);
        let has_bias = bias.is_some();
        if let Some(bias) = bias {
            self.param(format!("{name}bias"), vec![fout], bias);
        }
        // No C input (Gemm) or no Add (MatMul): a dense layer without a bias.
        layers.push(LayerConfig::Dense { units: fout, l2: 0.0, init: None, bias: has_bias });
        Ok(Shape::Flat { n: fout, chw_from: None })
    }
}

/// Two kernel sizes or strides, each from 1 to MAX_WINDOW.
fn two(v: &[i64]) -> Option<(usize, usize)> {
    match v[..] {
        [a, b] if (1..=MAX_WINDOW).contains(&a) && (1..=MAX_WINDOW).contains(&b) => Some((a as usize, b as usize)),
        _ => None,
    }
}

fn pair(a: usize, b: usize) -> Pair {
    if a == b {
        Pair::Both(a)
    } else {
        Pair::HW([a, b])
    }
}

/// TensorFlow's SAME pads [t, l, b, r]: out = ceil(in / stride), the odd pixel after.
fn same_pads(h: usize, w: usize, kh: usize, kw: usize, sh: usize, sw: usize) -> [usize; 4] {
    let total = |i: usize, k: usize, s: usize| ((i.div_ceil(s) - 1) * s + k).saturating_sub(i);
    let (th, tw) = (total(h, kh, sh), total(w, kw, sw));
    [th / 2, tw / 2, th - th / 2, tw - tw / 2]
}

/// out = floor((in + before + after - k) / s) + 1 on both axes, None when k is larger.
fn window_out(h: usize, w: usize, kh: usize, kw: usize, sh: usize, sw: usize, pads: &[usize; 4]) -> Option<(usize, usize)> {
    let axis = |i: usize, k: usize, s: usize, before: usize, after: usize| {
        i.checked_add(before)?.checked_add(after)?.checked_sub(k).map(|v| v / s + 1)
    };
    Some((axis(h, kh, sh, pads[0], pads[2])?, axis(w, kw, sw, pads[1], pads[3])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_pads_are_tensorflows() {
        assert_eq!(same_pads(5, 5, 2, 2, 2, 2), [0, 0, 1, 1]);
        assert_eq!(same_pads(6, 7, 4, 4, 1, 1), [1, 1, 2, 2]);
        assert_eq!(same_pads(32, 32, 3, 3, 2, 2), [0, 0, 1, 1]);
        assert_eq!(window_out(5, 5, 2, 2, 2, 2, &[0, 0, 1, 1]), Some((3, 3)));
        assert_eq!(window_out(2, 5, 3, 2, 1, 1, &[0, 0, 0, 0]), None);
    }
}
