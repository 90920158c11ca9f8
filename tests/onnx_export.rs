//! ONNX export checked by an independent runtime: every exported model runs in tract (a Rust
//! ONNX runtime that shares no code with convnet) and its logits must match convnet's on the
//! same images within 1e-4 relative. The networks cover every layer type, SAME, VALID and
//! explicit padding, odd sizes and strides, and every config in configs/.

mod common;

use std::path::Path;

use convnet::data::Normalization;
use convnet::interop::onnx::proto::{Model, TensorData};
use convnet::interop::onnx::{export_onnx, onnx_model};
use convnet::train::Checkpoint;
use convnet::Tensor;
use rand::Rng;
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, IntoRunnable, Tensor as TractTensor};

/// Random u8 images [n, h, w, c].
fn images(n: usize, shape: [usize; 3], seed: u64) -> Vec<u8> {
    let mut r = common::rng(seed);
    (0..n * shape.iter().product::<usize>()).map(|_| r.gen()).collect()
}

/// convnet's logits for the images, normalised as `predict` does.
fn convnet_logits(ck: &Checkpoint, pixels: &[u8], n: usize) -> Tensor {
    let [h, w, c] = ck.config.model.input;
    let mut x = Tensor::zeros(&[n, h, w, c]);
    ck.meta.normalization.apply(pixels, x.data_mut());
    ck.network().unwrap().predict(&x).unwrap()
}

/// tract's logits for the images, given as the exported graph wants them: NCHW in [0, 1].
fn tract_logits(onnx: &[u8], pixels: &[u8], n: usize, [h, w, c]: [usize; 3]) -> Tensor {
    let nchw = common::nchw_unit(pixels, n, [h, w, c]);
    let model = tract_onnx::onnx().model_for_read(&mut &onnx[..]).expect("tract reads the model");
    let plan = model.into_optimized().expect("tract optimises the model").into_runnable().expect("tract plans the model");
    let input = TractTensor::from_shape(&[n, c, h, w], &nchw).unwrap();
    let out = plan.run(tvec![input.into()]).expect("tract runs the model");
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    Tensor::from_vec(view.shape(), view.iter().copied().collect()).unwrap()
}

/// With CONVNET_ONNX_DUMP=DIR, writes DIR/<name>.onnx and DIR/<name>.json (the input, NCHW in
/// [0, 1], and convnet's logits) for scripts/check_onnx.py, which runs them in onnxruntime
/// (.ci/run does both).
fn dump_for_onnxruntime(name: &str, onnx: &[u8], pixels: &[u8], n: usize, [h, w, c]: [usize; 3], logits: &Tensor) {
    let Some(dir) = std::env::var_os("CONVNET_ONNX_DUMP") else { return };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}.onnx")), onnx).unwrap();
    let nchw = common::nchw_unit(pixels, n, [h, w, c]);
    let json = serde_json::json!({ "input_shape": [n, c, h, w], "input": nchw, "logits_shape": logits.shape(), "logits": logits.data() });
    std::fs::write(dir.join(format!("{name}.json")), json.to_string()).unwrap();
}

/// Exports the checkpoint, runs it in tract on 3 random images, returns the relative difference.
fn export_and_compare(ck_path: &Path, seed: u64) -> f32 {
    let ck = Checkpoint::load(ck_path).unwrap();
    let onnx = export_onnx(&ck).unwrap();
    let n = 3;
    let pixels = images(n, ck.config.model.input, seed);
    let ours = convnet_logits(&ck, &pixels, n);
    let theirs = tract_logits(&onnx, &pixels, n, ck.config.model.input);
    dump_for_onnxruntime(&ck.config.model.name, &onnx, &pixels, n, ck.config.model.input, &ours);
    let d = common::rel_err(&theirs, &ours);
    assert!(d <= 1e-4, "{}: tract's logits differ from convnet's by {d:e} (relative)", ck_path.display());
    d
}

/// A random checkpoint of common::INTEROP_NETWORKS[i] in `dir`.
fn network(dir: &Path, i: usize, seed: u64) -> std::path::PathBuf {
    let (name, input, layers) = common::INTEROP_NETWORKS[i];
    common::random_checkpoint(dir, &common::model_config(name, input, layers), seed)
}

#[test]
fn every_plain_layer_type_on_odd_sizes_matches_tract() {
    let dir = tempfile::tempdir().unwrap();
    export_and_compare(&network(dir.path(), 0, 1), 2);
}

#[test]
fn batch_norm_and_residual_blocks_match_tract() {
    let dir = tempfile::tempdir().unwrap();
    export_and_compare(&network(dir.path(), 1, 3), 4);
}

#[test]
fn explicit_padding_and_a_flatten_not_followed_by_dense_match_tract() {
    // The flatten feeds a batch norm over features, so the graph transposes to NHWC first.
    let dir = tempfile::tempdir().unwrap();
    let ck = network(dir.path(), 2, 5);
    export_and_compare(&ck, 6);
    let model = onnx_model(&Checkpoint::load(&ck).unwrap()).unwrap();
    let ops: Vec<&str> = model.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert!(ops.contains(&"Transpose"), "{ops:?}");
}

#[test]
fn every_config_in_configs_matches_tract() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir("configs").unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let ck = common::random_checkpoint(dir.path(), &text, 7);
        let d = export_and_compare(&ck, 8);
        eprintln!("{}: relative difference {d:e}", path.display());
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} configs found");
}

#[test]
fn the_graph_follows_the_onnx_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let ck_path = network(dir.path(), 0, 1);
    let ck = Checkpoint::load(&ck_path).unwrap();
    let bytes = export_onnx(&ck).unwrap();
    let model = Model::decode(&bytes).unwrap();
    assert_eq!(model.ir_version, 8);
    assert_eq!(model.opset_import, [(String::new(), 17)]);
    let g = &model.graph;
    assert_eq!(g.inputs[0].name, "input");
    assert_eq!(g.outputs[0].name, "logits");
    assert_eq!(g.nodes.last().unwrap().outputs, ["logits"]);
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(&ops[..2], ["Sub", "Div"], "the normalisation comes first");
    assert!(!ops.contains(&"Dropout"));
    // LRN's alpha is multiplied by the window size 2 * 2 + 1.
    let lrn = g.nodes.iter().find(|n| n.op_type == "LRN").unwrap();
    use convnet::interop::onnx::proto::AttributeValue as A;
    assert_eq!(lrn.attribute("size"), Some(&A::Int(5)));
    assert_eq!(lrn.attribute("alpha"), Some(&A::Float(0.1 * 5.0)));
    let avg = g.nodes.iter().find(|n| n.op_type == "AveragePool").unwrap();
    assert_eq!(avg.attribute("count_include_pad"), Some(&A::Int(0)));
    // The metadata carries the class names and normalisation.
    let meta = |k: &str| model.metadata_props.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(meta("convnet.class_names"), r#"["class 0","class 1","class 2"]"#);
    let norm: Normalization = serde_json::from_str(&meta("convnet.normalization")).unwrap();
    assert_eq!(norm, ck.meta.normalization);
    // Weights are OIHW.
    let w = g.initializers.iter().find(|t| t.name == "0.conv2d.weight").unwrap();
    assert_eq!(w.dims, [5, 3, 3, 3]);
    assert!(matches!(w.data, TensorData::Float(ref v) if v.len() == 135));
}
