//! The convnet binary end to end: train, eval, predict, summary, and its error exits.
mod common;

use common::*;
use std::process::Command;

fn convnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).output().expect("run convnet");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn train_eval_predict_round_trip() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 200, 40, 5);
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("tiny.toml");
    std::fs::write(&cfg, tiny_config(data.path(), 2, "kind = \"adam\"\nlr = 0.01")).unwrap();
    let run = work.path().join("run");
    let (code, stdout, stderr) = convnet(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        "3",
        "--seed",
        "9",
        "--threads",
        "2",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("final test accuracy"), "{stdout}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "--epochs 3 gives 3 rows plus the header");

    let model = run.join("best.safetensors");
    let (code, stdout, stderr) = convnet(&["eval", "--model", model.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("accuracy") && stdout.contains("confusion matrix") && stdout.contains("per-class"), "{stdout}");

    // A 20x30 RGB image with a bright top-left corner: resized to 8x8, converted to grayscale.
    let img =
        image::RgbImage::from_fn(20, 30, |x, y| if x < 10 && y < 15 { image::Rgb([230, 230, 230]) } else { image::Rgb([30, 30, 30]) });
    let png = work.path().join("corner.png");
    img.save(&png).unwrap();
    let (code, stdout, stderr) = convnet(&["predict", "--model", model.to_str().unwrap(), png.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // The model learnt quadrant 0 is class "0"; it should rank it first.
    let first = stdout.lines().nth(1).unwrap_or_default();
    assert!(first.trim_end().ends_with(" 0"), "{stdout}");
    assert_eq!(stdout.lines().count(), 6, "a header and the top 5: {stdout}");
}

#[test]
fn summary_prints_shapes_parameters_and_flops() {
    let (code, stdout, stderr) = convnet(&["summary", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/cifar10-seed.toml")]);
    assert_eq!(code, 0, "{stderr}");
    // conv1: 5*5*3*64 + 64 = 4,864 parameters; 2 * 32*32*64 * 75 = 9.83 MFLOPs.
    assert!(stdout.contains("4864") && stdout.contains("9.83"), "{stdout}");
    // Total forward: 64.36 MFLOPs per image, as in ../shared/bench/seed_model.py --check.
    assert!(stdout.contains("64.36 MFLOPs"), "{stdout}");
}

#[test]
fn user_errors_exit_2_with_a_message_naming_the_culprit() {
    let work = tempfile::tempdir().unwrap();
    // Missing data set: the message names the file and says how to get Fashion-MNIST.
    let cfg = work.path().join("fm.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/fashion-mnist.toml")).unwrap();
    std::fs::write(&cfg, text).unwrap();
    let missing = work.path().join("nowhere");
    let (code, _, stderr) = convnet(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        missing.to_str().unwrap(),
        "--out",
        work.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nowhere"), "{stderr}");

    // A shape that does not fit: dense straight after a conv.
    let bad = work.path().join("bad.toml");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(&bad, tiny_config(data.path(), 1, "kind = \"adam\"\nlr = 0.01").replace("type = \"flatten\"", "type = \"relu\""))
        .unwrap();
    let (code, _, stderr) = convnet(&["summary", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("layer 5 (dense)") && stderr.contains("[4, 4, 4]"), "{stderr}");

    // A missing checkpoint.
    let (code, _, stderr) = convnet(&["eval", "--model", "/nonexistent/best.safetensors"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/nonexistent/best.safetensors"), "{stderr}");

    // Batch size 0 from the command line.
    let (code, _, stderr) = convnet(&["train", "--config", cfg.to_str().unwrap(), "--batch-size", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("batch_size"), "{stderr}");
}
