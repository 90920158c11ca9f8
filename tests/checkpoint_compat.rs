//! Checkpoints written by the code before the model-spec step (format `convnet-checkpoint-1`,
//! tests/data/checkpoint-v1, made at commit 55ba2bc) still load, evaluate to the accuracy that
//! code recorded, and resume the run that code finished (to rounding: the kernels have changed). Their tensors inside
//! residual blocks were named by built-layer index ("2.residual.1.conv2d.weight" for what is
//! now "2.residual.2.conv2d.weight"): the reader renames them.
mod common;

use std::path::{Path, PathBuf};

use common::write_quadrant_idx;
use convnet::train::datasets::load_splits;
use convnet::train::{evaluate, train, Checkpoint, EvalOptions, ExistingRun, TrainOptions};
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

/// Every trainable value of a checkpoint, by name.
fn weights(ck: &Checkpoint) -> Vec<(String, Tensor)> {
    ck.network().unwrap().params().into_iter().map(|p| (p.name.clone(), p.value.clone())).collect()
}

/// What a run records of each epoch, without its timings.
fn untimed(ck: &Checkpoint) -> Vec<(f32, f32, f32, f32, f32)> {
    ck.history.iter().map(|m| (m.train_loss, m.train_accuracy, m.val_loss, m.test_accuracy, m.lr)).collect()
}

fn train_fixture(out: &Path, data: &Path, epochs: usize, resume: bool) -> convnet::train::TrainReport {
    let mut config = Config::load(&fixture("config.toml")).unwrap();
    config.run.train.epochs = epochs;
    let opts = TrainOptions {
        data_dir: Some(data.to_path_buf()),
        existing: if resume { ExistingRun::Resume } else { ExistingRun::Refuse },
        ..TrainOptions::new(config, out)
    };
    train(&opts, &mut |_| Ok(())).unwrap()
}

#[test]
fn resuming_a_format_1_checkpoint_continues_the_old_run() {
    // The old code trained epochs 1-3 in one go; resume its epoch-2 checkpoint for epoch 3 here
    // (dropout, augmentation, label smoothing, Adam state and batch norm all take part). The
    // kernels have changed their rounding since (batch norm's statistics in one shifted pass),
    // so epoch 3 agrees with the old one to rounding, not to the bit; epochs 1-2 are the file's.
    let data = fixture_data();
    let run = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("epoch2-last.safetensors"), run.path().join("last.safetensors")).unwrap();
    let report = train_fixture(run.path(), data.path(), 3, true);
    assert_eq!(report.epochs.len(), 3);

    let ours = Checkpoint::load(&run.path().join("last.safetensors")).unwrap();
    let theirs = Checkpoint::load(&fixture("epoch3-last.safetensors")).unwrap();
    let (a, b) = (weights(&ours), weights(&theirs));
    assert_eq!(a.len(), b.len());
    let (mut worst, mut moved) = (0.0f32, 0.0f32);
    let before = weights(&Checkpoint::load(&fixture("epoch2-last.safetensors")).unwrap());
    for (((name, x), (other, y)), (_, start)) in a.iter().zip(&b).zip(&before) {
        assert_eq!(name, other);
        for ((x, y), s) in x.data().iter().zip(y.data()).zip(start.data()) {
            worst = worst.max((x - y).abs() / y.abs().max(1.0));
            moved = moved.max((y - s).abs());
        }
    }
    // Epoch 3 moved the weights by up to `moved`; ours end within a small part of that.
    assert!(moved > 1e-3 && worst < 1e-3, "weights after epoch 3: {worst} off the old run's (epoch 3 moved them by {moved})");
    assert_eq!(ours.meta.optimizer_step, theirs.meta.optimizer_step);
    let (ours_h, theirs_h) = (untimed(&ours), untimed(&theirs));
    assert_eq!(ours_h[..2], theirs_h[..2], "metrics of epochs 1-2 (from the file)");
    let (o, t) = (ours_h[2], theirs_h[2]);
    assert!((o.0 - t.0).abs() < 1e-3 && (o.2 - t.2).abs() < 1e-3 && o.4 == t.4, "epoch 3: {o:?} against the old {t:?}");
    assert!((report.final_test.unwrap().accuracy - theirs.history[2].test_accuracy).abs() <= 1.0 / 64.0 + 1e-6);
}

#[test]
fn the_fixture_model_resumes_bit_identically_with_todays_code() {
    // The same model (batch norm, dropout, nested residual blocks) trained for 3 epochs in one
    // go, and for 2 then resumed for the third, ends with the same bits.
    let data = fixture_data();
    let (straight, resumed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train_fixture(straight.path(), data.path(), 3, false);
    train_fixture(resumed.path(), data.path(), 2, false);
    train_fixture(resumed.path(), data.path(), 3, true);
    let [a, b] = [straight.path(), resumed.path()].map(|d| Checkpoint::load(&d.join("last.safetensors")).unwrap());
    assert_eq!(weights(&a), weights(&b), "weights after epoch 3");
    assert_eq!(a.optimizer_state(), b.optimizer_state(), "Adam state after epoch 3");
    assert_eq!(untimed(&a), untimed(&b), "metrics of epochs 1-3");
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
