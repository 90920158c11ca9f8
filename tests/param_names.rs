//! Parameter names follow the documented rule (src/model/plan.rs, docs/model.md) at every depth:
//!   <config index>[.residual.<index in the block's layer list>]...<kind>.<param>
//! with config indexes, never built-layer indexes, and "<block>.residual.shortcut.conv2d.<param>"
//! for a projection shortcut. Checkpoints store tensors under exactly these names.
mod common;
use std::path::Path;

use convnet::data::Normalization;
use convnet::model::Network;
use convnet::train::{save_checkpoint, CheckpointMeta};
use convnet::Config;

/// conv, relu (folded into the conv), a block [conv2d, relu, conv2d, relu] that changes the
/// channels (so it has a projection shortcut), batch norm, flatten, dense.
const BLOCK_WITH_FOLDED_RELUS: &str = r#"
[[layers]]
type = "conv2d"
filters = 3
kernel = 3
[[layers]]
type = "relu"
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 4, kernel = 3, padding = "same" },
  { type = "relu" },
  { type = "conv2d", filters = 4, kernel = 3, padding = "same" },
  { type = "relu" },
]
[[layers]]
type = "batch_norm"
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 3
"#;

fn names(net: &Network) -> Vec<String> {
    net.param_names().into_iter().map(String::from).collect()
}

#[test]
fn a_block_of_conv_relu_conv_relu_is_named_by_its_config_indexes() {
    let cfg = Config::from_toml(&common::model_config("names", "[6, 6, 2]", BLOCK_WITH_FOLDED_RELUS), "names").unwrap();
    let net = Network::build(&cfg.model, 1).unwrap();
    // Read off the config by hand: the block is entry 2, its convs are entries 0 and 2 of its
    // list (the relus at 1 and 3 are folded into them and have no parameters).
    let expected = [
        "0.conv2d.weight",
        "0.conv2d.bias",
        "2.residual.0.conv2d.weight",
        "2.residual.0.conv2d.bias",
        "2.residual.2.conv2d.weight",
        "2.residual.2.conv2d.bias",
        "2.residual.shortcut.conv2d.weight",
        "2.residual.shortcut.conv2d.bias",
        "3.batch_norm.gamma",
        "3.batch_norm.beta",
        "3.batch_norm.running_mean",
        "3.batch_norm.running_var",
        "5.dense.weight",
        "5.dense.bias",
    ];
    assert_eq!(names(&net), expected);
    // The shortcut is the 1x1 projection from the block's 3 input channels to its 4.
    let shortcut = net.params().into_iter().find(|p| p.name == "2.residual.shortcut.conv2d.weight").unwrap();
    assert_eq!(shortcut.value.shape(), [1, 1, 3, 4]);
    // The block's forward FLOPs, by hand (multiply-adds x 2 on its 6x6 output): conv 3->4 3x3,
    // 2*36*4*27 = 7776; conv 4->4 3x3, 2*36*4*36 = 10368; the 1x1 shortcut 3->4, 2*36*4*3 = 864.
    assert_eq!(net.layers()[1].label(), "layer 2 (residual)");
    assert_eq!(net.layers()[1].flops(), 7776 + 10368 + 864);
    // Batch norm's running statistics are saved state, not trained.
    let trainable: Vec<String> = net.trainable_sizes().into_iter().map(|(n, _)| n).collect();
    assert!(!trainable.iter().any(|n| n.contains("running_")), "{trainable:?}");
    assert_eq!(trainable.len(), expected.len() - 2);
}

/// The names the documented rule gives for a config's layer list, computed from the raw TOML
/// (not from convnet's own parser or plan): for blocks that keep their shape, which is all
/// that configs/ has.
fn names_by_the_rule(layers: &[toml::Value], prefix: &str, out: &mut Vec<String>) {
    for (i, layer) in layers.iter().enumerate() {
        let kind = layer["type"].as_str().unwrap();
        let roles: &[&str] = match kind {
            "conv2d" | "dense" => &["weight", "bias"],
            "batch_norm" => &["gamma", "beta", "running_mean", "running_var"],
            "residual" => {
                names_by_the_rule(layer["layers"].as_array().unwrap(), &format!("{prefix}{i}.residual."), out);
                &[]
            }
            _ => &[],
        };
        out.extend(roles.iter().map(|role| format!("{prefix}{i}.{kind}.{role}")));
    }
}

#[test]
fn every_shipped_config_is_named_by_the_rule_and_the_resnet_as_read_off_its_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["cifar10-resnet", "cifar10-seed", "fashion-mnist", "fashion-mnist-bn"] {
        let path = root.join(format!("configs/{file}.toml"));
        let cfg = Config::load(&path).unwrap();
        let net = Network::build(&cfg.model, 0).unwrap();
        let raw: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut expected = Vec::new();
        names_by_the_rule(raw["layers"].as_array().unwrap(), "", &mut expected);
        assert_eq!(names(&net), expected, "{file}");
    }
    // A few of the ResNet's, by hand from configs/cifar10-resnet.toml: the second conv and
    // batch norm of the block at entry 7 are entries 3 and 4 of its list; the dense layer is
    // entry 18.
    let cfg = Config::load(&root.join("configs/cifar10-resnet.toml")).unwrap();
    let all = names(&Network::build(&cfg.model, 0).unwrap());
    for name in [
        "0.conv2d.weight",
        "7.residual.3.conv2d.weight",
        "7.residual.4.batch_norm.gamma",
        "16.residual.4.batch_norm.running_var",
        "18.dense.bias",
    ] {
        assert!(all.iter().any(|n| n == name), "{name} missing from {all:?}");
    }
    assert_eq!(all.len(), 2 * 8 + 4 * 8 + 2, "8 convs, 8 batch norms and the dense layer");
}

#[test]
fn a_checkpoint_stores_its_tensors_under_the_parameter_names() {
    let cfg = Config::from_toml(&common::model_config("names", "[6, 6, 2]", BLOCK_WITH_FOLDED_RELUS), "names").unwrap();
    let net = Network::build(&cfg.model, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names.safetensors");
    let meta = CheckpointMeta {
        class_names: vec!["a".into(), "b".into(), "c".into()],
        normalization: Normalization { mean: vec![0.5; 2], std: vec![0.25; 2] },
        epoch: 1,
        optimizer_step: 0,
        seed: 1,
        best_val_accuracy: 0.0,
    };
    save_checkpoint(&path, &net, &cfg.run, None, &meta).unwrap();
    let (header, _) = common::header(&std::fs::read(&path).unwrap());
    let mut stored: Vec<String> = header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
    let mut expected = names(&net);
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected);
}

#[test]
fn every_layer_is_labelled_by_its_config_index_and_kind() {
    let layers = r#"
[[layers]]
type = "conv2d"
filters = 3
kernel = 3
padding = "same"
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "lrn"
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 4, kernel = 3, padding = "same" },
  { type = "relu" },
  { type = "tanh" },
]
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "avg_pool"
size = 2
[[layers]]
type = "sigmoid"
[[layers]]
type = "dropout"
rate = 0.1
[[layers]]
type = "global_avg_pool"
[[layers]]
type = "dense"
units = 3
"#;
    let cfg = Config::from_toml(&common::model_config("labels", "[8, 8, 2]", layers), "labels").unwrap();
    let net = Network::build(&cfg.model, 1).unwrap();
    let labels: Vec<&str> = net.layers().iter().map(|l| l.label()).collect();
    let expected = [
        "layer 0 (conv2d)",
        // The relu after a batch norm is folded into it, as into a conv2d.
        "layer 1 (batch_norm + relu)",
        "layer 3 (lrn)",
        "layer 4 (residual)",
        "layer 5 (max_pool)",
        "layer 6 (avg_pool)",
        "layer 7 (sigmoid)",
        "layer 8 (dropout)",
        "layer 9 (global_avg_pool)",
        "layer 10 (dense)",
    ];
    assert_eq!(labels, expected);
    let residual = cfg.model.plan().unwrap().layers.into_iter().find(|p| p.index == 4).expect("a plan for layer 4");
    let convnet::model::PlannedOp::Residual { body, shortcut } = residual.op else { panic!("layer 4 is a block") };
    assert_eq!(body.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), ["layer 4.0 (conv2d + relu)", "layer 4.2 (tanh)"]);
    assert_eq!(shortcut.map(|s| s.label), Some("layer 4 (residual) shortcut".to_string()));
    // The trace and the summary use the same labels.
    let mut net = net;
    let trace = net.forward_trace(&convnet::Tensor::zeros(&[1, 8, 8, 2])).unwrap();
    assert_eq!(trace.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), expected);
    let table = convnet::model::summary::summary(&net);
    assert!(expected.iter().all(|l| table.contains(l)), "{table}");
}
