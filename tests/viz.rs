//! Pictures: every writer produces a PNG of the expected size that decodes back; text renders
//! with the embedded font; the `filter` command finds a horizontal edge and nothing else; the
//! inline kernel parser; `visualize` and `plot` through the binary. All data is generated here.

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
