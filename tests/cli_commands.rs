//! The convnet binary's options that tests/cli.rs leaves out: eval's splits and confusion
//! picture, train's --seed and --quiet and its curves, plot's runs, --out, --label and
//! --no-svg, filter's mappings, strides and padding, visualize's scales and errors, and
//! predict's probabilities, each compared with the library's own answer on the same input.
mod common;

use common::*;
use convnet::data::read_image;
use convnet::model::network::argmax;
use convnet::ops::softmax::softmax;
use convnet::train::datasets::load_splits;
use convnet::train::{evaluate, save_checkpoint, Checkpoint, CheckpointMeta, EvalOptions};
use convnet::viz::confusion::render_confusion;
use convnet::Tensor;
use rand::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

fn convnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).output().expect("run convnet");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One 8x8 image whose quadrant `q` (0 top left, 1 top right, 2 bottom left, 3 bottom right) is
/// bright over noise, as in `write_quadrant_idx`.
fn quadrant_image(q: usize, r: &mut impl Rng) -> Vec<u8> {
    let mut px = Vec::with_capacity(64);
    for row in 0..8 {
        for col in 0..8 {
            let base: u8 = if (row / 4) * 2 + col / 4 == q { 180 } else { 40 };
            px.push(base.saturating_add(r.gen_range(0..60)));
        }
    }
    px
}

/// The quadrant data set with some labels deliberately wrong, so that a network that learnt the
/// quadrants gets known answers wrong: 200 training images (the last 16 are the validation
/// split of `tiny_config`), image i showing quadrant i % 4. Labels: training images 0..184 are
/// right; of the 16 validation images, j = 1, 6, 11 (quadrants 1, 2, 3) are labelled one
/// quadrant on, 2, 3 and 0; of the 40 test images, those with i % 8 == 0 (all quadrant 0) are
/// labelled 1.
fn write_mislabelled_quadrants(dir: &Path) {
    let mut r = rng(11);
    let (mut train, mut train_labels) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let q = i % 4;
        train.extend(quadrant_image(q, &mut r));
        let j = i as isize - 184;
        train_labels.push(if j >= 0 && j % 5 == 1 { ((q + 1) % 4) as u8 } else { q as u8 });
    }
    let (mut test, mut test_labels) = (Vec::new(), Vec::new());
    for i in 0..40 {
        let q = i % 4;
        test.extend(quadrant_image(q, &mut r));
        test_labels.push(if i % 8 == 0 { 1 } else { q as u8 });
    }
    use convnet::data::write_idx;
    write_idx(dir.join("train-images-idx3-ubyte"), &[200, 8, 8], &train, false).unwrap();
    write_idx(dir.join("train-labels-idx1-ubyte"), &[200], &train_labels, false).unwrap();
    write_idx(dir.join("t10k-images-idx3-ubyte"), &[40, 8, 8], &test, false).unwrap();
    write_idx(dir.join("t10k-labels-idx1-ubyte"), &[40], &test_labels, false).unwrap();
}

/// Trains `tiny_config` (Adam 0.01) on the data in `data` with `convnet train --threads 2
/// --quiet` plus `extra`, into `work/<name>`; returns the run folder.
fn train_tiny(data: &Path, work: &Path, name: &str, epochs: usize, extra: &[&str]) -> PathBuf {
    let cfg = work.join(format!("{name}.toml"));
    std::fs::write(&cfg, tiny_config(data, epochs, "kind = \"adam\"\nlr = 0.01")).unwrap();
    let run = work.join(name);
    let (code, _, stderr) = convnet(&[&["train", "--config", s(&cfg), "--out", s(&run), "--threads", "2", "--quiet"][..], extra].concat());
    assert_eq!(code, 0, "{stderr}");
    run
}

/// The logits of one image (HWC bytes) under a checkpoint, normalised with its statistics, as
/// one batch of one.
fn logits_of(net: &mut convnet::model::Network, ck: &Checkpoint, pixels: &[u8]) -> Vec<f32> {
    let [h, w, c] = ck.config.model.input;
    let mut x = Tensor::zeros(&[1, h, w, c]);
    ck.meta.normalization.apply(pixels, x.data_mut());
    net.predict(&x).unwrap().data().to_vec()
}

/// The lines of `text` after the line equal to `heading`.
fn after<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    text.lines().skip_while(|l| *l != heading).skip(1).collect()
}

/// The confusion matrix's colour for a share of a row, as documented: white (0%) to dark blue
/// (100%, RGB 8, 48, 107) on a square-root scale.
fn heat(share: f64) -> [u8; 3] {
    let f = share.sqrt();
    let lerp = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    [lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0)]
}

#[test]
fn eval_reports_the_chosen_split_as_the_library_evaluates_it_with_a_confusion_picture() {
    let data = tempfile::tempdir().unwrap();
    write_mislabelled_quadrants(data.path());
    let work = tempfile::tempdir().unwrap();
    let run = train_tiny(data.path(), work.path(), "run", 3, &[]);
    let model = run.join("best.safetensors");
    let ck = Checkpoint::load(&model).unwrap();
    let mut net = ck.network().unwrap();
    let splits = load_splits(&ck.config, None).unwrap();
    let names = &ck.meta.class_names;
    assert_eq!(names.len(), 10, "the MNIST reader names 10 classes");

    // Image i of each split shows quadrant i % 4 (the validation split starts at training image
    // 184, a multiple of 4). A network that learnt the quadrants answers that; the accuracies
    // follow from the mislabelled images by hand: all 184 training images right, 13 of the 16
    // validation images, 35 of the 40 test images.
    for (arg, split, ds, n, accuracy) in [
        ("train", "train", &splits.train, 184, "100.00"),
        ("val", "validation", &splits.val, 16, "81.25"),
        ("test", "test", &splits.test, 40, "87.50"),
    ] {
        assert_eq!(ds.len(), n, "{split}");
        // The confusion matrix from the library's predictions, one image at a time.
        let mut confusion = vec![vec![0usize; 10]; 10];
        for i in 0..ds.len() {
            let predicted = argmax(&logits_of(&mut net, &ck, ds.image(i)));
            assert_eq!(predicted, i % 4, "{split} image {i}: the network learnt the quadrants");
            confusion[ds.labels[i] as usize][predicted] += 1;
        }
        let e = evaluate(&mut net, ds, &ck.meta.normalization, EvalOptions::for_run(&ck.config.run)).unwrap();
        assert_eq!(e.confusion, confusion, "{split}");

        let picture = work.path().join(format!("cm-{arg}.png"));
        let (code, stdout, stderr) = convnet(&["eval", "--model", s(&model), "--split", arg, "--confusion", s(&picture), "--threads", "2"]);
        assert_eq!(code, 0, "{stderr}");
        let first = stdout.lines().next().unwrap();
        assert_eq!(first, format!("tiny on {split} ({n} images): accuracy {:.2}%, loss {:.4}", 100.0 * e.accuracy, e.loss));
        assert!(first.contains(&format!("accuracy {accuracy}%")), "{first}");

        // Per-class accuracy: the diagonal over the row sum (0 for a class without images).
        let per_class: Vec<(String, String)> = after(&stdout, "per-class accuracy:")
            .iter()
            .take(10)
            .map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(t.len(), 2, "{l:?}");
                (t[0].to_string(), t[1].to_string())
            })
            .collect();
        let expected: Vec<(String, String)> = (0..10)
            .map(|k| {
                let total: usize = confusion[k].iter().sum();
                let acc = if total == 0 { 0.0 } else { 100.0 * confusion[k][k] as f64 / total as f64 };
                (names[k].clone(), format!("{acc:.2}%"))
            })
            .collect();
        assert_eq!(per_class, expected, "{stdout}");

        // The printed matrix: a header of column indices, then "<index> <name>" and the counts.
        let table = after(&stdout, "confusion matrix (rows: true class, columns: predicted):");
        let header: Vec<&str> = table[0].split_whitespace().collect();
        assert_eq!(header, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], "{stdout}");
        for (k, line) in table[1..=10].iter().enumerate() {
            let t: Vec<&str> = line.split_whitespace().collect();
            assert_eq!((t[0], t[1]), (k.to_string().as_str(), names[k].as_str()), "{line:?}");
            let counts: Vec<usize> = t[2..].iter().map(|v| v.parse().unwrap()).collect();
            assert_eq!(counts, confusion[k], "row {k} of {split}: {stdout}");
        }
        assert_eq!(stdout.lines().last().unwrap(), format!("confusion matrix picture: {}", picture.display()));

        // The picture: what the library draws for this matrix and title, pixel for pixel.
        let img = image::open(&picture).unwrap().to_rgb8();
        let title = format!("tiny: confusion matrix on {split} ({n} images, accuracy {accuracy}%)");
        let (pixels, width, height) = render_confusion(&confusion, names, &title).unwrap();
        assert_eq!(img.dimensions(), (width, height), "{split}");
        assert!(img.as_raw() == &pixels, "{split}: the picture differs from the library's rendering");
        // And its cells, by the layout: 10 classes in cells of 58 pixels, the matrix 80 pixels
        // from the top; below it 8 + (label width) + 6 + 22 + 16 pixels, and the row labels
        // (their width + 10) and 28 + 16 pixels to its left.
        let label_w = height as i64 - (80 + 10 * 58 + 8 + 6 + 22 + 16) - 10;
        assert!(label_w > 0, "height {height}");
        let (x0, y0) = (16 + 28 + label_w + 10, 80);
        for (t, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let (x, y) = ((x0 + 58 * p as i64 + 5) as u32, (y0 + 58 * t as i64 + 5) as u32);
                assert_eq!(img.get_pixel(x, y).0, heat(share), "{split}: cell ({t}, {p}), {count} of {total}");
            }
        }
    }
    // Without --split and --confusion: the test split, drawn next to the checkpoint.
    let (code, stdout, stderr) = convnet(&["eval", "--model", s(&model), "--threads", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("tiny on test (40 images): accuracy 87.50%"), "{stdout}");
    assert_eq!(stdout.lines().last().unwrap(), format!("confusion matrix picture: {}", run.join("confusion.png").display()));
    assert_eq!(std::fs::read(run.join("confusion.png")).unwrap(), std::fs::read(work.path().join("cm-test.png")).unwrap());
}

/// metrics.csv without its wall-time columns (seconds, images_per_second), checked to be the
/// last two.
fn metrics_without_times(run: &Path) -> Vec<Vec<String>> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv.lines().map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert_eq!(rows[0][8..], ["seconds", "images_per_second"], "{csv}");
    rows.into_iter()
        .map(|mut r| {
            r.truncate(8);
            r
        })
        .collect()
}

/// Every weight of a checkpoint, in parameter order.
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let net = Checkpoint::load(path).unwrap().network().unwrap();
    net.params().iter().map(|p| (p.name.clone(), p.value.data().to_vec())).collect()
}

#[test]
fn train_seed_decides_the_run_and_quiet_silences_only_the_progress_lines() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 64, 16, 5);
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("tiny.toml");
    std::fs::write(&cfg, tiny_config(data.path(), 2, "kind = \"adam\"\nlr = 0.01")).unwrap();
    let train = |name: &str, extra: &[&str]| {
        let run = work.path().join(name);
        let (code, stdout, stderr) = convnet(&[&["train", "--config", s(&cfg), "--out", s(&run), "--threads", "2"][..], extra].concat());
        assert_eq!(code, 0, "{stderr}");
        (run, stdout, stderr)
    };
    // The config says seed = 3: --seed 3 is the same run, --seed 4 another one.
    let (a, a_out, a_err) = train("a", &["--seed", "3", "--quiet"]);
    let (b, b_out, b_err) = train("b", &[]);
    let (c, _, c_err) = train("c", &["--seed", "4", "--quiet"]);
    let (d, _, _) = train("d", &["--seed", "4", "-q"]);
    assert_eq!(metrics_without_times(&a), metrics_without_times(&b));
    assert_eq!(metrics_without_times(&c), metrics_without_times(&d));
    assert_eq!(metrics_without_times(&a).len(), 3, "a header and 2 epochs");
    assert_ne!(metrics_without_times(&a)[1], metrics_without_times(&c)[1], "another seed, another first epoch");
    for file in ["last.safetensors", "best.safetensors"] {
        assert_eq!(weights(&a.join(file)), weights(&b.join(file)), "{file}");
        assert_eq!(weights(&c.join(file)), weights(&d.join(file)), "{file}");
    }
    let (wa, wc) = (weights(&a.join("last.safetensors")), weights(&c.join("last.safetensors")));
    assert!(wa.iter().zip(&wc).all(|(x, y)| x.0 == y.0 && x.1 != y.1), "every parameter differs between seeds 3 and 4");
    // The seed is recorded in the checkpoint and in the run's config.toml.
    for (run, seed) in [(&a, 3), (&b, 3), (&c, 4)] {
        assert_eq!(Checkpoint::load(&run.join("last.safetensors")).unwrap().meta.seed, seed);
        assert_eq!(convnet::Config::load(&run.join("config.toml")).unwrap().run.train.seed, seed);
    }

    // --quiet: nothing on stderr. Without it, one line on the run and one per epoch (stderr is
    // not a terminal here, so the progress bar stays hidden), with the values of metrics.csv.
    assert_eq!(a_err, "");
    assert_eq!(c_err, "");
    let lines: Vec<&str> = b_err.lines().collect();
    assert_eq!(lines.len(), 4, "{b_err}");
    // 64 - 16 validation = 48 training images, in 6 steps of 8.
    assert_eq!(lines[0], "training tiny on 48 examples (16 validation, 16 test), 2 epochs of 6 steps, 2 threads");
    let csv = std::fs::read_to_string(b.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<f32>> = csv.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    // The last line: the run's compute and time, as summary.json records them.
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(b.join("summary.json")).unwrap()).unwrap();
    let compute = format!(
        "compute: {:.3e} FLOPs training + {:.3e} evaluation; ",
        summary["train_flops"].as_f64().unwrap(),
        summary["eval_flops"].as_f64().unwrap()
    );
    assert!(lines[3].starts_with(&compute) && lines[3].ends_with(" s wall (2 threads)"), "{:?} vs {compute:?}", lines[3]);
    for (line, m) in lines[1..3].iter().zip(&rows) {
        let prefix = format!(
            "epoch {}/2: loss {:.4}  train {:.2}%  val {:.2}% (loss {:.4})  test {:.2}%  ",
            m[0],
            m[1],
            100.0 * m[2],
            100.0 * m[4],
            m[3],
            100.0 * m[6]
        );
        assert!(line.starts_with(&prefix) && line.ends_with(" images/s)"), "{line:?} vs {prefix:?}");
    }
    // Both print the result on stdout: the last epoch's test accuracy and loss.
    let last = rows.last().unwrap();
    for (out, run) in [(&a_out, &a), (&b_out, &b)] {
        assert_eq!(*out, format!("final test accuracy: {:.2}% (loss {:.4})\nrun folder: {}\n", 100.0 * last[6], last[5], run.display()));
    }
}

/// Checks that `svg` is one <svg> element whose tags all close, and returns the text of its
/// <text> elements, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut texts = Vec::new();
    let mut rest = svg;
    let mut first = None;
    while let Some(i) = rest.find('<') {
        let end = i + rest[i..].find('>').expect("a tag that never closes");
        let tag = &rest[i + 1..end];
        if tag.starts_with('?') || tag.starts_with('!') {
        } else if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(open, name.trim(), "tags out of order");
            if open == "text" {
                texts.push(rest[..i].trim().to_string());
            }
        } else {
            let name = tag.split_whitespace().next().unwrap().trim_end_matches('/').to_string();
            first.get_or_insert(name.clone());
            if !tag.ends_with('/') {
                assert!(stack.is_empty() || stack[0] == "svg", "a second root element <{name}>");
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
        if stack.is_empty() && first.is_some() {
            assert!(rest.trim().is_empty(), "text after the root element: {rest:?}");
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert_eq!(first.as_deref(), Some("svg"));
    texts
}

#[test]
fn train_draws_curves_png_and_svg_of_every_epoch_into_the_run_folder() {
    use convnet::viz::curves::{read_run_metrics, write_curves_for, CURVES_SIZE};
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 64, 16, 6);
    let work = tempfile::tempdir().unwrap();
    let run = train_tiny(data.path(), work.path(), "run", 3, &[]);
    let png = image::open(run.join("curves.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), CURVES_SIZE);
    assert_eq!(CURVES_SIZE, (1200, 520));
    // What the library draws from the run's 3 epochs in metrics.csv: the last redraw holds them all.
    let history = read_run_metrics(&run).unwrap();
    assert_eq!(history.len(), 3);
    let (lib_png, lib_svg) = (work.path().join("lib.png"), work.path().join("lib.svg"));
    write_curves_for(&[("tiny".to_string(), history)], &lib_png, Some(&lib_svg)).unwrap();
    assert!(png == image::open(&lib_png).unwrap().to_rgb8(), "curves.png is not the chart of the 3 epochs");
    let svg = std::fs::read_to_string(run.join("curves.svg")).unwrap();
    assert_eq!(svg, std::fs::read_to_string(&lib_svg).unwrap());
    assert!(svg.starts_with("<svg width=\"1200\" height=\"520\""), "{}", &svg[..80]);
    let texts = svg_texts(&svg);
    for t in ["Training curves: tiny", "Loss", "Accuracy", "epoch", "train", "validation", "test"] {
        assert!(texts.iter().any(|x| x == t), "{t:?} not among {texts:?}");
    }
    // The x axes are labelled with the epochs 1, 2 and 3, on both panels.
    for e in ["1", "2", "3"] {
        assert_eq!(texts.iter().filter(|x| *x == e).count(), 2, "epoch {e}: {texts:?}");
    }
}

#[test]
fn plot_draws_several_runs_with_their_labels_where_asked() {
    use convnet::viz::curves::{write_curves, CURVES_SIZE};
    let work = tempfile::tempdir().unwrap();
    let header = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second\n";
    let (a, b) = (work.path().join("run-a"), work.path().join("run-b"));
    for (dir, rows) in [
        (&a, "1,1.5,0.4,1.2,0.5,1.25,0.48,1e-3,1.000,100.0\n2,0.9,0.7,1.0,0.6,1.05,0.58,1e-3,1.000,100.0\n"),
        (&b, "1,2.0,0.3,1.8,0.35,1.9,0.33,1e-2,2.000,50.0\n2,1.4,0.5,1.5,0.45,1.6,0.44,1e-2,2.000,50.0\n3,1.1,0.6,1.3,0.5,1.4,0.49,1e-2,2.000,50.0\n"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("metrics.csv"), format!("{header}{rows}")).unwrap();
    }
    let out_dir = work.path().join("out");
    let lib = |labels: [&str; 2], name: &str| {
        let path = work.path().join(name);
        write_curves(&[(a.clone(), labels[0].to_string()), (b.clone(), labels[1].to_string())], &path, None).unwrap();
        image::open(&path).unwrap().to_rgb8()
    };
    let svg_texts_of = |path: &Path| svg_texts(&std::fs::read_to_string(path).unwrap());

    // Two runs, --out and a label each: the PNG and an SVG beside it.
    let cmp = out_dir.join("cmp.png");
    let (code, stdout, stderr) = convnet(&["plot", s(&a), s(&b), "--out", s(&cmp), "--label", "adam", "--label", "sgd"]);
    assert_eq!(code, 0, "{stderr}");
    let cmp_svg = out_dir.join("cmp.svg");
    assert_eq!(stdout, format!("wrote {}\nwrote {}\n", cmp.display(), cmp_svg.display()));
    let png = image::open(&cmp).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), CURVES_SIZE);
    assert!(png == lib(["adam", "sgd"], "lib-labels.png"), "the chart of both runs, labelled adam and sgd");
    assert!(png != lib(["run-a", "run-b"], "lib-default.png"), "the labels are drawn");
    let texts = svg_texts_of(&cmp_svg);
    for t in ["Training curves: adam, sgd", "adam train", "adam validation", "adam test", "sgd train", "sgd validation", "sgd test"] {
        assert!(texts.iter().any(|x| x == t), "{t:?} not among {texts:?}");
    }
    assert!(!texts.iter().any(|x| x.contains("run-a") || x.contains("run-b")), "{texts:?}");
    // The x axes go to the longer run's 3 epochs.
    assert_eq!(texts.iter().filter(|x| *x == "3").count(), 2, "{texts:?}");

    // Without labels, each run is named by its folder (a metrics.csv names its folder too);
    // without --out, several runs go to curves.png in the current folder.
    let (code, stdout, stderr) = {
        let out = Command::new(env!("CARGO_BIN_EXE_convnet"))
            .args(["plot", s(&a.join("metrics.csv")), s(&b)])
            .current_dir(&out_dir)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "wrote curves.png\nwrote curves.svg\n");
    assert!(image::open(out_dir.join("curves.png")).unwrap().to_rgb8() == lib(["run-a", "run-b"], "lib-default.png"));
    assert!(svg_texts_of(&out_dir.join("curves.svg")).iter().any(|x| x == "Training curves: run-a, run-b"));

    // Fewer labels than runs: the rest keep their folder's name.
    let one = out_dir.join("one.png");
    let (code, _, stderr) = convnet(&["plot", s(&a), s(&b), "--out", s(&one), "--label", "adam"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(image::open(&one).unwrap().to_rgb8() == lib(["adam", "run-b"], "lib-one.png"));
    assert!(svg_texts_of(&out_dir.join("one.svg")).iter().any(|x| x == "Training curves: adam, run-b"));

    // More labels than runs: an error that says so, exit code 2, nothing written.
    let three = out_dir.join("three.png");
    let (code, stdout, stderr) = convnet(&["plot", s(&a), s(&b), "--out", s(&three), "--label", "x", "--label", "y", "--label", "z"]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert_eq!(stderr, "error: --label: 3 labels for 2 runs\n");
    assert!(!three.exists() && !three.with_extension("svg").exists());

    // --no-svg: the PNG only.
    let only = out_dir.join("only.png");
    let (code, stdout, stderr) = convnet(&["plot", s(&a), s(&b), "--out", s(&only), "--no-svg"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("wrote {}\n", only.display()));
    assert!(image::open(&only).unwrap().to_rgb8() == lib(["run-a", "run-b"], "lib-default.png"));
    assert!(!only.with_extension("svg").exists(), "--no-svg wrote an SVG");

    // --out must name the PNG, not the SVG.
    let (code, _, stderr) = convnet(&["plot", s(&a), "--out", s(&out_dir.join("x.svg"))]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("error: --out: ") && stderr.contains("FILE.png"), "{stderr}");
    assert!(!out_dir.join("x.svg").exists() && !out_dir.join("x.png").exists());
}

/// A cross-correlation by hand of a 3x3 `kernel` (row-major) over `plane` (h x w, row-major),
/// slid without flipping; with `same`, zero padding of max((out - 1) * stride + 3 - n, 0) split
/// with the smaller half before (TensorFlow's SAME). Returns (out height, out width, responses).
fn correlate(plane: &[f64], h: usize, w: usize, kernel: &[f64; 9], stride: usize, same: bool) -> (usize, usize, Vec<f64>) {
    let (kh, kw) = (3, 3);
    let axis = |n: usize, k: usize| -> (usize, usize) {
        if same {
            let out = n.div_ceil(stride);
            (out, ((out - 1) * stride + k).saturating_sub(n) / 2)
        } else {
            ((n - k) / stride + 1, 0)
        }
    };
    let ((oh, top), (ow, left)) = (axis(h, kh), axis(w, kw));
    let mut out = Vec::with_capacity(oh * ow);
    for i in 0..oh {
        for j in 0..ow {
            let mut v = 0.0;
            for a in 0..kh {
                for b in 0..kw {
                    let (y, x) = ((i * stride + a) as isize - top as isize, (j * stride + b) as isize - left as isize);
                    if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                        v += plane[y as usize * w + x as usize] * kernel[a * kw + b];
                    }
                }
            }
            out.push(v);
        }
    }
    (oh, ow, out)
}

/// The documented mappings: signed, 128 + v * 127 / max|v|; clamped, v clamped to 0..255.
fn signed_pixel(v: f32, max_abs: f32) -> u8 {
    (128.0 + v * 127.0 / max_abs).round().clamp(0.0, 255.0) as u8
}
fn clamped_pixel(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

#[test]
fn filter_sizes_strides_padding_and_mappings_match_a_hand_computed_convolution() {
    let work = tempfile::tempdir().unwrap();
    // A 7-wide, 6-high grayscale image and an asymmetric kernel summing to -1 (a difference
    // kernel: --map auto is signed). Integer pixels and coefficients: exact responses.
    let (w, h) = (7usize, 6usize);
    let grey = image::GrayImage::from_fn(w as u32, h as u32, |x, y| image::Luma([((x * 29 + y * 53 + x * y * 7) % 256) as u8]));
    let plane: Vec<f64> = grey.as_raw().iter().map(|&p| f64::from(p)).collect();
    let grey_path = work.path().join("grey.png");
    grey.save(&grey_path).unwrap();
    let kernel = [1.0, 2.0, 0.0, 0.0, -1.0, -1.0, -1.0, 0.0, -1.0];
    let kernel_arg = "1,2,0;0,-1,-1;-1,0,-1";

    let filter = |input: &Path, out: &str, extra: &[&str]| -> (image::DynamicImage, String) {
        let out = work.path().join(out);
        let (code, stdout, stderr) = convnet(&[&["filter", s(input), s(&out)][..], extra].concat());
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.lines().last().unwrap(), format!("wrote {}", out.display()));
        (image::open(&out).unwrap(), stdout)
    };
    let range = |v: &[f32]| v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));

    // (padding, stride, output width x height): valid, floor((n - 3) / s) + 1; same, ceil(n / s),
    // which is floor((n + 2p - 3) / s) + 1 with p = 1 here.
    for (padding, stride, (ow, oh)) in [("valid", 1, (5, 4)), ("valid", 2, (3, 2)), ("same", 1, (7, 6)), ("same", 2, (4, 3))] {
        let p = if padding == "same" { 1 } else { 0 };
        assert_eq!(((w + 2 * p - 3) / stride + 1, (h + 2 * p - 3) / stride + 1), (ow, oh));
        let (rh, rw, responses) = correlate(&plane, h, w, &kernel, stride, padding == "same");
        assert_eq!((rw, rh), (ow, oh));
        let v: Vec<f32> = responses.iter().map(|&x| x as f32).collect();
        let (lo, hi) = range(&v);
        let max_abs = lo.abs().max(hi.abs());
        assert!(lo < 0.0 && hi > 0.0, "the test wants responses of both signs: {lo} .. {hi}");
        let stride_arg = stride.to_string();
        let common = ["--kernel", kernel_arg, "--padding", padding, "--stride", stride_arg.as_str()];

        // auto: signed for this kernel, the same picture as --map signed.
        let (auto, auto_out) = filter(&grey_path, "auto.png", &common);
        let (signed, stdout) = filter(&grey_path, "signed.png", &[&common[..], &["--map", "signed"]].concat());
        assert_eq!(auto_out.replace("auto.png", "signed.png"), stdout);
        let signed = signed.to_luma8();
        assert!(auto.to_luma8() == signed);
        assert_eq!(signed.dimensions(), (ow as u32, oh as u32), "{padding}, stride {stride}");
        let expected: Vec<u8> = v.iter().map(|&x| signed_pixel(x, max_abs)).collect();
        assert_eq!(signed.as_raw(), &expected, "{padding}, stride {stride}: signed");
        assert!(
            stdout.contains(&format!("output {ow}x{oh} (one grey channel, {padding} padding, stride {stride}); responses {lo} .. {hi}\n")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("mapping signed: pixel = 128 + v * 127 / {max_abs} (max |v|), zero is mid-grey\n")), "{stdout}");
        assert!(stdout.starts_with("kernel inline 3x3 (3x3, coefficients sum to -1):\n"), "{stdout}");

        // clamped: the responses themselves, negative ones black; signed puts zero at
        // mid-grey, negative responses below it and positive ones above.
        let (clamped, stdout) = filter(&grey_path, "clamped.png", &[&common[..], &["--map", "clamped"]].concat());
        let clamped = clamped.to_luma8();
        assert_eq!(clamped.dimensions(), (ow as u32, oh as u32));
        let expected: Vec<u8> = v.iter().map(|&x| clamped_pixel(x)).collect();
        assert_eq!(clamped.as_raw(), &expected, "{padding}, stride {stride}: clamped");
        assert!(stdout.contains("mapping clamped: pixel = v, clamped to 0..255\n"), "{stdout}");
        assert!(stdout.contains("note: responses outside 0..255 were clipped"), "{stdout}");
        assert!(clamped != signed);
        for ((&x, &sp), &cp) in v.iter().zip(signed.as_raw()).zip(clamped.as_raw()) {
            // (A response under half a grey level from zero rounds to mid-grey.)
            let ok = match x {
                x if x < 0.0 => cp == 0 && sp <= 128,
                x if x > 0.0 => sp >= 128 && cp == clamped_pixel(x),
                _ => sp == 128 && cp == 0,
            };
            assert!(ok, "v = {x}: signed {sp}, clamped {cp}");
        }
    }

    // A colour image: each channel filtered with the same kernel (a colour result), signed over
    // the largest |v| of all channels; with --grayscale, its luma filtered once.
    let colour = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb([((x * 40) % 256) as u8, ((y * 45 + 10) % 256) as u8, ((x * y * 9 + 30) % 256) as u8])
    });
    let colour_path = work.path().join("colour.png");
    colour.save(&colour_path).unwrap();
    let channel = |c: usize| -> Vec<f64> { colour.as_raw().iter().skip(c).step_by(3).map(|&p| f64::from(p)).collect() };
    let per_channel: Vec<Vec<f32>> =
        (0..3).map(|c| correlate(&channel(c), h, w, &kernel, 1, false).2.iter().map(|&x| x as f32).collect()).collect();
    let max_abs = per_channel.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    let (out, stdout) = filter(&colour_path, "colour-signed.png", &["--kernel", kernel_arg]);
    assert!(stdout.contains("output 5x4 (each of 3 channels, valid padding, stride 1)"), "{stdout}");
    let out = out.to_rgb8();
    assert_eq!(out.dimensions(), (5, 4));
    let expected: Vec<u8> =
        (0..20).flat_map(|i| (0..3).map(move |c| (i, c))).map(|(i, c)| signed_pixel(per_channel[c][i], max_abs)).collect();
    assert_eq!(out.as_raw(), &expected, "colour, signed");
    // gaussian-blur sums to 1: auto is clamped; its coefficients are sixteenths, exact in f32.
    let gauss = [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0].map(|k| k / 16.0);
    let (out, stdout) = filter(&colour_path, "colour-blur.png", &["--kernel", "gaussian-blur", "--padding", "same"]);
    assert!(stdout.contains("output 7x6 (each of 3 channels, same padding, stride 1)") && stdout.contains("mapping clamped"), "{stdout}");
    let blurred: Vec<Vec<f64>> = (0..3).map(|c| correlate(&channel(c), h, w, &gauss, 1, true).2).collect();
    let expected: Vec<u8> =
        (0..w * h).flat_map(|i| (0..3).map(move |c| (i, c))).map(|(i, c)| clamped_pixel(blurred[c][i] as f32)).collect();
    assert_eq!(out.to_rgb8().as_raw(), &expected, "colour, gaussian blur");
    // --grayscale: the luma (as the image crate converts RGB to grey) filtered once.
    let luma: Vec<f64> = image::DynamicImage::ImageRgb8(colour.clone()).to_luma8().as_raw().iter().map(|&p| f64::from(p)).collect();
    let v: Vec<f32> = correlate(&luma, h, w, &kernel, 2, true).2.iter().map(|&x| x as f32).collect();
    let max_abs = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let (out, stdout) = filter(&colour_path, "luma.png", &["--kernel", kernel_arg, "--grayscale", "--padding", "same", "--stride", "2"]);
    assert!(stdout.contains("output 4x3 (one grey channel, same padding, stride 2)"), "{stdout}");
    assert_eq!(out.color(), image::ColorType::L8, "one grey channel is written as a grayscale PNG");
    let expected: Vec<u8> = v.iter().map(|&x| signed_pixel(x, max_abs)).collect();
    assert_eq!(out.to_luma8().as_raw(), &expected, "grayscale");
}

#[test]
fn visualize_activations_draws_each_scale_as_the_library_does_and_filters_need_a_conv() {
    use convnet::viz::activations::{write_activations_png, ActivationScale};
    use convnet::viz::filters::{first_conv_weight, write_filters_png};
    use convnet::viz::grid::Tile;
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 64, 16, 7);
    let work = tempfile::tempdir().unwrap();
    let run = train_tiny(data.path(), work.path(), "run", 2, &[]);
    let model = run.join("best.safetensors");
    // A 10x12 grayscale image with a bright bottom-left quadrant: resized to the model's 8x8.
    let input = work.path().join("boot.png");
    image::GrayImage::from_fn(10, 12, |x, y| image::Luma([if x < 5 && y >= 6 { 220 } else { 35 }])).save(&input).unwrap();

    // The library's pipeline, as documented: read and resize, normalise, trace, draw.
    let ck = Checkpoint::load(&model).unwrap();
    let mut net = ck.network().unwrap();
    let img = read_image(&input, Some((8, 8)), 1).unwrap();
    let mut x = Tensor::zeros(&[1, 8, 8, 1]);
    ck.meta.normalization.apply(&img.pixels, x.data_mut());
    let trace = net.forward_trace(&x).unwrap();
    let probs = softmax(&trace.last().unwrap().1).unwrap();
    let best = argmax(probs.data());
    assert_eq!(best, 2, "the network learnt the quadrants");
    let note = format!("prediction: {} ({:.1}%)", ck.meta.class_names[best], 100.0 * probs.data()[best]);
    let tile = Tile::new(8, 8, 1, img.pixels.clone(), "").unwrap();
    let library = |scale: ActivationScale, name: &str| {
        let path = work.path().join(name);
        write_activations_png(&tile, &trace, "Activations of tiny for boot.png", std::slice::from_ref(&note), scale, &path).unwrap();
        image::open(&path).unwrap().to_rgb8()
    };

    let mut pictures = Vec::new();
    for (scale, expected) in
        [(None, ActivationScale::Channel), (Some("channel"), ActivationScale::Channel), (Some("layer"), ActivationScale::Layer)]
    {
        let out = work.path().join(format!("act-{}.png", scale.unwrap_or("default")));
        let mut args = vec!["visualize", "activations", "--model", s(&model), s(&input), s(&out)];
        if let Some(v) = scale {
            args.extend(["--scale", v]);
        }
        let (code, stdout, stderr) = convnet(&args);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout, format!("{note}\nwrote {}\n", out.display()));
        assert_eq!(stderr, "", "a grayscale image larger than the input: nothing to note");
        let picture = image::open(&out).unwrap().to_rgb8();
        assert!(picture == library(expected, "lib.png"), "--scale {scale:?}: not the library's {expected:?} picture");
        pictures.push(picture);
    }
    // Each scale is the library's picture of that scale (above), and the two differ.
    assert!(pictures[1] != pictures[2], "--scale channel and --scale layer drew the same picture");
    assert!(library(ActivationScale::Channel, "lib.png") != library(ActivationScale::Layer, "lib.png"));
    let (code, _, stderr) =
        convnet(&["visualize", "activations", "--model", s(&model), s(&input), s(&work.path().join("x.png")), "--scale", "global"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("'global'") && stderr.contains("channel") && stderr.contains("layer"), "{stderr}");

    // filters: the first conv's weight [3, 3, 1, 4], drawn as the library draws it.
    let out = work.path().join("filters.png");
    let (code, stdout, stderr) = convnet(&["visualize", "filters", "--model", s(&model), s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("wrote {} (layer 0 (conv2d + relu), weight [3, 3, 1, 4])\n", out.display()));
    let (layer, weight) = first_conv_weight(&net).unwrap();
    let lib = work.path().join("lib-filters.png");
    write_filters_png(&weight, &format!("First-layer filters of tiny ({layer}, after {} epochs)", ck.meta.epoch), &lib).unwrap();
    assert!(image::open(&out).unwrap().to_rgb8() == image::open(&lib).unwrap().to_rgb8());

    // A model without any conv2d layer has no filters to draw: a clear error, exit code 2, no file.
    let cfg = convnet::Config::from_toml(
        &model_config("dense-only", "[8, 8, 1]", "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n"),
        "dense-only",
    )
    .unwrap();
    let dense = convnet::model::Network::build(&cfg.model, 1).unwrap();
    let meta = CheckpointMeta {
        class_names: (0..10).map(|d| d.to_string()).collect(),
        normalization: convnet::data::Normalization { mean: vec![0.5], std: vec![0.25] },
        epoch: 1,
        optimizer_step: 0,
        seed: 1,
        best_val_accuracy: 0.0,
    };
    let dense_ck = work.path().join("dense.safetensors");
    save_checkpoint(&dense_ck, &dense, &cfg.run, None, &meta).unwrap();
    let out = work.path().join("dense-filters.png");
    let (code, stdout, stderr) = convnet(&["visualize", "filters", "--model", s(&dense_ck), s(&out)]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert_eq!(stderr, "error: visualize filters: dense-only has no conv2d layer\n");
    assert!(!out.exists());
    // Nor activations to draw.
    let (code, _, stderr) = convnet(&["visualize", "activations", "--model", s(&dense_ck), s(&input), s(&out)]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr, "error: activations: the network has no conv or pool layer to show\n");
    assert!(!out.exists());
}

#[test]
fn predict_prints_the_top_5_of_the_librarys_softmax_with_the_checkpoints_class_names() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 64, 16, 8);
    let work = tempfile::tempdir().unwrap();
    let run = train_tiny(data.path(), work.path(), "run", 3, &[]);
    // The same weights under class names of our own, so that the names can only come from the
    // checkpoint.
    let trained = Checkpoint::load(&run.join("best.safetensors")).unwrap();
    let names: Vec<String> =
        ["top-left", "top-right", "bottom-left", "bottom-right", "e", "f", "g", "h", "i", "j"].iter().map(|n| n.to_string()).collect();
    let meta = CheckpointMeta { class_names: names.clone(), ..trained.meta.clone() };
    let model = work.path().join("named.safetensors");
    save_checkpoint(&model, &trained.network().unwrap(), &trained.config.run, None, &meta).unwrap();

    // A 20x30 RGB image bright at the top left (resized, converted to grey), an 8x8 grey one
    // bright at the bottom right, a 4x4 grey one bright at the top right (enlarged).
    let rgb = work.path().join("rgb.png");
    image::RgbImage::from_fn(20, 30, |x, y| image::Rgb(if x < 10 && y < 15 { [230, 220, 210] } else { [30, 40, 20] })).save(&rgb).unwrap();
    let grey = work.path().join("grey.png");
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([if x >= 4 && y >= 4 { 230 } else { 30 }])).save(&grey).unwrap();
    let small = work.path().join("small.png");
    image::GrayImage::from_fn(4, 4, |x, y| image::Luma([if x >= 2 && y < 2 { 230 } else { 30 }])).save(&small).unwrap();
    let (code, stdout, stderr) = convnet(&["predict", "--model", s(&model), s(&rgb), s(&grey), s(&small)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "note: {} is RGB, converted to grayscale for the model\n\
             note: {} is 4x4 (width x height), smaller than the model's 8x8 input: enlarged to fit\n",
            rgb.display(),
            small.display()
        )
    );

    let ck = Checkpoint::load(&model).unwrap();
    let mut net = ck.network().unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 18, "a header and the top 5 per image: {stdout}");
    for (block, (path, top)) in lines.chunks(6).zip([(&rgb, 0), (&grey, 3), (&small, 1)]) {
        assert_eq!(block[0], format!("{}:", path.display()));
        // predict's preprocessing: resized to the input with the library's reader, in the
        // model's channels, normalised with the checkpoint's statistics.
        let img = read_image(path, Some((8, 8)), 1).unwrap();
        let logits = logits_of(&mut net, &ck, &img.pixels);
        // Softmax by hand, in f64.
        let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - m).exp()).collect();
        let probs: Vec<f64> = e.iter().map(|v| v / e.iter().sum::<f64>()).collect();
        let mut ranked: Vec<usize> = (0..10).collect();
        ranked.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        assert_eq!(ranked[0], top, "the network learnt the quadrants: {probs:?}");
        // The library's softmax, as printed.
        let library = softmax(&Tensor::from_vec(&[1, 10], logits.clone()).unwrap()).unwrap();
        let printed: Vec<(f64, &str)> = block[1..]
            .iter()
            .map(|l| {
                let (p, class) = l.trim_start().split_once("%  ").unwrap_or_else(|| panic!("{l:?}"));
                (p.parse().unwrap(), class)
            })
            .collect();
        for (k, (line, (p, class))) in block[1..].iter().zip(&printed).enumerate() {
            let c = ranked[k];
            assert_eq!(*class, names[c], "rank {k}: {stdout}");
            assert!((p - 100.0 * probs[c]).abs() <= 0.005 + 1e-4, "rank {k}: printed {p}, softmax {}", 100.0 * probs[c]);
            assert_eq!(*line, format!("  {:6.2}%  {}", 100.0 * library.data()[c], names[c]));
        }
        assert!(printed.windows(2).all(|w| w[0].0 >= w[1].0), "most probable first: {stdout}");
    }
}

#[test]
fn predict_json_gives_every_logit_and_probability_in_full() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 64, 16, 8);
    let work = tempfile::tempdir().unwrap();
    let run = train_tiny(data.path(), work.path(), "run", 1, &[]);
    let model = run.join("best.safetensors");
    let grey = work.path().join("grey.png");
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([if x >= 4 && y >= 4 { 230 } else { 30 }])).save(&grey).unwrap();
    let rgb = work.path().join("rgb.png");
    image::RgbImage::from_fn(20, 30, |x, y| image::Rgb(if x < 10 && y < 15 { [230, 220, 210] } else { [30, 40, 20] })).save(&rgb).unwrap();
    let (code, stdout, stderr) = convnet(&["predict", "--json", "--model", s(&model), s(&grey), s(&rgb)]);
    assert_eq!(code, 0, "{stderr}");
    let ck = Checkpoint::load(&model).unwrap();
    let mut net = ck.network().unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one JSON object per image: {stdout}");
    for (line, path) in lines.iter().zip([&grey, &rgb]) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["image"], path.display().to_string());
        let floats = |key: &str| -> Vec<f32> { v[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
        // Every class, bit for bit: the library's logits and softmax of them.
        let logits = logits_of(&mut net, &ck, &read_image(path, Some((8, 8)), 1).unwrap().pixels);
        assert_eq!(floats("logits"), logits);
        let probs = softmax(&Tensor::from_vec(&[1, 10], logits).unwrap()).unwrap();
        assert_eq!(floats("probabilities"), probs.data());
        let top5 = v["top5"].as_array().unwrap();
        assert_eq!(top5.len(), 5);
        let mut ranked: Vec<usize> = (0..10).collect();
        ranked.sort_by(|&a, &b| probs.data()[b].total_cmp(&probs.data()[a]));
        for (k, entry) in top5.iter().enumerate() {
            assert_eq!(entry["class"], ranked[k]);
            assert_eq!(entry["name"], ck.meta.class_names[ranked[k]]);
            assert_eq!(entry["probability"].as_f64().unwrap() as f32, probs.data()[ranked[k]]);
        }
    }
}

#[test]
fn a_run_without_a_validation_split_prints_no_val_figures_and_eval_refuses_its_val_split() {
    let data = tempfile::tempdir().unwrap();
    write_mislabelled_quadrants(data.path());
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("noval.toml");
    let text = tiny_config(data.path(), 2, "kind = \"adam\"\nlr = 0.01");
    assert!(text.contains("validation = 16\n"));
    std::fs::write(&cfg, text.replace("validation = 16\n", "validation = 0\n")).unwrap();
    let run = work.path().join("noval");
    let (code, _, stderr) = convnet(&["train", "--config", s(&cfg), "--out", s(&run), "--threads", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let epochs: Vec<&str> = stderr.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 2, "{stderr}");
    assert!(epochs.iter().all(|l| l.contains(" test ") && !l.contains("val") && !l.contains("NaN")), "{stderr}");
    let model = run.join("best.safetensors");
    let (code, stdout, stderr) = convnet(&["eval", "--model", s(&model), "--split", "val"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--split") && stderr.contains("keeps no validation split ([train] validation = 0)"), "{stderr}");
    assert!(stdout.is_empty() && !work.path().join("noval/confusion.png").exists(), "nothing printed or drawn: {stdout}");
}

#[cfg(target_os = "linux")]
#[test]
fn output_into_a_closed_pipe_ends_the_process_quietly_as_head_expects() {
    use std::os::unix::process::ExitStatusExt;
    // The reading end is closed before convnet starts, so its first print meets a broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["summary", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/cifar10-resnet.toml")])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    const SIGPIPE: i32 = 13;
    assert_eq!(out.status.signal(), Some(SIGPIPE), "ended by SIGPIPE, as `ls | head` is: {:?}", out.status);
}
