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
    // And a bright bottom-right corner, quadrant 3, as a second image of the same call.
    let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([if x >= 4 && y >= 4 { 230 } else { 30 }]));
    let png3 = work.path().join("corner3.png");
    img.save(&png3).unwrap();
    let (code, stdout, stderr) = convnet(&["predict", "--model", model.to_str().unwrap(), png.to_str().unwrap(), png3.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // Per image, in the order given: "<path>:" and the top 5 as "  pp.pp%  <class>", most
    // probable first; the model learnt quadrant k is class "k".
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 12, "a header and the top 5 per image: {stdout}");
    for (block, (path, top)) in lines.chunks(6).zip([(&png, "0"), (&png3, "3")]) {
        assert_eq!(block[0], format!("{}:", path.display()));
        let ranked: Vec<(f32, &str)> = block[1..]
            .iter()
            .map(|l| {
                let (p, class) = l.trim().split_once("%  ").unwrap_or_else(|| panic!("{l:?}"));
                (p.trim().parse().unwrap(), class)
            })
            .collect();
        assert_eq!(ranked[0].1, top, "{stdout}");
        assert!(ranked.windows(2).all(|w| w[0].0 >= w[1].0), "most probable first: {stdout}");
        let classes: std::collections::HashSet<&str> = ranked.iter().map(|r| r.1).collect();
        assert_eq!(classes.len(), 5, "five different classes: {stdout}");
        assert!(classes.iter().all(|c| c.len() == 1 && c.as_bytes()[0].is_ascii_digit()), "the checkpoint's class names: {stdout}");
        // Five of ten probabilities: at most 100 % in all (to the printed rounding), and the top
        // one well over the uniform 10 %.
        let sum: f32 = ranked.iter().map(|r| r.0).sum();
        assert!(sum <= 100.03 && ranked[0].0 > 50.0, "{stdout}");
    }
}

#[test]
fn summary_prints_shapes_parameters_and_flops() {
    let (code, stdout, stderr) = convnet(&["summary", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/cifar10-seed.toml")]);
    assert_eq!(code, 0, "{stderr}");
    // conv1: 5*5*3*64 + 64 = 4,864 parameters; 2 * 32*32*64 * 75 = 9.83 MFLOPs.
    assert!(stdout.contains("4864") && stdout.contains("9.83"), "{stdout}");
    // Total forward: 64.36 MFLOPs per image, as in ../shared/bench/seed_model.py --check.
    assert!(stdout.contains("64.36 MFLOPs"), "{stdout}");
    // The ResNet, by hand (2 x multiply-adds): conv 3->16 at 32x32, 2*1024*16*27 = 884,736; five
    // 3x3 products of 9,437,184 each (conv 16->32 at 32x32, the two convs of block 7 at 16x16,
    // conv 32->64 at 16x16, conv 64->128 at 8x8, the two convs of block 16 at 4x4 counting as
    // two halves); dense 128->10, 2,560: 48,073,216 in all, each block 9.44 of them.
    let (code, stdout, stderr) = convnet(&["summary", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/cifar10-resnet.toml")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("48.07 MFLOPs"), "{stdout}");
    let block = stdout.lines().find(|l| l.starts_with("layer 7 (residual)")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(block.trim_end().ends_with("9.44"), "{block}");
}

#[test]
fn the_summary_of_the_default_model_is_its_hand_computed_table() {
    // Parameters: conv 3*3*1*32 + 32 = 320; conv 3*3*32*64 + 64 = 18,496; dense 3136*128 + 128 =
    // 401,536 (7*7*64 = 3136 inputs); dense 128*10 + 10 = 1,290; 421,642 in all.
    // MFLOPs (2 x multiply-adds): 2*28*28*32*9 = 451,584; 2*14*14*64*288 = 7,225,344;
    // 2*3136*128 = 802,816; 2*128*10 = 2,560 (0.00, but not "-": it has some); 8,482,304 in all.
    let (code, stdout, stderr) = convnet(&["summary", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/fashion-mnist.toml")]);
    assert_eq!(code, 0, "{stderr}");
    let rule = "-".repeat(57);
    let expected = format!(
        "Model: fashion-mnist\n{rule}\n\
         Layer                    Output shape      Params  MFLOPs\n{rule}\n\
         input                    [28, 28, 1]            0       -\n\
         layer 0 (conv2d + relu)  [28, 28, 32]         320    0.45\n\
         layer 2 (max_pool)       [14, 14, 32]           0       -\n\
         layer 3 (conv2d + relu)  [14, 14, 64]       18496    7.23\n\
         layer 5 (max_pool)       [7, 7, 64]             0       -\n\
         layer 6 (flatten)        [3136]                 0       -\n\
         layer 7 (dense)          [128]             401536    0.80\n\
         layer 8 (relu)           [128]                  0       -\n\
         layer 9 (dense)          [10]                1290    0.00\n{rule}\n\
         Total parameters: 421642\n\
         Forward: 8.48 MFLOPs per image (a training step is about 3x)\n"
    );
    assert_eq!(stdout, expected);
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

#[test]
fn bench_prints_one_json_line_or_a_layer_table_and_refuses_a_zero_batch() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("tiny.toml");
    std::fs::write(&cfg, tiny_config(work.path(), 1, "kind = \"adam\"\nlr = 0.01")).unwrap();
    let cfg = cfg.to_str().unwrap();
    let quick = ["--steps", "2", "--reps", "2", "--warmup", "0"];
    let (code, stdout, stderr) =
        convnet(&[&["bench", "--config", cfg, "--mode", "infer", "--batch-size", "3", "--json"][..], &quick].concat());
    assert_eq!(code, 0, "{stderr}");
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        (r["bench"].as_str(), r["mode"].as_str(), r["batch"].as_u64(), r["reps"].as_u64()),
        (Some("tiny"), Some("infer"), Some(3), Some(2))
    );
    assert!(r["img_per_s_median"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    let (code, stdout, stderr) = convnet(&[&["bench", "--config", cfg, "--mode", "train", "--layers"][..], &quick].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("training step, batch 64") && stdout.contains("layer 0 (conv2d + relu)") && stdout.contains("total"),
        "{stdout}"
    );
    for bad in ["0", "1048577"] {
        let (code, _, stderr) = convnet(&["bench", "--config", cfg, "--batch-size", bad]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("--batch-size") && stderr.contains(&format!("must be from 1 to 1048576, got {bad}")), "{stderr}");
    }
}

#[test]
fn a_config_without_a_data_path_reads_its_data_sets_default_folder_and_names_it() {
    // Run from an empty folder, where CIFAR-10's default (../shared/data/...) does not exist.
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("c.toml");
    let text = "name = \"c\"\ninput = [32, 32, 3]\n[data]\ndataset = \"cifar10\"\n[train]\nbatch_size = 4\nepochs = 1\n[optimizer]\nkind = \"sgd\"\nlr = 0.1\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n";
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["train", "--quiet", "--config", cfg.to_str().unwrap(), "--out", "run"])
        .current_dir(work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("../shared/data/cifar-10-batches-bin"), "{stderr}");
}

#[test]
fn bench_in_every_mode_reports_figures_that_agree_with_each_other() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("tiny.toml");
    std::fs::write(&cfg, tiny_config(work.path(), 1, "kind = \"adam\"\nlr = 0.01")).unwrap();
    let cfg = cfg.to_str().unwrap();
    // FLOPs per image by hand: conv 3x3, 1 -> 4 channels, SAME at 8x8: 2 * 64 * 4 * 9 = 4,608;
    // dense 64 -> 10: 2 * 640 = 1,280 (pooling and LRN count none).
    let mflops = (4608.0 + 1280.0) / 1e6;
    for (mode, batch, flops_per_image) in [("train", 4, 3.0 * mflops), ("infer", 4, mflops), ("latency", 1, mflops)] {
        let mut args = vec!["bench", "--config", cfg, "--mode", mode, "--steps", "2", "--reps", "3", "--warmup", "1", "--json"];
        if mode != "latency" {
            args.extend(["--batch-size", "4"]);
        }
        let (code, stdout, stderr) = convnet(&args);
        assert_eq!(code, 0, "{stderr}");
        let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{mode}: no {k} in {r}"));
        assert_eq!(
            (r["mode"].as_str(), r["batch"].as_u64(), r["steps"].as_u64(), r["reps"].as_u64()),
            (Some(mode), Some(batch), Some(2), Some(3))
        );
        assert!(f("img_per_s_min") <= f("img_per_s_median") && f("img_per_s_median") <= f("img_per_s_max"), "{r}");
        assert!(f("ms_per_step_min") <= f("ms_per_step_median") && f("ms_per_step_median") <= f("ms_per_step_max"), "{r}");
        // images/s = batch / seconds per step, each rounded (to 0.1 and 0.001 ms).
        let ms = f("ms_per_step_median");
        let from_ms = batch as f64 * 1e3 / ms;
        assert!((from_ms - f("img_per_s_median")).abs() <= from_ms * (0.0005 / ms + 1e-3) + 0.1, "{mode}: {from_ms} vs {r}");
        // GFLOP/s = the summary's MFLOPs per image (3x for a training step) x images/s.
        let gflops = flops_per_image * 1e6 * f("img_per_s_median") / 1e9;
        assert!((gflops - f("gflops_achieved_median")).abs() <= 0.02 * gflops + 0.01, "{mode}: {gflops} vs {r}");
        if cfg!(target_os = "linux") {
            // VmHWM of a process that loaded a model: more than a MiB, far less than the machine.
            assert!(f("peak_rss_mib") > 1.0 && f("peak_rss_mib") < 4096.0, "{r}");
        }
        assert_eq!(r["threads"].as_u64(), Some(std::thread::available_parallelism().map_or(1, |n| n.get()) as u64), "{r}");
    }
    // --layers: a row per built layer, whose shares add up to 100 % and whose times add up to
    // the total row (each to the printed rounding); inference rows have no backward time.
    for (mode, backward) in [("train", true), ("infer", false)] {
        let (code, stdout, stderr) =
            convnet(&["bench", "--config", cfg, "--mode", mode, "--batch-size", "4", "--steps", "3", "--warmup", "0", "--layers"]);
        assert_eq!(code, 0, "{stderr}");
        let rows: Vec<Vec<&str>> =
            stdout.lines().skip(2).map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect()).collect();
        let (total, layers) = rows.split_last().unwrap();
        assert_eq!(total[0], "total", "{stdout}");
        let names: Vec<&str> = layers.iter().map(|r| r[0]).collect();
        assert_eq!(
            names,
            ["layer 0 (conv2d + relu)", "layer 2 (max_pool)", "layer 3 (lrn)", "layer 4 (flatten)", "layer 5 (dense)"],
            "{stdout}"
        );
        let num = |s: &str| s.trim_end_matches('%').parse::<f64>().unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let (sum_f, sum_b, share): (f64, f64, f64) =
            layers.iter().fold((0.0, 0.0, 0.0), |(f, b, s), r| (f + num(r[1]), b + num(r[2]), s + num(r[3])));
        assert!((sum_f - num(total[1])).abs() <= 0.001 * layers.len() as f64, "{stdout}");
        assert!((sum_b - num(total[2])).abs() <= 0.001 * layers.len() as f64, "{stdout}");
        assert!((share - 100.0).abs() <= 0.05 * layers.len() as f64, "{stdout}");
        assert_eq!(num(total[2]) > 0.0, backward, "{stdout}");
    }
}
