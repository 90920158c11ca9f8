//! Checkpoints written by the code before the model-spec step (format `convnet-checkpoint-1`,
//! tests/data/checkpoint-v1, made at commit 55ba2bc) still load, evaluate to the accuracy that
//! code recorded, and resume bit-identically to the run that code finished. Their tensors inside
//! residual blocks were named by built-layer index ("2.residual.1.conv2d.weight" for what is
//! now "2.residual.2.conv2d.weight"): the reader renames them.
mod common;

use std::path::{Path, PathBuf};

use common::write_quadrant_idx;
use convnet::train::datasets::load_splits;
use convnet::train::{evaluate, train, Checkpoint, EvalOptions, TrainOptions};
use convnet::{Config, Tensor};
use safetensors::SafeTensors;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint-v1").join(name)
}

/// The data set the fixture was trained on (see its README).
fn fixture_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_quadrant_idx(dir.path(), 144, 64, 21);
    dir
}

/// A tensor of a safetensors file, read directly under its stored name.
fn raw_tensor(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn a_format_1_checkpoint_loads_under_todays_names() {
    let path = fixture("epoch3-last.safetensors");
    let ck = Checkpoint::load(&path).unwrap();
    assert_eq!(ck.config, Config::load(&fixture("config.toml")).unwrap(), "the model and run split out of the old \"config\" entry");
    let net = ck.network().unwrap();
    let value =
        |name: &str| net.params().into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} missing")).value.data().to_vec();
    // (today's name, the name format 1 stored it under)
    let renamed = [
        ("0.conv2d.weight", "0.conv2d.weight"),
        ("2.residual.0.conv2d.weight", "2.residual.0.conv2d.weight"),
        ("2.residual.2.conv2d.weight", "2.residual.1.conv2d.weight"),
        ("3.residual.2.batch_norm.running_var", "3.residual.1.batch_norm.running_var"),
        ("3.residual.3.residual.2.conv2d.bias", "3.residual.2.residual.1.conv2d.bias"),
        ("3.residual.shortcut.conv2d.weight", "3.residual.shortcut.weight"),
        ("7.dense.weight", "7.dense.weight"),
    ];
    for (today, stored) in renamed {
        assert_eq!(value(today), raw_tensor(&path, stored), "{today} should hold the file's {stored}");
    }
    // The optimiser state is renamed the same way.
    let state = ck.optimizer_state();
    let m = state.iter().find(|(n, _)| n == "2.residual.2.conv2d.weight.m").expect("renamed Adam state");
    assert_eq!(m.1, raw_tensor(&path, "optim.2.residual.1.conv2d.weight.m"));
    assert!(!state.iter().any(|(n, _)| n.contains("residual.1.conv2d") || n.ends_with("shortcut.weight.m")), "no old name left");
}

#[test]
fn format_1_checkpoints_evaluate_to_the_accuracy_recorded_when_they_were_written() {
    let data = fixture_data();
    for file in ["epoch3-last.safetensors", "epoch2-last.safetensors", "best.safetensors"] {
        let ck = Checkpoint::load(&fixture(file)).unwrap();
        let mut net = ck.network().unwrap();
        let splits = load_splits(&ck.config, Some(data.path())).unwrap();
        let e = evaluate(&mut net, &splits.test, &ck.meta.normalization, EvalOptions::for_run(&ck.config.run)).unwrap();
        // metrics.csv of the old run, row of the checkpoint's epoch.
        let csv = std::fs::read_to_string(fixture("metrics.csv")).unwrap();
        let row: Vec<f32> = csv.lines().nth(ck.meta.epoch).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!((e.accuracy, e.loss), (row[6], row[5]), "{file}: test accuracy and loss of epoch {}", ck.meta.epoch);
    }
    // And through the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["eval", "--model", fixture("epoch3-last.safetensors").to_str().unwrap(), "--data", data.path().to_str().unwrap()])
        .args(["--confusion", data.path().join("confusion.png").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("v1-fixture on test (64 images): accuracy 48.44%"), "{stdout}");
}

#[test]
fn resuming_a_format_1_checkpoint_continues_bit_identically_to_the_old_run() {
    // The old code trained epochs 1-3 in one go; resume its epoch-2 checkpoint for epoch 3 here
    // (dropout, augmentation, label smoothing, Adam state and batch norm all take part).
    let data = fixture_data();
    let run = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("epoch2-last.safetensors"), run.path().join("last.safetensors")).unwrap();
    let config = Config::load(&fixture("config.toml")).unwrap();
    let opts =
        TrainOptions { config, data_dir: Some(data.path().to_path_buf()), out_dir: run.path().to_path_buf(), resume: true, verbose: false };
    let report = train(&opts, &mut |_| Ok(())).unwrap();
    assert_eq!(report.epochs.len(), 3);

    let ours = Checkpoint::load(&run.path().join("last.safetensors")).unwrap();
    let theirs = Checkpoint::load(&fixture("epoch3-last.safetensors")).unwrap();
    let weights = |ck: &Checkpoint| -> Vec<(String, Tensor)> {
        ck.network().unwrap().params().into_iter().map(|p| (p.name.clone(), p.value.clone())).collect()
    };
    assert_eq!(weights(&ours), weights(&theirs), "weights after epoch 3");
    assert_eq!(ours.optimizer_state(), theirs.optimizer_state(), "Adam state after epoch 3");
    assert_eq!((ours.meta.optimizer_step, ours.meta.best_val_accuracy), (theirs.meta.optimizer_step, theirs.meta.best_val_accuracy));
    let untimed = |ck: &Checkpoint| {
        ck.history.iter().map(|m| (m.train_loss, m.train_accuracy, m.val_loss, m.test_accuracy, m.lr)).collect::<Vec<_>>()
    };
    assert_eq!(untimed(&ours), untimed(&theirs), "metrics of epochs 1-3");
    let final_test = report.final_test.unwrap();
    assert_eq!(final_test.accuracy, theirs.history[2].test_accuracy);
}

#[test]
fn an_unknown_format_is_refused_naming_both_known_ones() {
    let bytes = std::fs::read(fixture("best.safetensors")).unwrap();
    let (mut header, _) = common::header(&bytes);
    let meta = header["__metadata__"]["convnet"].as_str().unwrap().replace("convnet-checkpoint-1", "convnet-checkpoint-9");
    header["__metadata__"]["convnet"] = serde_json::Value::String(meta);
    let edited = common::with_header(&bytes, &header);
    let err = Checkpoint::from_bytes(&edited, Path::new("future.safetensors")).err().expect("refused").to_string();
    assert!(err.contains("future.safetensors") && err.contains("\"convnet-checkpoint-9\""), "{err}");
    assert!(err.contains("convnet-checkpoint-2") && err.contains("convnet-checkpoint-1"), "{err}");
}
