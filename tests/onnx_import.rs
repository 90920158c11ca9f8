//! ONNX import: graphs built with the `onnx` Python package's helpers (tests/data/onnx, with
//! the script that made them and onnxruntime's outputs) import and compute what onnxruntime
//! computed; convnet's own exports import back to the same logits and the same accuracy; what
//! convnet cannot express is refused with the node, its op and the attribute.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use convnet::interop::onnx::proto::{AttributeValue, Model};
use convnet::interop::onnx::{export_onnx, import_onnx, Imported};
use convnet::ops::softmax::softmax;
use convnet::train::Checkpoint;
use convnet::Tensor;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx").join(name)
}

fn convnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).output().expect("run convnet");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The imported network's logits for u8 images [n, h, w, c], normalised as `predict` does.
fn logits(imported: &Imported, path: &Path, pixels: &[u8], n: usize) -> Tensor {
    let [h, w, c] = imported.model.input;
    let mut x = Tensor::zeros(&[n, h, w, c]);
    imported.normalization.apply(pixels, x.data_mut());
    imported.network(path).unwrap().predict(&x).unwrap()
}

#[derive(serde::Deserialize)]
struct Expected {
    input_shape: Vec<usize>,
    output: Vec<f32>,
}

/// The script's input: pixel (37 i + 11) % 256 at flat index i of the graph's input layout,
/// given back in convnet's NHWC order.
fn script_pixels(input_shape: &[usize], nhwc_input: bool) -> (usize, Vec<u8>) {
    let n = input_shape[0];
    let (c, h, w) =
        if nhwc_input { (input_shape[3], input_shape[1], input_shape[2]) } else { (input_shape[1], input_shape[2], input_shape[3]) };
    let mut out = vec![0u8; n * h * w * c];
    for img in 0..n {
        for k in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let i = if nhwc_input { ((img * h + y) * w + x) * c + k } else { ((img * c + k) * h + y) * w + x };
                    out[((img * h + y) * w + x) * c + k] = ((37 * i + 11) % 256) as u8;
                }
            }
        }
    }
    (n, out)
}

fn check_python_model(name: &str, nhwc_input: bool, softmax_output: bool) -> Imported {
    let path = data(&format!("{name}.onnx"));
    let imported = import_onnx(&std::fs::read(&path).unwrap(), &path).unwrap();
    let expected: Expected = serde_json::from_str(&std::fs::read_to_string(data(&format!("{name}.json"))).unwrap()).unwrap();
    let (n, pixels) = script_pixels(&expected.input_shape, nhwc_input);
    let mut ours = logits(&imported, &path, &pixels, n);
    if softmax_output {
        ours = softmax(&ours).unwrap();
    }
    let d = common::rel_err_of(ours.data(), &expected.output);
    eprintln!("{name}: max relative difference from onnxruntime {d:e}");
    assert!(d <= 1e-4, "{name}: convnet's outputs differ from onnxruntime's by {d:e}");
    imported
}

#[test]
fn a_torch_style_graph_imports_and_computes_what_onnxruntime_computed() {
    let imported = check_python_model("torch_style", false, false);
    let kinds: Vec<&str> = imported.model.layers.iter().map(|l| l.kind()).collect();
    assert_eq!(kinds, ["conv2d", "relu", "max_pool", "batch_norm", "conv2d", "residual", "flatten", "dense", "relu", "dense"]);
    assert_eq!(imported.model.input, [9, 8, 3]);
    let norm = &imported.normalization;
    assert!(norm.mean.iter().all(|m| (0.3..0.6).contains(m)) && norm.std.iter().all(|s| (0.2..0.3).contains(s)), "{norm:?}");
}

#[test]
fn a_keras_style_graph_with_an_nhwc_input_and_a_softmax_imports() {
    let imported = check_python_model("keras_style", true, true);
    assert_eq!(imported.model.input, [8, 8, 1]);
    assert_eq!(imported.normalization.std, [0.25]);
    assert!(imported.notes.iter().any(|n| n.contains("Softmax")), "{:?}", imported.notes);
    let kinds: Vec<&str> = imported.model.layers.iter().map(|l| l.kind()).collect();
    assert_eq!(kinds, ["conv2d", "tanh", "lrn", "avg_pool", "residual", "global_avg_pool", "dense"]);
}

/// Export, import, and compare the logits of the two checkpoints on random images.
fn round_trip(ck_path: &Path, seed: u64) -> Imported {
    let ck = Checkpoint::load(ck_path).unwrap();
    let onnx = export_onnx(&ck).unwrap();
    let imported = import_onnx(&onnx, Path::new("exported.onnx")).unwrap();
    assert_eq!(imported.normalization, ck.meta.normalization);
    assert_eq!(imported.class_names, ck.meta.class_names);
    assert_eq!(imported.run, ck.config.run);
    let [h, w, c] = ck.config.model.input;
    let n = 3;
    let mut r = common::rng(seed);
    let pixels: Vec<u8> = (0..n * h * w * c).map(|_| rand::Rng::gen(&mut r)).collect();
    let theirs = logits(&imported, Path::new("exported.onnx"), &pixels, n);
    let mut x = Tensor::zeros(&[n, h, w, c]);
    ck.meta.normalization.apply(&pixels, x.data_mut());
    let ours = ck.network().unwrap().predict(&x).unwrap();
    let d = common::rel_err_of(theirs.data(), ours.data());
    eprintln!("{}: export -> import max relative difference {d:e}", ck_path.display());
    assert!(d <= 1e-6, "{}: the imported export's logits differ by {d:e}", ck_path.display());
    imported
}

#[test]
fn exports_import_back_to_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (name, input, layers)) in common::INTEROP_NETWORKS.iter().enumerate() {
        let ck = common::random_checkpoint(dir.path(), &common::model_config(name, input, layers), 10 + i as u64);
        let imported = round_trip(&ck, 20 + i as u64);
        assert_eq!(imported.model.name, *name);
    }
    for entry in std::fs::read_dir("configs").unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let ck = common::random_checkpoint(dir.path(), &text, 30);
        round_trip(&ck, 31);
    }
}

#[test]
fn the_imported_config_leaves_out_only_what_an_inference_graph_has_not() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (name, input, layers)) in common::INTEROP_NETWORKS.iter().enumerate() {
        // A batch-norm momentum other than the default comes back too.
        let layers = layers.replace("{ type = \"batch_norm\" }", "{ type = \"batch_norm\", momentum = 0.01 }");
        let ck_path = common::random_checkpoint(dir.path(), &common::model_config(name, input, &layers), 1 + i as u64);
        let imported = round_trip(&ck_path, 2);
        let original = Checkpoint::load(&ck_path).unwrap().config.model;
        let without_dropout: Vec<_> = original.layers.iter().filter(|l| l.kind() != "dropout").cloned().collect();
        assert_eq!(imported.model.layers, without_dropout, "{name}");
    }
}

/// The import's error message for tests/data/onnx/`file` with `edit` applied to it.
fn edited_error(file: &str, edit: impl FnOnce(&mut Model)) -> String {
    let mut model = Model::decode(&std::fs::read(data(file)).unwrap()).unwrap();
    edit(&mut model);
    match import_onnx(&model.encode(), Path::new("edited.onnx")) {
        Ok(_) => panic!("the edited model imported"),
        Err(e) => e.to_string(),
    }
}

fn import_error(edit: impl FnOnce(&mut Model)) -> String {
    edited_error("torch_style.onnx", edit)
}

fn keras_error(edit: impl FnOnce(&mut Model)) -> String {
    edited_error("keras_style.onnx", edit)
}

fn node<'a>(m: &'a mut Model, name: &str) -> &'a mut convnet::interop::onnx::proto::Node {
    m.graph.nodes.iter_mut().find(|n| n.name == name).unwrap()
}

#[test]
fn an_onnx_gelu_node_is_gelu_and_its_tanh_approximation_is_refused() {
    let mut model = Model::decode(&std::fs::read(data("torch_style.onnx")).unwrap()).unwrap();
    let relus = |m: &convnet::interop::onnx::import::Imported| m.model.layers.iter().filter(|l| l.kind() == "relu").count();
    let before = import_onnx(&model.encode(), Path::new("relu.onnx")).unwrap();
    node(&mut model, "relu1").op_type = "Gelu".into();
    let imported = import_onnx(&model.encode(), Path::new("gelu.onnx")).unwrap();
    let kinds = |m: &convnet::interop::onnx::import::Imported| m.model.layers.iter().map(|l| l.kind()).collect::<Vec<_>>();
    let position = kinds(&imported).iter().position(|&k| k == "gelu").expect("a gelu layer");
    assert_eq!(kinds(&before)[position], "relu", "the Gelu stands where the Relu stood");
    assert_eq!(relus(&imported), relus(&before) - 1);
    let e = import_error(|m| {
        let n = node(m, "relu1");
        n.op_type = "Gelu".into();
        n.attributes
            .push(convnet::interop::onnx::proto::Attribute { name: "approximate".into(), value: AttributeValue::String(b"tanh".to_vec()) });
    });
    assert!(e.contains("node \"relu1\" (Gelu)") && e.contains("approximate = \"tanh\" is not supported"), "{e}");
}

#[test]
fn what_convnet_cannot_express_is_refused_with_the_node_op_and_attribute() {
    let e = import_error(|m| node(m, "relu1").op_type = "Elu".into());
    assert!(e.contains("edited.onnx") && e.contains("node \"relu1\" (Elu)") && e.contains("operator Elu is not supported"), "{e}");
    let e = import_error(|m| {
        node(m, "conv1").attributes.push(convnet::interop::onnx::proto::Attribute { name: "group".into(), value: AttributeValue::Int(2) })
    });
    assert!(e.contains("node \"conv1\" (Conv)") && e.contains("attribute group"), "{e}");
    let e = import_error(|m| {
        node(m, "conv1")
            .attributes
            .push(convnet::interop::onnx::proto::Attribute { name: "dilations".into(), value: AttributeValue::Ints(vec![2, 2]) })
    });
    assert!(e.contains("attribute dilations"), "{e}");
    let e = import_error(|m| {
        let n = node(m, "pool1");
        n.attributes.push(convnet::interop::onnx::proto::Attribute { name: "ceil_mode".into(), value: AttributeValue::Int(1) })
    });
    assert!(e.contains("node \"pool1\" (MaxPool)") && e.contains("ceil_mode"), "{e}");
    let e = import_error(|m| {
        let n = node(m, "pool1");
        n.op_type = "AveragePool".into();
        n.attributes.push(convnet::interop::onnx::proto::Attribute { name: "pads".into(), value: AttributeValue::Ints(vec![1, 1, 1, 1]) });
        n.attributes.push(convnet::interop::onnx::proto::Attribute { name: "count_include_pad".into(), value: AttributeValue::Int(1) });
    });
    assert!(e.contains("count_include_pad"), "{e}");
    let e = import_error(|m| {
        node(m, "fc1").attributes.push(convnet::interop::onnx::proto::Attribute { name: "alpha".into(), value: AttributeValue::Float(2.0) })
    });
    assert!(e.contains("node \"fc1\" (Gemm)") && e.contains("alpha = 1"), "{e}");
    // An Add that is not a residual block's.
    let e = import_error(|m| {
        let n = node(m, "relu2");
        n.op_type = "Add".into();
        n.inputs.push("h1".into());
    });
    assert!(e.contains("(Add)"), "{e}");
    // A cycle: relu2 feeds fc1 again, which fed relu2.
    let e = import_error(|m| {
        node(m, "relu2").outputs = vec!["f".into()];
    });
    assert!(e.contains("cycle"), "{e}");
    // A 1x1 convolution on a shortcut whose body keeps the shape: convnet would add x itself.
    let e = import_error(|m| {
        m.graph.initializers.push(convnet::interop::onnx::proto::Tensor::float("sc.w", &[5, 5, 1, 1], vec![0.1; 25]));
        let sc = convnet::interop::onnx::proto::Node::new("Conv", "shortcut", &["a5", "sc.w"], &["scv"]);
        m.graph.nodes.insert(10, sc);
        node(m, "res_add").inputs = vec!["r3".into(), "scv".into()];
    });
    assert!(e.contains("node \"shortcut\" (Conv)") && e.contains("only where the body changes the shape"), "{e}");
    let e = import_error(|m| node(m, "relu1").outputs.clear());
    assert!(e.contains("node \"relu1\" (Relu) has no output"), "{e}");
    let e = import_error(|m| m.graph.inputs[0].shape[2] = convnet::interop::onnx::proto::Dim::Value(1 << 40));
    assert!(e.contains("larger than any image"), "{e}");
    let e = import_error(|m| {
        node(m, "conv1").attributes.retain(|a| a.name != "pads");
        node(m, "conv1")
            .attributes
            .push(convnet::interop::onnx::proto::Attribute { name: "pads".into(), value: AttributeValue::Ints(vec![1, 1, 1, 1 << 40]) });
    });
    assert!(e.contains("attribute pads"), "{e}");
    let e = import_error(|m| m.graph.inputs[0].shape[2] = convnet::interop::onnx::proto::Dim::Param("H".into()));
    assert!(e.contains("image dimensions given as numbers"), "{e}");
}

#[test]
fn a_reshape_must_keep_the_batch_and_an_lrn_must_say_its_size() {
    use convnet::interop::onnx::proto::TensorData;
    for bad in [vec![-1, 3], vec![-1, -1], vec![2, 3], vec![0, 5, 1]] {
        let e = keras_error(|m| {
            let t = m.graph.initializers.iter_mut().find(|t| t.name == "shape").unwrap();
            t.dims = vec![bad.len() as i64];
            t.data = TensorData::Int64(bad.clone());
        });
        assert!(e.contains("node \"reshape\" (Reshape): only a reshape to [N, 6]"), "{bad:?}: {e}");
    }
    let e = keras_error(|m| node(m, "lrn").attributes.retain(|a| a.name != "size"));
    assert!(e.contains("node \"lrn\" (LRN): attribute size is missing"), "{e}");
}

#[test]
fn malformed_files_are_refused_not_panicked_on() {
    let bytes = std::fs::read(data("torch_style.onnx")).unwrap();
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        let r = import_onnx(&bytes[..cut], Path::new("cut.onnx"));
        let e = r.err().map(|e| e.to_string()).unwrap_or_else(|| panic!("a file cut at {cut} bytes imported"));
        assert!(e.starts_with("cut.onnx:"), "{e}");
    }
    let e = import_onnx(b"not an onnx file at all", Path::new("text.onnx")).err().unwrap().to_string();
    assert!(e.contains("text.onnx") && e.contains("not a valid ONNX file"), "{e}");
}

#[test]
fn export_then_import_then_eval_gives_the_same_accuracy_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    common::write_quadrant_idx(&data_dir, 64, 40, 5);
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, common::tiny_config(&data_dir, 2, "kind = \"adam\"\nlr = 0.01")).unwrap();
    let out = dir.path().join("run");
    let (code, _, err) = convnet(&["train", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let best = out.join("best.safetensors");
    let onnx = dir.path().join("tiny.onnx");
    let (code, stdout, err) = convnet(&["export", "--model", best.to_str().unwrap(), onnx.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("ONNX opset 17"), "{stdout}");
    let imported = dir.path().join("imported.safetensors");
    let (code, stdout, err) = convnet(&["import", onnx.to_str().unwrap(), "--out", imported.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("imported.toml"), "{stdout}");
    let accuracy = |model: &Path| {
        let (code, stdout, err) = convnet(&["eval", "--model", model.to_str().unwrap(), "--data", data_dir.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        stdout.lines().find(|l| l.contains("accuracy")).unwrap().to_string()
    };
    assert_eq!(accuracy(&best), accuracy(&imported));
    // The config written beside it fine-tunes the imported weights: with a learning rate of
    // 1e-9 the weights after an epoch are the imported ones, to far better than a fresh
    // initialisation could come.
    let tuned = dir.path().join("tuned");
    let (code, _, err) = convnet(&[
        "train",
        "--config",
        dir.path().join("imported.toml").to_str().unwrap(),
        "--init-from",
        imported.to_str().unwrap(),
        "--data",
        data_dir.to_str().unwrap(),
        "--epochs",
        "1",
        "--lr",
        "1e-9",
        "--out",
        tuned.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let (before, _) = common::checkpoint_state(&imported);
    let (after, _) = common::checkpoint_state(&tuned.join("last.safetensors"));
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        let d = b.data().iter().zip(a.data()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-5, "a weight moved by {d} from the imported one");
    }
    // And the run kept the imported normalisation, not the data set's own.
    let norm = |p: &Path| Checkpoint::load(p).unwrap().meta.normalization;
    assert_eq!(norm(&imported), norm(&tuned.join("last.safetensors")));
    // --overwrite would empty the folder the run starts from: refused, the checkpoint kept.
    let start = tuned.join("last.safetensors");
    let (code, _, err) = convnet(&[
        "train",
        "--config",
        dir.path().join("imported.toml").to_str().unwrap(),
        "--init-from",
        start.to_str().unwrap(),
        "--data",
        data_dir.to_str().unwrap(),
        "--overwrite",
        "--out",
        tuned.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lies in the run folder that --overwrite would empty"), "{err}");
    assert!(start.is_file());
}

#[test]
fn the_command_line_refuses_a_bad_file_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"\x08\x96").unwrap();
    let out = dir.path().join("out.safetensors");
    let (code, _, err) = convnet(&["import", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.onnx") && err.contains("not a valid ONNX file"), "{err}");
    assert!(!out.exists());
}

/// PyTorch's own exports (scripts/torch_onnx_models.py: the TorchScript exporter and, with
/// onnxscript installed, the torch.export one, whose weights lie in a .onnx.data file beside
/// the model) import and give PyTorch's logits. Needs the script's output, so it runs in CI's
/// PyTorch step.
#[test]
#[ignore = "needs CONVNET_TORCH_ONNX_DIR, written by scripts/torch_onnx_models.py (.ci/run's PyTorch step)"]
fn pytorch_exports_import_and_give_pytorchs_logits() {
    let dir = PathBuf::from(std::env::var_os("CONVNET_TORCH_ONNX_DIR").expect("CONVNET_TORCH_ONNX_DIR"));
    let mut models: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect();
    models.sort();
    assert!(models.len() >= 2, "no models in {}", dir.display());
    #[derive(serde::Deserialize)]
    struct Record {
        input_shape: Vec<usize>,
        input: Vec<f32>,
        logits: Vec<f32>,
    }
    for path in models {
        let imported = import_onnx(&std::fs::read(&path).unwrap(), &path).unwrap_or_else(|e| panic!("{e}"));
        let record: Record = serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        let [n, c, h, w] = record.input_shape[..] else { panic!("input shape {:?}", record.input_shape) };
        assert_eq!(imported.model.input, [h, w, c]);
        // The input in convnet's layout; these graphs have no normalisation of their own.
        let mut x = Tensor::zeros(&[n, h, w, c]);
        for img in 0..n {
            for k in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        x.data_mut()[((img * h + y) * w + xx) * c + k] = record.input[((img * c + k) * h + y) * w + xx];
                    }
                }
            }
        }
        let ours = imported.network(&path).unwrap().predict(&x).unwrap();
        let d = common::rel_err_of(ours.data(), &record.logits);
        eprintln!("{}: max relative difference {d:e}", path.display());
        assert!(d <= 1e-4, "{}: convnet's logits differ from PyTorch's by {d:e}", path.display());
    }
}

/// A graph of `depth` residual blocks nested inside each other (each body: a Relu and the next
/// block), then Flatten and Gemm.
fn nested_blocks(depth: usize) -> Model {
    use convnet::interop::onnx::proto::{Dim, Graph, Node, Tensor as OnnxTensor, ValueInfo, FLOAT};
    fn block(value: &str, depth: usize, nodes: &mut Vec<Node>) -> String {
        let relu = format!("{value}.r");
        nodes.push(Node::new("Relu", &format!("relu{depth}"), &[value], &[&relu]));
        if depth == 0 {
            return relu;
        }
        let inner = block(&relu, depth - 1, nodes);
        let out = format!("{value}.add");
        nodes.push(Node::new("Add", &format!("add{depth}"), &[&inner, value], &[&out]));
        out
    }
    let mut nodes = Vec::new();
    let out = block("x", depth, &mut nodes);
    nodes.push(Node::new("Flatten", "flatten", &[&out], &["f"]).with("axis", AttributeValue::Int(1)));
    nodes.push(Node::new("Gemm", "fc", &["f", "w"], &["logits"]).with("transB", AttributeValue::Int(1)));
    Model {
        ir_version: 8,
        opset_import: vec![(String::new(), 17)],
        graph: Graph {
            nodes,
            initializers: vec![OnnxTensor::float("w", &[2, 4], vec![0.5; 8])],
            inputs: vec![ValueInfo {
                name: "x".into(),
                elem_type: FLOAT,
                shape: vec![Dim::Param("N".into()), Dim::Value(1), Dim::Value(2), Dim::Value(2)],
            }],
            outputs: vec![ValueInfo { name: "logits".into(), elem_type: FLOAT, shape: vec![] }],
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn nested_residual_blocks_import_up_to_a_depth_limit() {
    use convnet::interop::onnx::import::MAX_NESTING;
    // The deepest accepted import makes a checkpoint that loads back.
    let dir = tempfile::tempdir().unwrap();
    let deepest = import_onnx(&nested_blocks(MAX_NESTING).encode(), Path::new("nested.onnx")).unwrap();
    let ck = dir.path().join("deep.safetensors");
    deepest.save(Path::new("nested.onnx"), &ck, None).unwrap();
    Checkpoint::load(&ck).unwrap().network().unwrap();
    let imported = import_onnx(&nested_blocks(10).encode(), Path::new("nested.onnx")).unwrap();
    let mut depth = 0;
    let mut layers = &imported.model.layers;
    while let Some(convnet::model::spec::LayerConfig::Residual { layers: inner }) = layers.iter().find(|l| l.kind() == "residual") {
        depth += 1;
        layers = inner;
    }
    assert_eq!(depth, 10);
    let e = import_onnx(&nested_blocks(MAX_NESTING + 1).encode(), Path::new("deep.onnx")).err().unwrap().to_string();
    assert!(e.contains("nested more than 32 deep"), "{e}");
}

#[test]
fn a_graph_of_more_nodes_than_the_limit_is_refused_before_it_is_read() {
    use convnet::interop::onnx::import::MAX_NODES;
    use convnet::interop::onnx::proto::Node;
    let mut model = nested_blocks(0);
    let relus = (0..MAX_NODES).map(|i| Node::new("Relu", &format!("extra{i}"), &[&format!("e{i}")], &[&format!("e{}", i + 1)]));
    model.graph.nodes.extend(relus);
    let e = import_onnx(&model.encode(), Path::new("big.onnx")).err().unwrap().to_string();
    assert!(e.contains(&format!("has {} nodes, more than the {MAX_NODES}", MAX_NODES + 3)), "{e}");
}

#[test]
fn external_data_is_bounded_by_the_largest_model_before_it_is_read() {
    use convnet::interop::onnx::proto::{External, TensorData};
    // The torch-style model with its first conv's weights declared external, with `elements`
    // values, in a file beside it that holds 4 bytes.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), [0u8; 4]).unwrap();
    let error = |elements: i64| {
        let mut model = Model::decode(&std::fs::read(data("torch_style.onnx")).unwrap()).unwrap();
        let t = model.graph.initializers.iter_mut().find(|t| t.name == "c1.w").unwrap();
        t.dims = vec![elements];
        t.data = TensorData::External(External { data_type: 1, location: "w.bin".into(), offset: 0, length: None });
        let path = dir.path().join("model.onnx");
        import_onnx(&model.encode(), &path).err().unwrap().to_string()
    };
    // 2^27 floats (at most 2^30 bytes) may be a model's: the file is read, and is too short.
    let e = error(1 << 27);
    assert!(e.contains("holds fewer than the 536870912 bytes"), "{e}");
    // 2^29 values (up to 2^32 bytes) are more than any model convnet builds: refused unread.
    let e = error(1 << 29);
    assert!(e.contains("larger than any model convnet builds"), "{e}");
}

#[test]
fn residual_blocks_one_after_another_are_not_nested() {
    use convnet::interop::onnx::import::MAX_NESTING;
    use convnet::interop::onnx::proto::Node;
    // MAX_NESTING + 1 identity blocks in a row (Relu, Add), then the usual head.
    let mut model = nested_blocks(0);
    let head = model.graph.nodes.split_off(1);
    let mut value = model.graph.nodes[0].outputs[0].clone();
    for i in 0..=MAX_NESTING {
        let (r, a) = (format!("b{i}.r"), format!("b{i}.add"));
        model.graph.nodes.push(Node::new("Relu", &format!("b{i}.relu"), &[&value], &[&r]));
        model.graph.nodes.push(Node::new("Add", &format!("b{i}.add"), &[&r, &value], &[&a]));
        value = a;
    }
    model.graph.nodes.extend(head);
    model.graph.nodes.iter_mut().find(|n| n.name == "flatten").unwrap().inputs = vec![value];
    let imported = import_onnx(&model.encode(), Path::new("row.onnx")).unwrap();
    assert_eq!(imported.model.layers.iter().filter(|l| l.kind() == "residual").count(), MAX_NESTING + 1);
}

#[test]
fn squeeze_only_flattens_a_pooled_map_and_reduce_mean_reads_its_axes_either_way() {
    // Squeeze on an image larger than 1x1 is not a flatten.
    let e = import_error(|m| node(m, "flatten").op_type = "Squeeze".into());
    assert!(e.contains("node \"flatten\" (Squeeze): squeezes an image larger than 1x1"), "{e}");
    // The keras-style model's GlobalAveragePool as ReduceMean over [2, 3], the axes as an
    // attribute (before opset 18) or as a constant input (since): the same outputs.
    let path = data("keras_style.onnx");
    let reference = import_onnx(&std::fs::read(&path).unwrap(), &path).unwrap();
    for as_input in [false, true] {
        let mut model = Model::decode(&std::fs::read(&path).unwrap()).unwrap();
        let gap = node(&mut model, "gap");
        gap.op_type = "ReduceMean".into();
        if as_input {
            gap.inputs.push("axes".into());
            model.graph.initializers.push(convnet::interop::onnx::proto::Tensor::int64("axes", &[2], vec![-1, 2]));
        } else {
            gap.attributes.push(convnet::interop::onnx::proto::Attribute { name: "axes".into(), value: AttributeValue::Ints(vec![2, 3]) });
        }
        let imported = import_onnx(&model.encode(), &path).unwrap();
        assert_eq!(imported.model.layers, reference.model.layers, "axes as input: {as_input}");
        assert_eq!(imported.params, reference.params);
    }
    // Other axes are not a global pool.
    let e = keras_error(|m| {
        let gap = node(m, "gap");
        gap.op_type = "ReduceMean".into();
        gap.attributes.push(convnet::interop::onnx::proto::Attribute { name: "axes".into(), value: AttributeValue::Ints(vec![1]) });
    });
    assert!(e.contains("a mean over axes [1] is not supported"), "{e}");
}

#[test]
fn gelu_spelt_out_as_pytorch_writes_it_imports_and_a_near_miss_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let layers = "[[layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel = 3\n[[layers]]\ntype = \"gelu\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n";
    let ck_path = common::random_checkpoint(dir.path(), &common::model_config("gelu", "[5, 4, 1]", layers), 3);
    let exported = Model::decode(&export_onnx(&Checkpoint::load(&ck_path).unwrap()).unwrap()).unwrap();
    let ops: Vec<&str> = exported.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert!(ops.windows(5).any(|w| w == ["Mul", "Erf", "Add", "Mul", "Mul"]), "{ops:?}");
    // PyTorch (opset < 20) divides by sqrt 2 where convnet multiplies by its inverse.
    let as_pytorch = |constant: f32| {
        let mut m = exported.clone();
        let scale = m.graph.nodes.iter().position(|n| n.name == "1.gelu.scale").expect("the gelu's first node");
        m.graph.nodes[scale].op_type = "Div".into();
        let name = m.graph.nodes[scale].inputs[1].clone();
        let t = m.graph.initializers.iter_mut().find(|t| t.name == name).unwrap();
        *t = convnet::interop::onnx::proto::Tensor::float(&name, &[], vec![constant]);
        import_onnx(&m.encode(), Path::new("pytorch.onnx"))
    };
    let imported = as_pytorch(std::f32::consts::SQRT_2).unwrap();
    let kinds: Vec<&str> = imported.model.layers.iter().map(|l| l.kind()).collect();
    assert_eq!(kinds, ["conv2d", "gelu", "flatten", "dense"]);
    // Dividing by 2 is not GELU: the branch is then read as what it is, and refused.
    assert!(as_pytorch(2.0).is_err());
}

#[test]
fn a_mul_or_div_by_one_constant_is_a_scale_layer_and_a_per_channel_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layers = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 3\n[[layers]]\ntype = \"scale\"\nfactor = 0.125\n";
    let ck_path = common::random_checkpoint(dir.path(), &common::model_config("scaled", "[2, 2, 1]", layers), 4);
    let exported = Model::decode(&export_onnx(&Checkpoint::load(&ck_path).unwrap()).unwrap()).unwrap();
    let edited = |op: &str, constant: Vec<f32>| {
        let mut m = exported.clone();
        let scale = m.graph.nodes.iter().position(|n| n.name == "2.scale").expect("the scale's Mul");
        m.graph.nodes[scale].op_type = op.into();
        let name = m.graph.nodes[scale].inputs[1].clone();
        let dims = if constant.len() == 1 { vec![] } else { vec![constant.len()] };
        *m.graph.initializers.iter_mut().find(|t| t.name == name).unwrap() =
            convnet::interop::onnx::proto::Tensor::float(&name, &dims, constant);
        import_onnx(&m.encode(), Path::new("scaled.onnx"))
    };
    let factor = |imported: Imported| match imported.model.layers.last() {
        Some(convnet::model::spec::LayerConfig::Scale { factor }) => *factor,
        other => panic!("{other:?}"),
    };
    assert_eq!(factor(edited("Mul", vec![0.125]).unwrap()), 0.125);
    assert_eq!(factor(edited("Div", vec![8.0]).unwrap()), 0.125);
    let e = edited("Mul", vec![1.0, 2.0, 3.0]).err().unwrap().to_string();
    assert!(e.contains("node \"2.scale\" (Mul)") && e.contains("only one value (a scale)"), "{e}");
    let e = edited("Div", vec![0.0]).err().unwrap().to_string();
    assert!(e.contains("factor must be a finite number other than 0"), "{e}");
}
