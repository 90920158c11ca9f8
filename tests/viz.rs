//! Pictures: every writer produces a PNG of the expected size that decodes back; text renders
//! with the embedded font; the `filter` command finds a horizontal edge and nothing else; the
//! inline kernel parser; `visualize` and `plot` through the binary. What the pictures show:
//! every run's points and lines in its colour where its values are (NaN values left out), the
//! filter and activation tiles equal to the weights and layer outputs under the documented
//! grey-level mappings, read back from the PNG. All data is generated here.

mod common;

use std::path::Path;
use std::process::Command;

use convnet::data::Normalization;
use convnet::model::Network;
use convnet::train::metrics::write_metrics;
use convnet::train::{save_checkpoint, CheckpointMeta, EpochMetrics};
use convnet::viz::activations::{channel_tiles, write_activations_png, ActivationScale};
use convnet::viz::confusion::render_confusion;
use convnet::viz::curves::{CURVES_SIZE, TITLE_BAND};
use convnet::viz::filter_image::{filter_pixels, kernel_from_arg, named_kernel, parse_kernel, FilterOptions, Mapping, KERNEL_NAMES};
use convnet::viz::filters::{filter_tiles, first_conv_weight};
use convnet::viz::grid::Tile;
use convnet::viz::{write_confusion_png, write_curves, write_curves_for, write_filters_png};
use convnet::{Config, Tensor};

fn decode(path: &Path) -> image::RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("{} is not a readable image: {e}", path.display())).to_rgb8()
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).map(|b| b.starts_with(b"\x89PNG\r\n\x1a\n")).unwrap_or(false)
}

/// Pixels in the rectangle that are clearly not white.
fn dark_pixels(img: &image::RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
    let mut n = 0;
    for y in y0..y1.min(img.height()) {
        for x in x0..x1.min(img.width()) {
            if img.get_pixel(x, y).0.iter().any(|&c| c < 160) {
                n += 1;
            }
        }
    }
    n
}

fn epochs(n: usize, offset: f32) -> Vec<EpochMetrics> {
    (1..=n)
        .map(|e| {
            let t = e as f32;
            EpochMetrics {
                epoch: e,
                train_loss: 0.9 / t + offset,
                train_accuracy: 0.70 + 0.05 * t,
                val_loss: 1.0 / t + 0.1 + offset,
                val_accuracy: 0.68 + 0.04 * t,
                test_loss: 1.0 / t + 0.12,
                test_accuracy: 0.67 + 0.04 * t,
                lr: 1e-3,
                seconds: 1.0,
                images_per_second: 100.0,
            }
        })
        .collect()
}

// ---------------------------------------------------------------- curves

#[test]
fn curves_png_has_its_size_and_a_rendered_title() {
    let dir = tempfile::tempdir().unwrap();
    let (png, svg) = (dir.path().join("curves.png"), dir.path().join("curves.svg"));
    write_curves_for(&[("tiny-run".to_string(), epochs(4, 0.0))], &png, Some(&svg)).unwrap();
    assert!(is_png(&png));
    let img = decode(&png);
    assert_eq!((img.width(), img.height()), CURVES_SIZE);
    // The title is centred in the top band: text there means the embedded font rendered (no
    // system font is ever consulted: plotters is built without font-kit).
    let (w, _) = CURVES_SIZE;
    let title_ink = dark_pixels(&img, w / 2 - 150, 0, w / 2 + 150, TITLE_BAND);
    assert!(title_ink > 100, "only {title_ink} dark pixels in the title area: the title did not render");
    // The band's left end holds nothing.
    assert_eq!(dark_pixels(&img, 0, 0, 100, TITLE_BAND), 0, "unexpected ink left of the title");
    // The x-axis title "epoch" under the left panel, below the axis line and tick numbers.
    assert!(dark_pixels(&img, 60, CURVES_SIZE.1 - 40, w / 2, CURVES_SIZE.1) > 30, "no x-axis title");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") || text.contains("<svg"), "not an SVG");
    assert!(text.contains("Training curves: tiny-run") && text.contains("epoch") && text.contains("accuracy (%)"));
}

#[test]
fn curves_of_several_run_folders_and_one_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (d, rows) in [(&a, epochs(3, 0.0)), (&b, epochs(1, 0.2))] {
        std::fs::create_dir_all(d).unwrap();
        write_metrics(&d.join("metrics.csv"), &rows).unwrap();
    }
    let png = dir.path().join("both.png");
    write_curves(&[(a.clone(), "a".into()), (b.clone(), "b".into())], &png, None).unwrap();
    let img = decode(&png);
    assert_eq!((img.width(), img.height()), CURVES_SIZE);
    assert!(!dir.path().join("both.svg").exists());

    // No validation split: val_* are NaN and the validation lines are left out, not an error.
    let mut rows = epochs(2, 0.0);
    for r in &mut rows {
        r.val_loss = f32::NAN;
        r.val_accuracy = f32::NAN;
    }
    write_curves_for(&[("no-val".into(), rows)], &png, None).unwrap();
    assert_eq!(decode(&png).dimensions(), CURVES_SIZE);
}

#[test]
fn curves_of_a_run_without_epochs_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_metrics(&dir.path().join("metrics.csv"), &[]).unwrap();
    let err = write_curves(&[(dir.path().to_path_buf(), "empty".into())], &dir.path().join("c.png"), None).unwrap_err();
    assert!(err.to_string().contains("no epochs"), "{err}");
    let missing = write_curves(&[(dir.path().join("nope"), "x".into())], &dir.path().join("c.png"), None).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

// ---------------------------------------------------------------- confusion

#[test]
fn confusion_png_decodes_with_labels_and_heat() {
    let dir = tempfile::tempdir().unwrap();
    let m = vec![vec![50, 3, 0], vec![5, 40, 10], vec![0, 2, 60]];
    let names: Vec<String> = ["cat", "dog", "bird"].iter().map(|s| s.to_string()).collect();
    let out = dir.path().join("sub/confusion.png");
    write_confusion_png(&m, &names, "tiny: confusion", &out).unwrap();
    assert!(is_png(&out));
    let img = decode(&out);
    let (_, w, h) = render_confusion(&m, &names, "tiny: confusion").unwrap();
    assert_eq!((img.width(), img.height()), (w, h));
    assert!(w >= 3 * 58 && h >= 3 * 58, "{w}x{h} is too small for 3 cells of 58 pixels");
    // The diagonal is mostly dark blue (the darkest colour of the scale is (8, 48, 107)).
    let blue = img.pixels().filter(|p| p.0[2] > 90 && p.0[0] < 40 && p.0[1] < 70).count();
    assert!(blue > 3 * 40 * 40, "only {blue} dark blue pixels");
    // The title renders.
    assert!(dark_pixels(&img, 0, 0, w, 40) > 100);
    // A bigger matrix is a bigger picture; a ragged one is an error.
    let ten: Vec<Vec<usize>> = (0..10).map(|i| (0..10).map(|j| usize::from(i == j) * 9 + 1).collect()).collect();
    let (_, w10, h10) = render_confusion(&ten, &[], "ten").unwrap();
    assert!(w10 > w && h10 > h);
    assert!(write_confusion_png(&[vec![1, 2], vec![3]], &[], "bad", &out).is_err());
}

// ---------------------------------------------------------------- filters and activations

const TINY: &str = r#"
name = "tiny-viz"
input = [12, 12, 1]

[data]
dataset = "fashion-mnist"
path = "/nonexistent"

[train]
batch_size = 4
epochs = 1
seed = 7

[optimizer]
kind = "sgd"
lr = 0.1

[[layers]]
type = "conv2d"
filters = 6
kernel = 3

[[layers]]
type = "relu"

[[layers]]
type = "max_pool"
size = 2

[[layers]]
type = "conv2d"
filters = 4
kernel = 3

[[layers]]
type = "flatten"

[[layers]]
type = "dense"
units = 3
"#;

fn tiny_net(input: [usize; 3]) -> Network {
    let text = TINY.replace("input = [12, 12, 1]", &format!("input = {input:?}"));
    let cfg = Config::from_toml(&text, "tiny").unwrap();
    Network::build(&cfg.model, 7).unwrap()
}

fn save_tiny(net: &Network, path: &Path) {
    let c = net.spec().input[2];
    let meta = CheckpointMeta {
        class_names: vec!["zero".into(), "one".into(), "two".into()],
        normalization: Normalization { mean: vec![0.5; c], std: vec![0.25; c] },
        epoch: 1,
        optimizer_step: 0,
        seed: 7,
        best_val_accuracy: 0.0,
    };
    let run = Config::from_toml(TINY, "tiny").unwrap().run;
    save_checkpoint(path, net, &run, None, &meta).unwrap();
}

#[test]
fn forward_trace_names_every_layer_and_ends_with_the_logits() {
    let mut net = tiny_net([12, 12, 1]);
    let x = Tensor::from_vec(&[1, 12, 12, 1], (0..144).map(|i| (i % 7) as f32 / 7.0).collect()).unwrap();
    let trace = net.forward_trace(&x).unwrap();
    let names: Vec<&str> = trace.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["layer 0 (conv2d + relu)", "layer 2 (max_pool)", "layer 3 (conv2d)", "layer 4 (flatten)", "layer 5 (dense)"]);
    assert_eq!(trace[0].1.shape(), [1, 12, 12, 6]);
    assert!(trace[0].1.data().iter().all(|&v| v >= 0.0), "the folded relu is in the conv's output");
    assert_eq!(trace[1].1.shape(), [1, 6, 6, 6]);
    let logits = net.predict(&x).unwrap();
    assert_eq!(trace.last().unwrap().1.data(), logits.data());
}

#[test]
fn filter_tiles_are_normalised_per_filter() {
    // Grey: one tile per filter, each stretched to 0..255.
    let net = tiny_net([12, 12, 1]);
    let (name, w) = first_conv_weight(&net).unwrap();
    assert_eq!(name, "layer 0 (conv2d + relu)");
    let (tiles, _) = filter_tiles(&w).unwrap();
    assert_eq!(tiles.len(), 6);
    for t in &tiles {
        assert_eq!((t.width, t.height, t.channels), (3, 3, 1));
        assert_eq!(*t.pixels.iter().min().unwrap(), 0);
        assert_eq!(*t.pixels.iter().max().unwrap(), 255);
    }
    // RGB: one colour tile per filter.
    let (_, w3) = first_conv_weight(&tiny_net([12, 12, 3])).unwrap();
    let (tiles, _) = filter_tiles(&w3).unwrap();
    assert_eq!(tiles.len(), 6);
    assert!(tiles.iter().all(|t| t.channels == 3 && t.pixels.len() == 27));
    // Two input channels: one grey tile per (filter, channel), a row per filter.
    let (_, w2) = first_conv_weight(&tiny_net([12, 12, 2])).unwrap();
    let (tiles, columns) = filter_tiles(&w2).unwrap();
    assert_eq!((tiles.len(), columns), (12, 2));
    assert_eq!(tiles[3].label, "f1 c1");
    // A known weight: filter 0 is a ramp 0..8, so its tile is that ramp scaled to 0..255.
    let ramp = Tensor::from_vec(&[3, 3, 1, 1], (0..9).map(|i| i as f32).collect()).unwrap();
    let (tiles, _) = filter_tiles(&ramp).unwrap();
    assert_eq!(tiles[0].pixels, (0..9).map(|i| (i as f32 * 255.0 / 8.0).round() as u8).collect::<Vec<_>>());
}

#[test]
fn filters_and_activations_pngs_decode_at_a_sensible_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = tiny_net([12, 12, 1]);
    let (_, w) = first_conv_weight(&net).unwrap();
    let out = dir.path().join("filters.png");
    write_filters_png(&w, "tiny filters", &out).unwrap();
    let img = decode(&out);
    // 6 tiles of 3x3 upscaled 16 times (48 pixels + border) side by side, plus margins.
    assert!(img.width() >= 6 * 50 && img.height() >= 50 + 60, "{:?}", img.dimensions());
    assert!(dark_pixels(&img, 0, 0, img.width(), 40) > 50, "no title");

    let pixels: Vec<u8> = (0..144).map(|i| if (i / 12) < 6 { 220 } else { 30 }).collect();
    let mut x = Tensor::zeros(&[1, 12, 12, 1]);
    Normalization { mean: vec![0.5], std: vec![0.25] }.apply(&pixels, x.data_mut());
    let trace = net.forward_trace(&x).unwrap();
    let input = Tile::new(12, 12, 1, pixels, "").unwrap();
    let out = dir.path().join("act.png");
    write_activations_png(&input, &trace, "tiny activations", &["prediction: one".into()], ActivationScale::Layer, &out).unwrap();
    let img = decode(&out);
    // Three sections (conv 12x12 at 4x, pool 6x6 at 9x, conv 6x6 at 9x) under the input.
    assert!(img.width() >= 6 * 50 && img.height() >= 3 * 50 + 100, "{:?}", img.dimensions());
    let tiles = channel_tiles(&trace[0].1, ActivationScale::Channel).unwrap();
    assert_eq!(tiles.len(), 6);
    assert!(tiles.iter().all(|t| (t.width, t.height) == (12, 12)));
}

// ---------------------------------------------------------------- filter (one kernel)

/// 12 rows x 10 columns: the top 6 rows 200, the bottom 6 rows 20.
fn edge_image() -> Vec<u8> {
    (0..12 * 10).map(|i| if i / 10 < 6 { 200 } else { 20 }).collect()
}

#[test]
fn edge_horizontal_responds_on_the_edge_rows_and_nowhere_else() {
    let k = named_kernel("edge-horizontal").unwrap();
    let out = filter_pixels(&edge_image(), 12, 10, 1, &k, &FilterOptions::default()).unwrap();
    // Valid padding: output row i sees input rows i..i+2; rows 4 and 5 straddle the edge.
    assert_eq!((out.height, out.width, out.channels), (10, 8, 1));
    assert_eq!(out.mapping, Mapping::Signed { max_abs: 540.0 });
    for r in 0..10 {
        let row = &out.responses[r * 8..(r + 1) * 8];
        let px = &out.pixels[r * 8..(r + 1) * 8];
        if r == 4 || r == 5 {
            assert!(row.iter().all(|&v| v == 540.0), "row {r}: {row:?}");
            assert!(px.iter().all(|&p| p == 255), "row {r}: {px:?}");
        } else {
            assert!(row.iter().all(|&v| v == 0.0), "row {r}: {row:?}");
            assert!(px.iter().all(|&p| p == 128), "row {r}: zero maps to mid-grey, got {px:?}");
        }
    }
    // Upside down, the edge is dark over light: the response is negative (black).
    let flipped: Vec<u8> = edge_image().into_iter().rev().collect();
    let out = filter_pixels(&flipped, 12, 10, 1, &k, &FilterOptions::default()).unwrap();
    assert!(out.pixels[4 * 8..6 * 8].iter().all(|&p| p == 1));
    // Same padding keeps the size; away from the zero-padded border only the edge rows respond.
    let same = FilterOptions { same: true, ..FilterOptions::default() };
    let out = filter_pixels(&edge_image(), 12, 10, 1, &k, &same).unwrap();
    assert_eq!((out.height, out.width), (12, 10));
    for r in 1..11 {
        let interior = &out.responses[r * 10 + 1..r * 10 + 9];
        let expected = if r == 5 || r == 6 { 540.0 } else { 0.0 };
        assert!(interior.iter().all(|&v| v == expected), "row {r}: {interior:?}");
    }
    // Stride 2 halves the output.
    let s2 = FilterOptions { stride: 2, ..FilterOptions::default() };
    let out = filter_pixels(&edge_image(), 12, 10, 1, &k, &s2).unwrap();
    assert_eq!((out.height, out.width), (5, 4));
}

#[test]
fn colour_images_are_filtered_per_channel_and_blurs_are_clamped() {
    // Channel 0 has the edge, channel 1 is flat, channel 2 has the edge upside down.
    let grey = edge_image();
    let rgb: Vec<u8> = grey.iter().rev().zip(&grey).flat_map(|(&flip, &g)| [g, 90, flip]).collect();
    let k = named_kernel("edge-horizontal").unwrap();
    let out = filter_pixels(&rgb, 12, 10, 3, &k, &FilterOptions::default()).unwrap();
    assert_eq!(out.channels, 3);
    let at = |r: usize, c: usize| out.responses[(r * 8) * 3 + c];
    assert_eq!((at(4, 0), at(4, 1), at(4, 2)), (540.0, 0.0, -540.0));
    assert_eq!((at(0, 0), at(0, 1), at(0, 2)), (0.0, 0.0, 0.0));

    let blur = named_kernel("box-blur").unwrap();
    assert!((blur.sum() - 1.0).abs() < 1e-6 && !blur.is_signed());
    let out = filter_pixels(&grey, 12, 10, 1, &blur, &FilterOptions::default()).unwrap();
    assert_eq!(out.mapping, Mapping::Clamped);
    assert_eq!(out.pixels[0], 200);
    assert_eq!(out.pixels[4 * 8], 140); // (200 * 6 + 20 * 3) / 9
    assert!(!named_kernel("sharpen").unwrap().is_signed());
    for name in ["edge-vertical", "sobel-x", "sobel-y", "laplacian"] {
        assert!(named_kernel(name).unwrap().is_signed(), "{name}");
    }
    assert!(KERNEL_NAMES.iter().all(|(n, _)| named_kernel(n).is_some()));
}

#[test]
fn inline_kernels_parse_or_say_why_not() {
    let k = parse_kernel("1,0,-1;1,0,-1").unwrap();
    assert_eq!((k.height, k.width), (2, 3));
    assert_eq!(k.values, [1.0, 0.0, -1.0, 1.0, 0.0, -1.0]);
    let k = parse_kernel(" 1/9, 1/9 ; 0.5 , -2e0 ").unwrap();
    assert_eq!((k.height, k.width), (2, 2));
    assert!((k.values[0] - 1.0 / 9.0).abs() < 1e-7 && k.values[3] == -2.0);

    let err = parse_kernel("1,2;3").unwrap_err().to_string();
    assert!(err.contains("row 2 has 1 values but row 1 has 2") && err.contains("rectangular"), "{err}");
    let err = parse_kernel("1,x").unwrap_err().to_string();
    assert!(err.contains("\"x\" is not a finite number"), "{err}");
    assert!(parse_kernel("1,;2,3").is_err());
    assert!(parse_kernel(";").is_err());
    assert!(parse_kernel("1/0").is_err());
    let err = kernel_from_arg("edge-diagonal").unwrap_err().to_string();
    assert!(err.contains("unknown kernel") && err.contains("sobel-x"), "{err}");
    assert_eq!(kernel_from_arg("laplacian").unwrap().name, "laplacian");
    assert_eq!(kernel_from_arg("1,1,1;0,0,0;-1,-1,-1").unwrap().values, named_kernel("edge-horizontal").unwrap().values);
    // A kernel larger than the image is an error, not a panic.
    let big = parse_kernel("1,1,1,1;1,1,1,1;1,1,1,1;1,1,1,1").unwrap();
    assert!(filter_pixels(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 3, 3, 1, &big, &FilterOptions::default()).is_err());
}

// ---------------------------------------------------------------- the binary

fn convnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).output().expect("run convnet")
}

#[test]
fn filter_command_finds_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("edge.png");
    image::GrayImage::from_raw(10, 12, edge_image()).unwrap().save(&input).unwrap();
    let out = dir.path().join("out.png");
    let run = convnet(&["filter", "--kernel", "edge-horizontal", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("128 + v * 127 / 540"), "{stdout}");
    let img = image::open(&out).unwrap().to_luma8();
    assert_eq!(img.dimensions(), (8, 10));
    for y in 0..10 {
        let expected = if y == 4 || y == 5 { 255 } else { 128 };
        assert!((0..8).all(|x| img.get_pixel(x, y).0[0] == expected), "row {y}");
    }

    // Clear errors, exit code 2, no panic.
    for (args, needle) in [
        (vec!["filter", "--kernel", "1,2;3", input.to_str().unwrap(), out.to_str().unwrap()], "rectangular"),
        (vec!["filter", "--kernel", "sobel-x", "/nonexistent/photo.png", out.to_str().unwrap()], "/nonexistent/photo.png"),
    ] {
        let run = convnet(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle) && !stderr.contains("panicked"), "{stderr}");
    }
    let not_image = dir.path().join("notes.png");
    std::fs::write(&not_image, "not an image").unwrap();
    let run = convnet(&["filter", "--kernel", "sobel-x", not_image.to_str().unwrap(), out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("notes.png") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn visualize_and_plot_commands_write_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("tiny.safetensors");
    save_tiny(&tiny_net([12, 12, 1]), &ck);
    let image_path = dir.path().join("input.png");
    image::GrayImage::from_raw(10, 12, edge_image()).unwrap().save(&image_path).unwrap();

    let filters = dir.path().join("filters.png");
    let run = convnet(&["visualize", "filters", "--model", ck.to_str().unwrap(), filters.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(decode(&filters).width() >= 6 * 50);

    let act = dir.path().join("act.png");
    let run = convnet(&["visualize", "activations", "--model", ck.to_str().unwrap(), image_path.to_str().unwrap(), act.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("prediction: "));
    assert!(decode(&act).height() > 200);

    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    write_metrics(&run_dir.join("metrics.csv"), &epochs(3, 0.0)).unwrap();
    let run = convnet(&["plot", run_dir.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(decode(&run_dir.join("curves.png")).dimensions(), CURVES_SIZE);
    assert!(run_dir.join("curves.svg").exists());
}

// ---------------------------------------------------------------- what the pictures show

/// Metrics of three epochs: `loss[split][epoch]` and `acc[split][epoch]`, splits train,
/// validation, test.
fn rows(loss: [[f32; 3]; 3], acc: [[f32; 3]; 3]) -> Vec<EpochMetrics> {
    (0..3)
        .map(|e| EpochMetrics {
            epoch: e + 1,
            train_loss: loss[0][e],
            train_accuracy: acc[0][e],
            val_loss: loss[1][e],
            val_accuracy: acc[1][e],
            test_loss: loss[2][e],
            test_accuracy: acc[2][e],
            lr: 1e-3,
            seconds: 1.0,
            images_per_second: 100.0,
        })
        .collect()
}

const NAN3: [f32; 3] = [f32::NAN; 3];

/// The palette of several runs (src/viz/curves.rs): run 0 blue, 1 red, 2 green, 3 purple.
const RUN_RGB: [[u8; 3]; 4] = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189]];

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// Four runs on well separated bands: a high losses and low accuracies, b in the middle with
/// its validation accuracy NaN at epoch 2 (or `b_val_acc_2`), c without a validation split, d
/// NaN everywhere.
fn four_runs(b_val_acc_2: f32) -> Vec<(String, Vec<EpochMetrics>)> {
    let a = rows([[2.4, 2.2, 2.0], [2.7, 2.55, 2.5], [2.9, 2.8, 2.75]], [[0.40, 0.44, 0.48], [0.34, 0.37, 0.40], [0.30, 0.32, 0.33]]);
    let b =
        rows([[1.4, 1.25, 1.1], [1.7, 1.6, 1.5], [1.9, 1.85, 1.8]], [[0.60, 0.64, 0.68], [0.55, b_val_acc_2, 0.57], [0.50, 0.52, 0.53]]);
    let c = rows([[0.6, 0.5, 0.4], NAN3, [0.9, 0.8, 0.75]], [[0.90, 0.93, 0.95], NAN3, [0.80, 0.83, 0.85]]);
    let d = rows([NAN3; 3], [NAN3; 3]);
    ["a", "b", "c", "d"].iter().map(|s| s.to_string()).zip([a, b, c, d]).collect()
}

/// The value of `split` (0 train, 1 validation, 2 test) in a row, as the chart shows it
/// (accuracy in percent).
fn shown(m: &EpochMetrics, loss: bool, split: usize) -> f64 {
    let v = match (loss, split) {
        (true, 0) => m.train_loss,
        (true, 1) => m.val_loss,
        (true, _) => m.test_loss,
        (false, 0) => 100.0 * m.train_accuracy,
        (false, 1) => 100.0 * m.val_accuracy,
        (false, _) => 100.0 * m.test_accuracy,
    };
    v as f64
}

/// The value of attribute `name` in one SVG element.
fn attr<'a>(element: &'a str, name: &str) -> &'a str {
    let start = element.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("no {name} in {element}")) + name.len() + 3;
    let len = element[start..].find('"').unwrap();
    &element[start..start + len]
}

/// An SVG circle: centre and fill colour.
type SvgCircle = ((f64, f64), String);
/// An SVG polyline: stroke colour, stroke width and points.
type SvgPolyline = (String, String, Vec<(f64, f64)>);

/// The SVG's circles and polylines.
fn svg_shapes(svg: &str) -> (Vec<SvgCircle>, Vec<SvgPolyline>) {
    let num = |s: &str| s.parse::<f64>().unwrap();
    let mut circles = Vec::new();
    let mut polylines = Vec::new();
    for line in svg.lines().map(str::trim) {
        if line.starts_with("<circle") {
            circles.push(((num(attr(line, "cx")), num(attr(line, "cy"))), attr(line, "fill").to_string()));
        } else if line.starts_with("<polyline") {
            let points = attr(line, "points")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (num(x), num(y))
                })
                .collect();
            polylines.push((attr(line, "stroke").to_string(), attr(line, "stroke-width").to_string(), points));
        }
    }
    (circles, polylines)
}

/// Maps (epoch, value) of one panel to pixels, fitted on the panel's extreme circles: the
/// leftmost is epoch 1, the rightmost the last epoch, the highest the largest value, the
/// lowest the smallest.
struct PanelMap {
    x: (f64, f64),
    y: (f64, f64),
}

impl PanelMap {
    fn fit(centres: &[(f64, f64)], last_epoch: f64, values: &[f64]) -> PanelMap {
        let (x_lo, x_hi) = centres.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| (lo.min(c.0), hi.max(c.0)));
        let (y_top, y_bottom) = centres.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| (lo.min(c.1), hi.max(c.1)));
        let (v_lo, v_hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let dx = (x_hi - x_lo) / (last_epoch - 1.0);
        let dy = (y_top - y_bottom) / (v_hi - v_lo);
        PanelMap { x: (x_lo - dx, dx), y: (y_bottom - dy * v_lo, dy) }
    }

    fn at(&self, epoch: f64, value: f64) -> (f64, f64) {
        (self.x.0 + self.x.1 * epoch, self.y.0 + self.y.1 * value)
    }
}

/// How much of colour `rgb` pixel `p` holds when it is `rgb` blended over white (1: the
/// colour itself, 0: white or anything that is not such a blend; thin lines are
/// anti-aliased).
fn ink(p: [u8; 3], rgb: [u8; 3]) -> f64 {
    let alphas: Vec<f64> = (0..3).filter(|&c| rgb[c] < 250).map(|c| (255.0 - f64::from(p[c])) / (255.0 - f64::from(rgb[c]))).collect();
    let (lo, hi) = alphas.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &a| (lo.min(a), hi.max(a)));
    if hi - lo <= 0.06 {
        alphas.iter().sum::<f64>() / alphas.len() as f64
    } else {
        0.0
    }
}

/// Whether a pixel within `r` of (x, y) holds at least `alpha` of colour `rgb`.
fn colour_near(img: &image::RgbImage, (x, y): (f64, f64), r: i64, rgb: [u8; 3], alpha: f64) -> bool {
    let (x, y) = (x.round() as i64, y.round() as i64);
    (-r..=r).any(|dy| (-r..=r).any(|dx| ink(img.get_pixel((x + dx) as u32, (y + dy) as u32).0, rgb) >= alpha))
}

#[test]
fn curves_of_several_runs_draw_each_runs_points_and_lines_in_its_colour_and_leave_nan_out() {
    let dir = tempfile::tempdir().unwrap();
    let (png, svg_path) = (dir.path().join("runs.png"), dir.path().join("runs.svg"));
    let runs = four_runs(f32::NAN);
    write_curves_for(&runs, &png, Some(&svg_path)).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let img = decode(&png);
    assert_eq!(img.dimensions(), CURVES_SIZE);
    let (circles, polylines) = svg_shapes(&svg);
    let half = f64::from(CURVES_SIZE.0) / 2.0;

    // Legend entries: one per drawn line, "<run> <split>"; none for c's missing validation
    // split, none at all for d.
    let texts: Vec<&str> = svg.lines().map(str::trim).filter(|l| !l.starts_with('<') && !l.is_empty()).collect();
    for label in ["a train", "a validation", "a test", "b train", "b validation", "b test", "c train", "c test"] {
        assert_eq!(texts.iter().filter(|t| **t == label).count(), 2, "legend entry {label:?} in both panels: {texts:?}");
    }
    assert!(!texts.iter().any(|t| t.starts_with("d ") || *t == "c validation"), "{texts:?}");
    assert!(!svg.contains(&hex(RUN_RGB[3])), "run d has no finite value, so nothing in its colour");
    assert_eq!(img.pixels().filter(|p| p.0 == RUN_RGB[3]).count(), 0, "run d's colour in the PNG");

    for (panel, loss) in [(0, true), (1, false)] {
        let in_panel = |x: f64| (x < half) == (panel == 0);
        // Every finite value is one circle of its run's colour at (epoch, value); NaN values
        // have none.
        let mut expected = Vec::new();
        for (r, (_, metrics)) in runs.iter().enumerate() {
            for m in metrics {
                for split in 0..3 {
                    let v = shown(m, loss, split);
                    if v.is_finite() {
                        expected.push((r, split, m.epoch as f64, v));
                    }
                }
            }
        }
        let centres: Vec<(f64, f64)> = circles.iter().filter(|(c, _)| in_panel(c.0)).map(|(c, _)| *c).collect();
        assert_eq!(centres.len(), expected.len(), "panel {panel}: one circle per finite value");
        let values: Vec<f64> = expected.iter().map(|e| e.3).collect();
        let map = PanelMap::fit(&centres, 3.0, &values);
        for &(r, split, epoch, v) in &expected {
            let (x, y) = map.at(epoch, v);
            let hit = circles.iter().any(|((cx, cy), fill)| *fill == hex(RUN_RGB[r]) && (cx - x).abs() <= 1.5 && (cy - y).abs() <= 1.5);
            assert!(hit, "panel {panel}: no circle of run {r} split {split} at epoch {epoch} value {v} ({x:.1}, {y:.1})");
        }
        for (r, rgb) in RUN_RGB.iter().enumerate().take(3) {
            let n = circles.iter().filter(|(c, fill)| in_panel(c.0) && *fill == hex(*rgb)).count();
            assert_eq!(n, expected.iter().filter(|e| e.0 == r).count(), "panel {panel}: circles of run {r}");
        }

        // The solid lines (train thin, validation thick) go through their run's finite points
        // in epoch order: b's validation accuracy joins epoch 1 to epoch 3, leaving epoch 2 out.
        let epoch_xs: Vec<f64> = (1..=3).map(|e| map.at(e as f64, 0.0).0).collect();
        let data_lines: Vec<&SvgPolyline> = polylines
            .iter()
            .filter(|(_, _, pts)| in_panel(pts[0].0) && pts.iter().all(|p| epoch_xs.iter().any(|x| (x - p.0).abs() <= 1.0)))
            .collect();
        for (r, (_, metrics)) in runs.iter().enumerate().take(3) {
            for (split, width) in [(0, "1"), (1, "3")] {
                let want: Vec<(f64, f64)> = metrics
                    .iter()
                    .filter(|m| shown(m, loss, split).is_finite())
                    .map(|m| map.at(m.epoch as f64, shown(m, loss, split)))
                    .collect();
                let got: Vec<&Vec<(f64, f64)>> =
                    data_lines.iter().filter(|(s, w, _)| *s == hex(RUN_RGB[r]) && w == width).map(|(_, _, p)| p).collect();
                if want.is_empty() {
                    assert!(got.is_empty(), "panel {panel}: run {r} split {split} has no values but a line {got:?}");
                    continue;
                }
                assert_eq!(got.len(), 1, "panel {panel}: run {r} split {split}: {got:?}");
                assert_eq!(got[0].len(), want.len(), "panel {panel}: run {r} split {split}: {:?} vs {want:?}", got[0]);
                for (g, w) in got[0].iter().zip(&want) {
                    assert!((g.0 - w.0).abs() <= 1.5 && (g.1 - w.1).abs() <= 1.5, "panel {panel}: run {r} split {split}: {g:?} vs {w:?}");
                }
            }
        }
        if !loss {
            let b_val: Vec<_> = data_lines.iter().filter(|(s, w, _)| *s == hex(RUN_RGB[1]) && w == "3").collect();
            assert_eq!(b_val[0].2.len(), 2, "b's validation accuracy: epochs 1 and 3 only");
        }

        // The PNG has the same geometry: each run's colour at its points and along its
        // lines' first segment (epoch 3 may sit under the legend).
        for (r, (_, metrics)) in runs.iter().enumerate().take(3) {
            let rgb = RUN_RGB[r];
            assert!(img.pixels().filter(|p| p.0 == rgb).count() > 100, "run {r}'s colour is missing from the PNG");
            for split in 0..3 {
                for m in &metrics[..2] {
                    let v = shown(m, loss, split);
                    if v.is_finite() {
                        assert!(colour_near(&img, map.at(m.epoch as f64, v), 1, rgb, 1.0), "PNG: run {r} split {split} epoch {}", m.epoch);
                    }
                }
                let (v1, v2) = (shown(&metrics[0], loss, split), shown(&metrics[1], loss, split));
                if split < 2 && v1.is_finite() && v2.is_finite() {
                    let mid = map.at(1.5, (v1 + v2) / 2.0);
                    assert!(colour_near(&img, mid, 2, rgb, 0.6), "PNG: run {r} split {split}: no line between epochs 1 and 2 at {mid:?}");
                }
            }
        }
        if !loss {
            // Where b's validation accuracy at epoch 2 would be, the PNG has nothing of b; its
            // line passes half-way between epochs 1 and 3 instead.
            let (control_value, bridge) = (74.0, (55.0 + 57.0) / 2.0);
            assert!(!colour_near(&img, map.at(2.0, control_value), 4, RUN_RGB[1], 0.2), "a point drawn for a NaN value");
            assert!(colour_near(&img, map.at(2.0, bridge), 2, RUN_RGB[1], 0.6), "b's validation line does not bridge epoch 2");

            // The same chart with a finite value there: a point of b's colour, and the line no
            // longer passes half-way (so the two checks above can fail).
            let control = dir.path().join("control.png");
            write_curves_for(&four_runs(0.74), &control, None).unwrap();
            let control = decode(&control);
            assert!(colour_near(&control, map.at(2.0, control_value), 1, RUN_RGB[1], 1.0));
            assert!(!colour_near(&control, map.at(2.0, bridge), 4, RUN_RGB[1], 0.2));
        }
    }
}

#[test]
fn curves_of_one_run_colour_the_splits() {
    let dir = tempfile::tempdir().unwrap();
    let (png, svg_path) = (dir.path().join("one.png"), dir.path().join("one.svg"));
    let runs = four_runs(0.56);
    write_curves_for(&runs[1..2], &png, Some(&svg_path)).unwrap();
    // Training blue, validation orange, test green (src/viz/curves.rs SPLIT_COLOURS).
    let split_rgb = [[31, 119, 180], [255, 127, 14], [44, 160, 44]];
    let (circles, polylines) = svg_shapes(&std::fs::read_to_string(&svg_path).unwrap());
    for (split, rgb) in split_rgb.iter().enumerate() {
        // 3 epochs, 2 panels.
        assert_eq!(circles.iter().filter(|(_, f)| *f == hex(*rgb)).count(), 6, "split {split}");
        assert!(polylines.iter().any(|(s, _, _)| *s == hex(*rgb)), "split {split}");
    }
    assert_eq!(circles.len(), 18);
    assert!(!polylines.iter().any(|(s, _, _)| *s == hex(RUN_RGB[1])), "one run is drawn in the split colours, not the run palette");
    let img = decode(&png);
    for rgb in split_rgb {
        assert!(img.pixels().filter(|p| p.0 == rgb).count() > 100, "{rgb:?} missing from the PNG");
    }
    assert_eq!(img.pixels().filter(|p| p.0 == RUN_RGB[1]).count(), 0);
}

/// The grey frame around every tile (src/viz/grid.rs).
const FRAME: [u8; 3] = [150, 150, 150];

/// Top-left corners of the framed tiles `w` x `h` pixels wide and tall, frame included, in
/// reading order (top to bottom, then left to right).
fn find_frames(img: &image::RgbImage, w: u32, h: u32) -> Vec<(u32, u32)> {
    let frame = |x: u32, y: u32| x < img.width() && y < img.height() && img.get_pixel(x, y).0 == FRAME;
    let mut found = Vec::new();
    for y0 in 0..img.height().saturating_sub(h - 1) {
        for x0 in 0..img.width().saturating_sub(w - 1) {
            if !frame(x0, y0) || (x0 > 0 && frame(x0 - 1, y0)) || (y0 > 0 && frame(x0, y0 - 1)) {
                continue;
            }
            let closed = (0..w).all(|dx| frame(x0 + dx, y0) && frame(x0 + dx, y0 + h - 1))
                && (0..h).all(|dy| frame(x0, y0 + dy) && frame(x0 + w - 1, y0 + dy));
            if closed {
                found.push((x0, y0));
            }
        }
    }
    found
}

/// The `count` tiles of `cols` x `rows` source pixels: the integer upscaling factor that
/// finds exactly that many frames, and the frames' corners.
fn find_tiles(img: &image::RgbImage, cols: u32, rows: u32, count: usize) -> (u32, Vec<(u32, u32)>) {
    for scale in 1..=64 {
        let found = find_frames(img, cols * scale + 2, rows * scale + 2);
        if found.len() == count {
            return (scale, found);
        }
    }
    panic!("no scale shows {count} framed tiles of {cols}x{rows} pixels");
}

/// The source pixels of the tile framed at `corner`, row-major: each must be one flat
/// `scale` x `scale` block (nearest-neighbour upscaling).
fn tile_pixels(img: &image::RgbImage, corner: (u32, u32), cols: u32, rows: u32, scale: u32) -> Vec<[u8; 3]> {
    let mut out = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            let (x, y) = (corner.0 + 1 + c * scale, corner.1 + 1 + r * scale);
            let first = img.get_pixel(x, y).0;
            for dy in 0..scale {
                for dx in 0..scale {
                    assert_eq!(img.get_pixel(x + dx, y + dy).0, first, "tile at {corner:?}: source pixel ({c}, {r}) is not one flat block");
                }
            }
            out.push(first);
        }
    }
    out
}

/// A conv weight [kh, kw, C_in, C_out] (HWIO) with w[ki, kj, c, o] = f(ki, kj, c, o).
fn hwio(kh: usize, kw: usize, c_in: usize, c_out: usize, f: impl Fn(usize, usize, usize, usize) -> f32) -> Tensor {
    let mut data = Vec::with_capacity(kh * kw * c_in * c_out);
    for ki in 0..kh {
        for kj in 0..kw {
            for c in 0..c_in {
                for o in 0..c_out {
                    data.push(f(ki, kj, c, o));
                }
            }
        }
    }
    Tensor::from_vec(&[kh, kw, c_in, c_out], data).unwrap()
}

/// Levels 0..=15 of four 2x3 filters over two input channels, [o][c][ki][kj]: each filter has
/// its 0 and its 15 in channel 0, so channel 1 reaches neither black nor white unless it is
/// scaled on its own; filter 3 is constant.
const LEVELS: [[[[usize; 3]; 2]; 2]; 4] = [
    [[[0, 3, 15], [7, 1, 9]], [[2, 11, 5], [8, 4, 13]]],
    [[[15, 6, 2], [0, 12, 10]], [[3, 9, 14], [1, 5, 7]]],
    [[[4, 0, 8], [15, 2, 6]], [[10, 12, 1], [3, 13, 5]]],
    [[[9, 9, 9], [9, 9, 9]], [[9, 9, 9], [9, 9, 9]]],
];

/// Filter o's weight for a level: different offsets, scales and signs per filter.
fn level_weight(o: usize, level: usize) -> f32 {
    let l = level as f32;
    [l * 0.1, -2.0 + 0.25 * l, 100.0 - 3.0 * l, 0.5][o]
}

#[test]
fn filters_png_tiles_are_the_weights_of_each_filter_on_its_own_scale_one_row_per_filter() {
    let dir = tempfile::tempdir().unwrap();
    let w = hwio(2, 3, 2, 4, |ki, kj, c, o| level_weight(o, LEVELS[o][c][ki][kj]));
    let out = dir.path().join("filters.png");
    write_filters_png(&w, "hand-made filters", &out).unwrap();
    let img = decode(&out);
    // One grey tile per (filter, input channel): 3 pixels wide, 2 tall.
    let (scale, corners) = find_tiles(&img, 3, 2, 8);
    assert!(scale >= 8, "each weight should be a visible square, got {scale} pixels");
    for o in 0..4 {
        // Filter o's two tiles side by side on one row, the rows in filter order.
        let (left, right) = (corners[2 * o], corners[2 * o + 1]);
        assert_eq!(left.1, right.1, "filter {o}'s channels are not on one row");
        assert!(left.0 < right.0);
        if o > 0 {
            assert!(left.1 > corners[2 * o - 1].1, "filter {o} is not below filter {}", o - 1);
        }
        for c in 0..2 {
            let got = tile_pixels(&img, corners[2 * o + c], 3, 2, scale);
            // Smallest weight of the filter black, largest white, linear between: level * 17.
            // A constant filter has no range and is mid-grey.
            let want: Vec<[u8; 3]> = (0..6)
                .map(|i| {
                    let level = LEVELS[o][c][i / 3][i % 3];
                    let v = if o == 3 {
                        128
                    } else if o == 2 {
                        255 - 17 * level as u8
                    } else {
                        17 * level as u8
                    };
                    [v; 3]
                })
                .collect();
            assert_eq!(got, want, "filter {o} channel {c}");
        }
    }
}

#[test]
fn filters_png_of_three_input_channels_shows_each_filter_as_one_rgb_tile() {
    let dir = tempfile::tempdir().unwrap();
    // Channel c of filter o at (ki, kj): level (5 * o + 3 * c + 7 * ki + 2 * kj) % 16, with
    // levels 0 and 15 forced into every filter; weights -1 + level / 5.
    let level = |ki: usize, kj: usize, c: usize, o: usize| match (ki, kj, c) {
        (0, 0, 0) => 0,
        (1, 2, 2) => 15,
        _ => (5 * o + 3 * c + 7 * ki + 2 * kj) % 16,
    };
    let w = hwio(2, 3, 3, 2, |ki, kj, c, o| -1.0 + level(ki, kj, c, o) as f32 / 5.0);
    let out = dir.path().join("rgb.png");
    write_filters_png(&w, "rgb filters", &out).unwrap();
    let img = decode(&out);
    let (scale, corners) = find_tiles(&img, 3, 2, 2);
    assert_eq!(corners[0].1, corners[1].1, "RGB filters are laid out side by side");
    for (o, &corner) in corners.iter().enumerate() {
        let got = tile_pixels(&img, corner, 3, 2, scale);
        let want: Vec<[u8; 3]> = (0..6).map(|i| [0, 1, 2].map(|c| 17 * level(i / 3, i % 3, c, o) as u8)).collect();
        assert_eq!(got, want, "filter {o}: input channels 0, 1, 2 as red, green, blue");
    }
}

/// conv 3 -> relu -> max pool -> conv 2 -> flatten -> dense 2, on 6x10 grey images.
fn act_net() -> String {
    common::model_config(
        "act",
        "[6, 10, 1]",
        r#"
[[layers]]
type = "conv2d"
filters = 3
kernel = 3
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "conv2d"
filters = 2
kernel = 3
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 2
"#,
    )
}

/// The grey level of each value of channel `ch` of a [1, h, w, c] feature map under the
/// documented mapping: linear from min(0, lowest) (black) to max(0, highest) (white), the range
/// taken over the channel or over the whole layer; an all-zero range is black. Exact, before
/// rounding.
fn grey_levels(t: &Tensor, ch: usize, per_layer: bool) -> Vec<f64> {
    let c = t.shape()[3];
    let range = |vals: &mut dyn Iterator<Item = f64>| vals.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let channel = |k: usize| t.data().iter().skip(k).step_by(c).map(|&v| f64::from(v));
    let (lo, hi) = if per_layer { range(&mut t.data().iter().map(|&v| f64::from(v))) } else { range(&mut channel(ch)) };
    channel(ch).map(|v| if hi > lo { (v - lo) / (hi - lo) * 255.0 } else { 0.0 }).collect()
}

#[test]
fn activations_png_tiles_are_the_layer_outputs_scaled_per_channel_or_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml(&act_net(), "act").unwrap();
    let mut net = Network::build(&cfg.model, 5).unwrap();
    // A diagonal stripe over a ramp, so that every layer has structure.
    let pixels: Vec<u8> = (0..60).map(|i| if (i / 10 + i % 10) % 4 == 0 { 250 } else { (i * 4) as u8 }).collect();
    let mut x = Tensor::zeros(&[1, 6, 10, 1]);
    Normalization { mean: vec![0.4], std: vec![0.3] }.apply(&pixels, x.data_mut());
    let trace = net.forward_trace(&x).unwrap();
    let maps: Vec<&Tensor> = trace.iter().take(3).map(|(_, t)| t).collect();
    assert_eq!(maps.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>(), [vec![1, 6, 10, 3], vec![1, 3, 5, 3], vec![1, 3, 5, 2]]);
    // The data must tell the two scales apart: channels with different ranges in every layer,
    // and negative values in the conv without relu.
    for t in &maps {
        let c = t.shape()[3];
        let maxima: Vec<f32> = (0..c).map(|k| t.data().iter().skip(k).step_by(c).fold(0.0f32, |m, &v| m.max(v))).collect();
        assert!(maxima.windows(2).any(|m| (m[0] - m[1]).abs() > 0.05 * m[0].max(m[1])), "channels alike: {maxima:?}");
    }
    assert!(maps[2].data().iter().any(|&v| v < 0.0));

    let input = Tile::new(10, 6, 1, pixels.clone(), "").unwrap();
    let mut tiles_by_scale = Vec::new();
    for scale in [ActivationScale::Channel, ActivationScale::Layer] {
        let out = dir.path().join(format!("{scale:?}.png"));
        write_activations_png(&input, &trace, "act", &[], scale, &out).unwrap();
        let img = decode(&out);
        // The input, upscaled, as it was given.
        let (s, corner) = find_tiles(&img, 10, 6, 1);
        assert_eq!(tile_pixels(&img, corner[0], 10, 6, s), pixels.iter().map(|&p| [p; 3]).collect::<Vec<_>>(), "input tile");
        // The conv's 3 channels of 6x10 (padding "same"), then the pool's 3 and the second
        // conv's 2, of 3x5.
        let (s1, conv) = find_tiles(&img, 10, 6, 3);
        let (s2, small) = find_tiles(&img, 5, 3, 5);
        let sections = [(maps[0], &conv[..], s1), (maps[1], &small[..3], s2), (maps[2], &small[3..], s2)];
        let mut tiles = Vec::new();
        for (layer, (t, corners, s)) in sections.into_iter().enumerate() {
            let (h, w) = (t.shape()[1] as u32, t.shape()[2] as u32);
            assert!(corners.iter().all(|c| c.1 == corners[0].1), "layer {layer}: channels on one row");
            if layer > 0 {
                assert!(corners[0].1 > sections_top(&tiles), "layer {layer} is not below the one before");
            }
            for (ch, &corner) in corners.iter().enumerate() {
                let got: Vec<u8> = tile_pixels(&img, corner, w, h, s).iter().map(|p| p[0]).collect();
                let want = grey_levels(t, ch, scale == ActivationScale::Layer);
                for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
                    assert!((f64::from(g) - v).abs() <= 0.5 + 1e-3, "{scale:?}: layer {layer} channel {ch} pixel {i}: {g}, want {v:.3}");
                }
                tiles.push((corner.1, got));
            }
        }
        tiles_by_scale.push(tiles);
    }
    // The two scales give different pictures of the same outputs, in every layer.
    let (channel, layer) = (&tiles_by_scale[0], &tiles_by_scale[1]);
    for (name, range) in [("conv", 0..3), ("pool", 3..6), ("second conv", 6..8)] {
        assert!(range.clone().any(|i| channel[i].1 != layer[i].1), "{name}: per-channel and per-layer scales agree");
    }
    // Per channel every channel with a positive value reaches white; per layer only the
    // strongest does.
    assert!(channel[..6].iter().all(|(_, px)| px.iter().all(|&p| p == 0) || px.contains(&255)));
    assert!(layer[..3].iter().filter(|(_, px)| px.contains(&255)).count() < 3);
}

/// The top of the last tile seen so far.
fn sections_top(tiles: &[(u32, Vec<u8>)]) -> u32 {
    tiles.last().map_or(0, |t| t.0)
}
