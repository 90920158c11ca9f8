//! PyTorch export: the state_dict's keys, shapes and layouts, checked here; the logits, checked
//! in PyTorch itself by scripts/check_pytorch.py on the models this test writes when
//! CONVNET_PYTORCH_DUMP is set (.ci/run does both).

mod common;

use std::path::Path;

use convnet::interop::pytorch::{export_pytorch, pytorch_export};
use convnet::train::Checkpoint;
use convnet::Tensor;
use rand::Rng;
use safetensors::SafeTensors;

/// The checkpoints: common::INTEROP_NETWORKS and every config in configs/.
fn checkpoints(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = common::INTEROP_NETWORKS
        .iter()
        .enumerate()
        .map(|(i, (n, input, layers))| common::random_checkpoint(dir, &common::model_config(n, input, layers), i as u64))
        .collect();
    for entry in std::fs::read_dir("configs").unwrap() {
        v.push(common::random_checkpoint(dir, &std::fs::read_to_string(entry.unwrap().path()).unwrap(), 9));
    }
    v
}

#[test]
fn the_state_dict_has_pytorchs_keys_shapes_and_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::load(&checkpoints(dir.path())[1]).unwrap();
    let export = pytorch_export(&ck).unwrap();
    let keys = export.keys();
    for k in [
        "layers.0.weight",
        "layers.1.weight",
        "layers.1.num_batches_tracked",
        "layers.3.body.0.weight",
        "layers.3.body.1.running_var",
        "layers.3.body.3.body.0.bias",
        "layers.5.body.0.weight",
        "layers.5.body.2.running_var",
        "layers.5.shortcut.weight",
        "layers.7.weight",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    let bytes = export.safetensors().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("layers.0.weight").unwrap().shape(), [6, 2, 3, 3]);
    assert_eq!(st.tensor("layers.5.shortcut.weight").unwrap().shape(), [8, 6, 1, 1]);
    assert_eq!(st.tensor("layers.7.weight").unwrap().shape(), [4, 8]);
    let tracked = st.tensor("layers.1.num_batches_tracked").unwrap();
    assert_eq!((tracked.dtype(), tracked.shape()), (safetensors::Dtype::I64, &[][..]));
    // OIHW: PyTorch's weight[o][i][y][x] is convnet's w[y][x][i][o].
    let ours = ck.network().unwrap();
    let w = ours.params().into_iter().find(|p| p.name == "0.conv2d.weight").unwrap().value.clone();
    let theirs = st.tensor("layers.0.weight").unwrap();
    let at = |o: usize, i: usize, y: usize, x: usize| {
        let k = ((o * 2 + i) * 3 + y) * 3 + x;
        f32::from_le_bytes(theirs.data()[4 * k..4 * k + 4].try_into().unwrap())
    };
    assert_eq!(at(5, 1, 2, 0), w.data()[((2 * 3) * 2 + 1) * 6 + 5]);
    // model.py has the module of every layer, in order, with the folded relus at their indexes.
    let py = &export.model_py;
    assert!(py.contains("Conv2dTF(2, 6, (3, 3), (1, 1), \"same\"),  # layer 0 (conv2d)"), "{py}");
    assert!(py.contains("nn.BatchNorm2d(6, eps=1e-5, momentum=0.1),  # layer 1 (batch_norm + relu)\n            nn.ReLU(),"), "{py}");
    assert!(py.contains("Residual("), "{py}");
    // One top-level module per config index, in order (the folded relu keeps its own index).
    let top: Vec<&str> = py
        .lines()
        .filter(|l| l.starts_with("            ") && !l.starts_with("             ") && !l.trim_start().starts_with(')'))
        .map(|l| l.trim())
        .collect();
    let kinds: Vec<&str> = top.iter().map(|l| l.split(['(', ',']).next().unwrap()).collect();
    assert_eq!(kinds, ["Conv2dTF", "nn.BatchNorm2d", "nn.ReLU", "Residual", "nn.GELU", "Residual", "GlobalAvgPool", "nn.Linear"], "{py}");
}

#[test]
fn a_flatten_before_dense_permutes_the_dense_columns_and_otherwise_flattens_nhwc() {
    let dir = tempfile::tempdir().unwrap();
    let cks = checkpoints(dir.path());
    let plain = pytorch_export(&Checkpoint::load(&cks[0]).unwrap()).unwrap();
    assert!(plain.model_py.contains("nn.Flatten(),  # layer 7 (flatten)"), "{}", plain.model_py);
    assert!(plain.model_py.contains("nn.Dropout(0.5)"));
    let padded = pytorch_export(&Checkpoint::load(&cks[2]).unwrap()).unwrap();
    assert!(padded.model_py.contains("FlattenNHWC(),  # layer 3 (flatten)"), "{}", padded.model_py);
    assert!(padded.model_py.contains("nn.BatchNorm1d("), "{}", padded.model_py);
    assert!(
        padded.model_py.contains("Conv2dTF(2, 3, (3, 3), (1, 1), (0, 1, 1, 2))"),
        "explicit pads as (left, right, top, bottom): {}",
        padded.model_py
    );
}

/// With CONVNET_PYTORCH_DUMP=DIR: every checkpoint exported to DIR/<name>/ and its input and
/// logits in DIR/<name>.json, for scripts/check_pytorch.py.
#[test]
fn exports_are_written_for_the_pytorch_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::env::var_os("CONVNET_PYTORCH_DUMP").map(std::path::PathBuf::from).unwrap_or_else(|| dir.path().join("dump"));
    for (k, path) in checkpoints(dir.path()).iter().enumerate() {
        let mut ck = Checkpoint::load(path).unwrap();
        if k == 0 {
            // Names that would end a Python docstring or start an escape must stay text.
            ck.meta.class_names = vec![r#"a"""b"#.into(), r"c:\x\N".into(), "\u{fc} \u{2028}".into()];
        }
        let name = ck.config.model.name.clone();
        let name = &name;
        export_pytorch(&ck, &out.join(name)).unwrap();
        assert!(out.join(name).join("model.py").is_file() && out.join(name).join("model.safetensors").is_file());
        let [h, w, c] = ck.config.model.input;
        let n = 2;
        let mut r = common::rng(100 + k as u64);
        let pixels: Vec<u8> = (0..n * h * w * c).map(|_| r.gen()).collect();
        let mut x = Tensor::zeros(&[n, h, w, c]);
        ck.meta.normalization.apply(&pixels, x.data_mut());
        let logits = ck.network().unwrap().predict(&x).unwrap();
        let nchw = common::nchw_unit(&pixels, n, [h, w, c]);
        let json = serde_json::json!({ "input_shape": [n, c, h, w], "input": nchw, "logits_shape": logits.shape(), "logits": logits.data(), "classes": ck.meta.class_names });
        std::fs::write(out.join(format!("{name}.json")), json.to_string()).unwrap();
    }
}
