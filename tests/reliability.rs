//! Bad input through the convnet binary: every malformed data file, config, image and
//! checkpoint gives one line on stderr naming the file (and what is wrong) and exit code 2,
//! never a panic; a diverging run exits with 1 and keeps the last good checkpoint; an
//! unwritable run folder is reported before training. See docs/reliability.md.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use convnet::data::{write_cifar10_records, Normalization};
use convnet::model::Network;
use convnet::train::{save_checkpoint, Checkpoint, CheckpointMeta};
use convnet::Config;
use tempfile::TempDir;

fn convnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).output().expect("run convnet");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Runs convnet, expects exit code `code` and exactly one line on stderr, "error: ...", that
/// contains each of `parts`; returns that line.
#[track_caller]
fn expect_error(args: &[&str], code: i32, parts: &[&str]) -> String {
    let (got, stdout, stderr) = convnet(args);
    assert_eq!(got, code, "convnet {args:?}: exit code {got}, stderr:\n{stderr}\nstdout:\n{stdout}");
    assert!(!stderr.contains("panicked"), "convnet {args:?} panicked:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "convnet {args:?}: stderr should be one line, got:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for p in parts {
        assert!(line.contains(p), "convnet {args:?}: {line:?} should contain {p:?}");
    }
    line.to_string()
}

/// A temp folder holding the quadrant IDX data set in data/ and its tiny config, tiny.toml.
struct Mnist {
    dir: TempDir,
}

impl Mnist {
    fn new() -> Mnist {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        write_quadrant_idx(&dir.path().join("data"), 40, 8, 11);
        std::fs::write(dir.path().join("tiny.toml"), tiny_config(&dir.path().join("data"), 1, "kind = \"adam\"\nlr = 0.01")).unwrap();
        Mnist { dir }
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.data().join(name)
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("tiny.toml")
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    /// `convnet train` on this data (or `data`), expecting an error naming `file`.
    #[track_caller]
    fn train_error(&self, data: &Path, parts: &[&str]) -> String {
        let (config, out) = (self.config(), self.out());
        expect_error(&["train", "--config", s(&config), "--data", s(data), "--out", s(&out), "--quiet", "--threads", "1"], 2, parts)
    }
}

// ---------------------------------------------------------------- data files

#[test]
fn truncated_idx_file_names_the_file_and_the_offset() {
    let m = Mnist::new();
    let path = m.file("train-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..100]).unwrap();
    m.train_error(&m.data(), &[s(&path), "truncated", "need 2560 bytes of data after the 16-byte header", "ends at byte 100"]);
    // Cut inside the header.
    std::fs::write(&path, &bytes[..10]).unwrap();
    m.train_error(&m.data(), &[s(&path), "truncated header", "16-byte header"]);
}

#[test]
fn wrong_idx_magic_number() {
    let m = Mnist::new();
    let path = m.file("train-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..4].copy_from_slice(&[0x12, 0x34, 0x08, 0x01]);
    std::fs::write(&path, &bytes).unwrap();
    m.train_error(&m.data(), &[s(&path), "not an IDX file", "0x12340801"]);
    // An image file where the labels belong: right magic family, wrong rank.
    std::fs::copy(m.file("train-images-idx3-ubyte"), &path).unwrap();
    m.train_error(&m.data(), &[s(&path), "declares 3 dimension(s); a label file needs 1"]);
}

#[test]
fn label_out_of_range_names_the_record_and_its_byte_offset() {
    let m = Mnist::new();
    let path = m.file("train-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8 + 5] = 12;
    std::fs::write(&path, &bytes).unwrap();
    m.train_error(&m.data(), &[s(&path), "record 5 (byte offset 13): label 12 is out of range for 10 classes"]);
}

#[test]
fn empty_folder_missing_file_and_folder_instead_of_file() {
    let m = Mnist::new();
    let empty = m.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    m.train_error(&empty, &[s(&empty), "the data directory is empty", "train-images-idx3-ubyte"]);
    let nowhere = m.dir.path().join("nowhere");
    m.train_error(&nowhere, &[s(&nowhere), "data directory not found"]);

    // The test labels are the gzip-compressed ones.
    let labels = m.file("t10k-labels-idx1-ubyte.gz");
    std::fs::remove_file(&labels).unwrap();
    m.train_error(&m.data(), &["t10k-labels-idx1-ubyte", "file not found", "t10k-labels-idx1-ubyte.gz"]);
    std::fs::create_dir(&labels).unwrap();
    m.train_error(&m.data(), &[s(&labels), "is a directory, expected an IDX file"]);
    // The data folder given as a file.
    m.train_error(&m.config(), &[s(&m.config()), "not a directory"]);
}

#[test]
fn a_gz_file_that_is_not_gzip_and_a_damaged_gzip_stream() {
    let m = Mnist::new();
    let path = m.file("t10k-images-idx3-ubyte.gz");
    std::fs::write(&path, "this is plain text, not gzip").unwrap();
    m.train_error(&m.data(), &[s(&path), "not an IDX file", "does not start with the gzip magic bytes 1f 8b"]);
    // Starts like gzip, then garbage.
    let mut fake = vec![0x1f, 0x8b, 0x08, 0x00];
    fake.extend(b"garbage that no inflater accepts");
    std::fs::write(&path, &fake).unwrap();
    m.train_error(&m.data(), &[s(&path), "gzip-compressed", "damaged or truncated"]);
    // A real gzip stream cut short.
    let mut gz = Vec::new();
    {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
        enc.write_all(&[0, 0, 8, 3, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0, 8]).unwrap();
        enc.write_all(&[7u8; 512]).unwrap();
        enc.finish().unwrap();
    }
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    m.train_error(&m.data(), &[s(&path), "gzip-compressed", "damaged or truncated"]);
}

/// A CIFAR-10 folder with one image per batch and a config that reads it.
fn cifar_setup() -> (TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("batches.meta.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n").unwrap();
    for k in 1..=5 {
        write_cifar10_records(data.join(format!("data_batch_{k}.bin")), &vec![k as u8; 2 * 3072], &[k as u8, 0]).unwrap();
    }
    write_cifar10_records(data.join("test_batch.bin"), &vec![9; 3072], &[3]).unwrap();
    let cfg = dir.path().join("cifar.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"c\"\ninput = [32, 32, 3]\n[data]\ndataset = \"cifar10\"\npath = \"{}\"\n[train]\nbatch_size = 4\nepochs = 1\n\
             [optimizer]\nkind = \"sgd\"\nlr = 0.01\n[[layers]]\ntype = \"max_pool\"\nsize = 8\n[[layers]]\ntype = \"flatten\"\n\
             [[layers]]\ntype = \"dense\"\nunits = 10\n",
            data.display()
        ),
    )
    .unwrap();
    (dir, data, cfg)
}

#[test]
fn cifar_wrong_record_size_label_out_of_range_and_missing_files() {
    let (dir, data, cfg) = cifar_setup();
    let out = dir.path().join("run");
    let train = |parts: &[&str]| {
        expect_error(&["train", "--config", s(&cfg), "--out", s(&out), "--quiet", "--threads", "1", "--overwrite"], 2, parts);
    };
    // The folder is good: training works.
    let (code, _, stderr) = convnet(&["train", "--config", s(&cfg), "--out", s(&out), "--quiet", "--threads", "1"]);
    assert_eq!(code, 0, "{stderr}");

    let batch = data.join("data_batch_3.bin");
    let good = std::fs::read(&batch).unwrap();
    std::fs::write(&batch, &good[..good.len() - 7]).unwrap();
    train(&[s(&batch), "not a multiple of the 3073-byte record", "1 whole records and 3066 bytes left over"]);

    let mut bad = good.clone();
    bad[3073] = 10; // the label of record 1
    std::fs::write(&batch, &bad).unwrap();
    train(&[s(&batch), "record 1 (byte offset 3073): label 10 is out of range for the 10 classes"]);
    std::fs::write(&batch, &good).unwrap();

    let test = data.join("test_batch.bin");
    std::fs::remove_file(&test).unwrap();
    train(&[s(&test), "file not found", "test_batch.bin"]);
    std::fs::create_dir(&test).unwrap();
    train(&[s(&test), "is a directory"]);
    std::fs::remove_dir(&test).unwrap();
    std::fs::write(&test, b"").unwrap();
    train(&[s(&test), "empty file"]);
    write_cifar10_records(&test, &vec![9; 3072], &[3]).unwrap();

    let meta = data.join("batches.meta.txt");
    std::fs::write(&meta, [0xff, 0xfe, b'a', b'\n']).unwrap();
    train(&[s(&meta), "not UTF-8 text (invalid byte at offset 0)"]);
    std::fs::remove_file(&meta).unwrap();
    train(&[s(&meta), "file not found", "class names"]);

    // Every file gone: an empty folder.
    for entry in std::fs::read_dir(&data).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    train(&[s(&data), "the CIFAR-10 directory is empty"]);
}

#[test]
fn image_folder_empty_or_missing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("images");
    std::fs::create_dir_all(data.join("train")).unwrap();
    let cfg = dir.path().join("img.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"i\"\ninput = [4, 4, 3]\n[data]\ndataset = \"image-folder\"\npath = \"{}\"\n[train]\nbatch_size = 4\nepochs = 1\n\
             [optimizer]\nkind = \"sgd\"\nlr = 0.01\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n",
            data.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let args = ["train", "--config", s(&cfg), "--out", s(&out), "--quiet"];
    let train_dir = data.join("train");
    expect_error(&args, 2, &[s(&train_dir), "no class folders"]);
    std::fs::create_dir_all(data.join("train/cat")).unwrap();
    expect_error(&args, 2, &["cat", "has no .png, .jpg or .jpeg images"]);
    image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3])).save(data.join("train/cat/a.png")).unwrap();
    let test_dir = data.join("test");
    expect_error(&args, 2, &[s(&test_dir), "folder not found"]);
}

// ---------------------------------------------------------------- configs

/// Writes `text` as a config and runs `convnet summary` on it, expecting an error.
#[track_caller]
fn summary_error(text: &str, parts: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.toml");
    std::fs::write(&path, text).unwrap();
    let mut all = vec![s(&path)];
    all.extend_from_slice(parts);
    expect_error(&["summary", "--config", s(&path)], 2, &all)
}

/// The LRN layer of `tiny_config`, to replace it whole.
const LRN: &str = "type = \"lrn\"\ndepth_radius = 1\nalpha = 0.01\nbeta = 0.75";

fn base_config() -> String {
    tiny_config(Path::new("/nonexistent"), 1, "kind = \"adam\"\nlr = 0.01")
}

/// The 1-based line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
}

#[test]
fn unknown_layer_type_names_the_line_and_the_nearest_type() {
    let text = base_config().replace("type = \"max_pool\"", "type = \"maxpool\"");
    let line = format!("line {}:", line_of(&text, "maxpool"));
    summary_error(&text, &[&line, "unknown variant `maxpool`", "did you mean `max_pool`?"]);
}

#[test]
fn unknown_key_names_its_own_line_and_the_nearest_key() {
    let text = base_config().replace("filters = 4", "filtres = 4");
    let line = format!("line {}:", line_of(&text, "filtres"));
    summary_error(&text, &[&line, "unknown field `filtres`", "did you mean `filters`?"]);
    let text = base_config().replace("epochs = 1", "epochs = 1\nepoch = 2");
    let line = format!("line {}:", line_of(&text, "epoch = 2"));
    summary_error(&text, &[&line, "unknown field `epoch`", "did you mean `epochs`?"]);
    // TOML syntax errors have a line too.
    let text = base_config().replace("name = \"tiny\"", "name = \"tiny");
    summary_error(&text, &["line 2:"]);
}

#[test]
fn a_shape_that_does_not_fit_names_the_layer_and_both_shapes() {
    // No flatten before the dense layer.
    let text = base_config().replace("type = \"flatten\"", "type = \"relu\"");
    summary_error(&text, &["layer 5 (dense)", "expected a flat input [features]", "got [4, 4, 4]"]);
    // A kernel larger than its input: 8x8 pooled to 4x4, then a 5x5 valid convolution.
    let text = base_config().replace(LRN, "type = \"conv2d\"\nfilters = 2\nkernel = 5\npadding = \"valid\"");
    summary_error(&text, &["layer 3 (conv2d)", "kernel height 5 is larger than the padded input height 4"]);
}

#[test]
fn bad_learning_rate_batch_size_and_optimiser() {
    let lr = |v: &str| base_config().replace("lr = 0.01", &format!("lr = {v}"));
    summary_error(&lr("0.0"), &["optimizer: lr must be positive, got 0"]);
    summary_error(&lr("-0.1"), &["optimizer: lr must be positive, got -0.1"]);
    summary_error(&lr("nan"), &["optimizer: lr must be positive, got NaN"]);
    summary_error(&lr("inf"), &["optimizer: lr must be finite, got inf"]);
    summary_error(&base_config().replace("batch_size = 8", "batch_size = 0"), &["train.batch_size must be at least 1, got 0"]);
    let text = base_config().replace("kind = \"adam\"", "kind = \"adagrad\"");
    let line = format!("line {}:", line_of(&text, "adagrad"));
    summary_error(&text, &[&line, "unknown variant `adagrad`, expected one of `sgd`, `adam`, `adamw`"]);

    // The same checks apply to command-line overrides.
    let m = Mnist::new();
    let cfg = m.config();
    for lr in ["--lr=0", "--lr=-1"] {
        expect_error(&["train", "--config", s(&cfg), "--out", s(&m.out()), lr], 2, &[s(&cfg), "optimizer: lr must be positive"]);
    }
    expect_error(
        &["train", "--config", s(&cfg), "--out", s(&m.out()), "--batch-size", "0"],
        2,
        &[s(&cfg), "train.batch_size must be at least 1"],
    );
}

#[test]
fn absurd_sizes_and_bad_names_are_refused_before_anything_is_allocated() {
    summary_error(
        &base_config().replace("units = 10", "units = 1000000000000"),
        &["layer 5 (dense): units 1000000000000 is over the limit"],
    );
    let big = base_config().replace("filters = 4", "filters = 1000000");
    summary_error(&big.replace("units = 10", "units = 20"), &["layer 5 (dense) brings the model to", "parameters, over the limit"]);
    summary_error(
        &big.replace("input = [8, 8, 1]", "input = [512, 512, 1]"),
        &["layer 0 (conv2d) outputs [512, 512, 1000000]", "values per example, over the limit"],
    );
    summary_error(&base_config().replace("input = [8, 8, 1]", "input = [8, 8000000, 1]"), &["input [8, 8000000, 1] is too large"]);
    summary_error(&base_config().replace("kernel = 3", "kernel = 18446744073709551615"), &["line"]);
    summary_error(&base_config().replace("name = \"tiny\"", "name = \"../../etc\""), &["must be a plain folder name"]);
    summary_error(&base_config().replace("l2 = 0.001", "l2 = -1.0"), &["layer 0 (conv2d): l2 must be a non-negative number"]);
}

#[test]
fn batch_norm_dropout_and_lrn_settings_are_checked_naming_the_layer() {
    let with = |layer: &str| base_config().replace(LRN, layer);
    let bn = |momentum: &str, eps: &str| with(&format!("type = \"batch_norm\"\nmomentum = {momentum}\neps = {eps}"));
    let bn_error = "layer 3 (batch_norm): momentum must be in [0, 1] and eps a positive number";
    for (momentum, eps) in [("1.5", "1e-5"), ("-0.1", "1e-5"), ("0.1", "0.0"), ("0.1", "-1.0"), ("0.1", "inf"), ("nan", "1e-5")] {
        summary_error(&bn(momentum, eps), &[bn_error]);
    }
    for (momentum, eps) in [("0.0", "1e-5"), ("1.0", "1e-12")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bn.toml");
        std::fs::write(&path, bn(momentum, eps)).unwrap();
        let (code, _, stderr) = convnet(&["summary", "--config", s(&path)]);
        assert_eq!(code, 0, "momentum {momentum} and eps {eps} are valid: {stderr}");
    }
    for rate in ["1.0", "-0.5", "nan"] {
        summary_error(&with(&format!("type = \"dropout\"\nrate = {rate}")), &["layer 3 (dropout): rate must be in [0, 1)"]);
    }
    summary_error(&with("type = \"lrn\"\nbias = 0.0"), &["layer 3 (lrn): bias must be a positive finite number, got 0"]);
    summary_error(&with("type = \"lrn\"\nbeta = -1.0"), &["layer 3 (lrn): beta must be a non-negative finite number, got -1"]);
    summary_error(&with("type = \"lrn\"\nalpha = inf"), &["layer 3 (lrn): alpha must be a non-negative finite number, got inf"]);
}

#[test]
fn missing_config_or_a_folder_for_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    expect_error(&["summary", "--config", s(&missing)], 2, &[s(&missing), "No such file"]);
    expect_error(&["summary", "--config", s(dir.path())], 2, &[s(dir.path())]);
}

// ---------------------------------------------------------------- images

/// A checkpoint of an untrained 8x8 model with `channels` input channels and 10 classes.
fn image_model(dir: &Path, channels: usize) -> PathBuf {
    model_with_classes(dir, channels, 10)
}

/// A checkpoint of an untrained 8x8 model with `channels` input channels and `classes` classes.
fn model_with_classes(dir: &Path, channels: usize, classes: usize) -> PathBuf {
    let text = base_config()
        .replace("input = [8, 8, 1]", &format!("input = [8, 8, {channels}]"))
        .replace("units = 10", &format!("units = {classes}"));
    let cfg = Config::from_toml(&text, "tiny").unwrap();
    let net = Network::build(&cfg.model, 1).unwrap();
    let meta = CheckpointMeta {
        class_names: (0..classes).map(|i| format!("class{i}")).collect(),
        normalization: Normalization { mean: vec![0.5; channels], std: vec![0.25; channels] },
        epoch: 1,
        optimizer_step: 0,
        seed: 1,
        best_val_accuracy: 0.0,
    };
    let path = dir.join(format!("model{channels}-{classes}.safetensors"));
    save_checkpoint(&path, &net, &cfg.run, None, &meta).unwrap();
    path
}

/// A PNG chunk: length, type, data, CRC of type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// A valid PNG header claiming `w` x `h` RGB pixels, followed by almost no pixel data.
fn lying_png(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut raw = b"\x89PNG\r\n\x1a\n".to_vec();
    raw.extend(png_chunk(b"IHDR", &ihdr));
    raw.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]));
    raw.extend(png_chunk(b"IEND", &[]));
    raw
}

#[test]
fn corrupt_and_unsupported_images_are_refused_by_predict_filter_and_visualize() {
    let dir = tempfile::tempdir().unwrap();
    let model = image_model(dir.path(), 3);
    let out = dir.path().join("out.png");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("corrupt.png", [b"\x89PNG\r\n\x1a\n".as_slice(), &[7u8; 200]].concat(), "cannot decode PNG image"),
        ("corrupt.jpg", [[0xff, 0xd8, 0xff, 0xe0].as_slice(), &[0x42; 200]].concat(), "cannot decode JPEG image"),
        ("picture.bmp", [b"BM".as_slice(), &[0u8; 60]].concat(), "unsupported image format BMP: only PNG and JPEG"),
        ("anim.gif", [b"GIF89a".as_slice(), &[0u8; 60]].concat(), "unsupported image format GIF"),
        ("notes.png", b"just some text, named .png".to_vec(), "not a PNG or JPEG image: it starts with bytes 6a 75 73 74"),
        ("empty.png", Vec::new(), "empty file (0 bytes)"),
    ];
    for (name, bytes, why) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        expect_error(&["predict", "--model", s(&model), s(&path)], 2, &[s(&path), why]);
        expect_error(&["filter", "--kernel", "sobel-x", s(&path), s(&out)], 2, &[s(&path), why]);
        expect_error(&["visualize", "activations", "--model", s(&model), s(&path), s(&out)], 2, &[s(&path), why]);
    }
    expect_error(&["predict", "--model", s(&model), s(dir.path())], 2, &[s(dir.path()), "is a directory"]);
    let missing = dir.path().join("missing.png");
    expect_error(&["predict", "--model", s(&model), s(&missing)], 2, &[s(&missing), "No such file"]);
    assert!(!out.exists(), "nothing is written for a bad image");
}

#[test]
fn a_100_megapixel_image_is_refused_from_its_header_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let model = image_model(dir.path(), 3);
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, lying_png(10_000, 10_000)).unwrap();
    let why = "image is 10000x10000 (100.0 megapixels), over the 50 megapixel limit; refused before decoding";
    expect_error(&["predict", "--model", s(&model), s(&huge)], 2, &[s(&huge), why]);
    expect_error(&["filter", "--kernel", "sobel-x", s(&huge), s(&dir.path().join("o.png"))], 2, &[s(&huge), why]);
    // The file holds a header and almost no pixel data: had the decoder been started, it would
    // have failed on the missing data ("cannot decode", as below) instead of naming the limit.
    // Beyond what the decoder itself accepts.
    std::fs::write(&huge, lying_png(200_000, 3)).unwrap();
    expect_error(&["predict", "--model", s(&model), s(&huge)], 2, &[s(&huge), "cannot decode PNG image"]);
}

#[test]
fn grayscale_and_rgb_images_are_converted_with_a_note_and_a_1x1_image_is_enlarged() {
    let dir = tempfile::tempdir().unwrap();
    let (rgb_model, grey_model) = (image_model(dir.path(), 3), image_model(dir.path(), 1));
    let grey = dir.path().join("grey.png");
    image::GrayImage::from_fn(12, 12, |x, y| image::Luma([(x * 20 + y) as u8])).save(&grey).unwrap();
    let colour = dir.path().join("colour.png");
    image::RgbImage::from_fn(12, 12, |x, y| image::Rgb([(x * 20) as u8, (y * 20) as u8, 99])).save(&colour).unwrap();
    let dot = dir.path().join("dot.png");
    image::RgbImage::from_pixel(1, 1, image::Rgb([200, 10, 10])).save(&dot).unwrap();

    let predict = |model: &Path, image: &Path| {
        let (code, stdout, stderr) = convnet(&["predict", "--model", s(model), s(image)]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.lines().count(), 6, "a header and the top 5: {stdout}");
        stderr
    };
    let note = predict(&rgb_model, &grey);
    assert_eq!(note.trim_end(), format!("note: {} is grayscale, converted to RGB for the model", grey.display()));
    let note = predict(&grey_model, &colour);
    assert_eq!(note.trim_end(), format!("note: {} is RGB, converted to grayscale for the model", colour.display()));
    assert_eq!(predict(&rgb_model, &colour), "", "no note when nothing was converted");
    assert_eq!(predict(&grey_model, &grey), "");
    // 1x1 works: enlarged to the model's input, and said so.
    let note = predict(&rgb_model, &dot);
    assert!(note.contains("dot.png is 1x1 (width x height), smaller than the model's 8x8 input: enlarged to fit"), "{note}");

    let out = dir.path().join("act.png");
    let (code, _, stderr) = convnet(&["visualize", "activations", "--model", s(&rgb_model), s(&grey), s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("grey.png is grayscale, converted to RGB for the model"), "{stderr}");
    // filter works on a 1x1 image only with a 1x1 kernel; a 3x3 one says why not.
    let (code, _, stderr) = convnet(&["filter", "--kernel", "2", s(&dot), s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    expect_error(&["filter", "--kernel", "sobel-x", s(&dot), s(&out)], 2, &["a 3x3 kernel does not fit a 1x1 image"]);
}

// ---------------------------------------------------------------- checkpoints

#[test]
fn bad_checkpoints_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = image_model(dir.path(), 1);
    let good = std::fs::read(&model).unwrap();
    let image = dir.path().join("x.png");
    image::GrayImage::from_pixel(8, 8, image::Luma([100])).save(&image).unwrap();
    let bad = dir.path().join("bad.safetensors");
    let refused = |bytes: &[u8], why: &[&str]| {
        std::fs::write(&bad, bytes).unwrap();
        let mut parts = vec![s(&bad)];
        parts.extend_from_slice(why);
        expect_error(&["predict", "--model", s(&bad), s(&image)], 2, &parts);
        expect_error(&["eval", "--model", s(&bad)], 2, &parts);
        expect_error(&["visualize", "filters", "--model", s(&bad), s(&dir.path().join("f.png"))], 2, &parts);
    };
    // Truncated: in the data, in the header, in the length.
    refused(&good[..good.len() - 100], &["truncated or damaged"]);
    refused(&good[..good.len() / 3], &["truncated"]);
    refused(&good[..5], &["too short"]);
    refused(b"", &["too short"]);
    // Not safetensors at all.
    refused(b"name = \"a config, not a checkpoint\"\n", &["not a safetensors file"]);
    refused(&std::fs::read(&image).unwrap(), &["not a safetensors file"]);

    // Tensor shapes that do not match the config in the metadata (4 filters stored, 3 declared).
    let with_filters = |n: usize| {
        let (mut h, _) = header(&good);
        let model = h["__metadata__"]["model"].as_str().unwrap().replace("\"filters\":4", &format!("\"filters\":{n}"));
        h["__metadata__"]["model"] = serde_json::Value::String(model);
        with_header(&good, &h)
    };
    refused(&with_filters(3), &["tensor 0.conv2d.weight has shape [3, 3, 1, 4], the model expects [3, 3, 1, 3]"]);
    // A model larger than what the file holds is refused before it is built.
    refused(&with_filters(5), &["the model in the metadata has 860 parameters but the file holds 690 values"]);
    refused(&with_filters(1000000), &["the model in the metadata has", "parameters but the file holds 690 values"]);
    // Normalisation for the wrong number of channels.
    let (mut h, _) = header(&good);
    let meta = h["__metadata__"]["convnet"].as_str().unwrap().replace("\"mean\":[0.5]", "\"mean\":[0.5,0.5,0.5]");
    h["__metadata__"]["convnet"] = serde_json::Value::String(meta);
    refused(&with_header(&good, &h), &["normalization: 3 means and 1 stds for 1-channel images"]);
    // A config in the metadata that would not pass as a config file.
    let (mut h, _) = header(&good);
    let run = h["__metadata__"]["run"].as_str().unwrap().replace("\"batch_size\":8", "\"batch_size\":0");
    h["__metadata__"]["run"] = serde_json::Value::String(run);
    refused(&with_header(&good, &h), &["train.batch_size must be at least 1"]);
    // A safetensors file from somewhere else: no convnet metadata.
    let (mut h, _) = header(&good);
    h.as_object_mut().unwrap().remove("__metadata__");
    refused(&with_header(&good, &h), &["without convnet metadata"]);
    // A position inside an epoch that cannot be: no step done, more steps than the epoch has,
    // batch size 0.
    let with_progress = |steps_done: usize, steps: usize, batch: usize| {
        let (mut h, _) = header(&good);
        h["__metadata__"]["progress"] = serde_json::Value::String(format!(
            "{{\"steps_done\":{steps_done},\"steps_per_epoch\":{steps},\"batch_size\":{batch},\"train_examples\":384,\"loss_sum\":1.5,\"correct\":3,\"lr\":0.1,\"seconds\":1.0}}"
        ));
        with_header(&good, &h)
    };
    let steps_done =
        |bytes: Vec<u8>| Checkpoint::from_bytes(&bytes, &bad).map(|ck| ck.progress.unwrap().steps_done).map_err(|e| e.to_string());
    assert_eq!(steps_done(with_progress(3, 48, 8)), Ok(3));
    assert_eq!(steps_done(with_progress(48, 48, 8)), Ok(48), "every step done, the evaluation not");
    for (done, steps, batch) in [(0, 48, 8), (49, 48, 8), (3, 48, 0)] {
        let err = steps_done(with_progress(done, steps, batch)).unwrap_err();
        assert!(err.contains(&format!("bad metadata \"progress\": step {done} of {steps} with batch size {batch}")), "{err}");
    }
    refused(&with_progress(0, 48, 8), &["bad metadata \"progress\": step 0 of 48 with batch size 8"]);
    // A folder.
    expect_error(&["eval", "--model", s(dir.path())], 2, &[s(dir.path()), "is a directory"]);
}

#[test]
fn eval_refuses_a_model_whose_classes_do_not_fit_the_data() {
    // A 4-class model on a 10-class data set: a label of 4 or more would index past its
    // 4x4 confusion matrix; refused up front.
    let m = Mnist::new();
    let model = model_with_classes(m.dir.path(), 1, 4);
    let (code, _, stderr) = convnet(&["eval", "--model", s(&model_with_classes(m.dir.path(), 1, 10)), "--data", s(&m.data())]);
    assert_eq!(code, 0, "{stderr}");
    expect_error(
        &["eval", "--model", s(&model), "--data", s(&m.data())],
        2,
        &[s(&model), "the model outputs 4 classes but the data set has 10"],
    );
}

#[test]
fn resuming_with_another_model_or_without_a_checkpoint_is_refused() {
    let m = Mnist::new();
    let (cfg, out) = (m.config(), m.out());
    expect_error(
        &["train", "--config", s(&cfg), "--out", s(&out), "--resume", "--quiet"],
        2,
        &[
            &format!("{}", out.join("last.safetensors").display()),
            "cannot resume: the file does not exist",
            "--overwrite instead of --resume",
        ],
    );
    let (code, _, stderr) = convnet(&["train", "--config", s(&cfg), "--out", s(&out), "--quiet", "--threads", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let last = out.join("last.safetensors");
    let before = std::fs::read(&last).unwrap();

    let other = m.dir.path().join("other.toml");
    std::fs::write(&other, std::fs::read_to_string(&cfg).unwrap().replace("filters = 4", "filters = 6")).unwrap();
    expect_error(
        &["train", "--config", s(&other), "--out", s(&out), "--resume", "--epochs", "2", "--quiet"],
        2,
        &[s(&last), "belongs to another model", "differs at layer 0"],
    );
    let other_opt = m.dir.path().join("sgd.toml");
    std::fs::write(&other_opt, std::fs::read_to_string(&cfg).unwrap().replace("kind = \"adam\"", "kind = \"sgd\"")).unwrap();
    expect_error(
        &["train", "--config", s(&other_opt), "--out", s(&out), "--resume", "--epochs", "2", "--quiet"],
        2,
        &[s(&last), "optimizer state", "for a sgd optimiser"],
    );
    assert_eq!(before, std::fs::read(&last).unwrap(), "a refused resume leaves the checkpoint alone");
}

// ---------------------------------------------------------------- divergence, run folder

#[test]
fn a_diverging_run_exits_1_naming_the_step_and_layer_and_keeps_the_last_checkpoint() {
    let m = Mnist::new();
    let cfg = m.dir.path().join("sgd.toml");
    // No L2 (whose penalty would overflow first) and no LRN (which would tame the outputs).
    let text = tiny_config(&m.data(), 1, "kind = \"sgd\"\nlr = 0.01").replace("l2 = 0.001", "").replace(LRN, "type = \"relu\"");
    std::fs::write(&cfg, text).unwrap();
    let out = m.out();
    let (code, _, stderr) = convnet(&["train", "--config", s(&cfg), "--out", s(&out), "--quiet", "--threads", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let last = out.join("last.safetensors");
    let before = std::fs::read(&last).unwrap();
    let csv_before = std::fs::read(out.join("metrics.csv")).unwrap();

    // An absurd learning rate from epoch 2 on.
    let line = expect_error(
        &["train", "--config", s(&cfg), "--out", s(&out), "--resume", "--epochs", "3", "--lr", "1e20", "--quiet", "--threads", "1"],
        1,
        &["training diverged at epoch 2 step", "the output of layer", "is not finite", "the last good checkpoint", "is intact"],
    );
    assert!(line.contains(s(&last)), "{line}");
    assert_eq!(before, std::fs::read(&last).unwrap(), "the last good checkpoint is untouched");
    assert_eq!(csv_before, std::fs::read(out.join("metrics.csv")).unwrap());

    // Diverging before any checkpoint says so.
    let fresh = m.dir.path().join("fresh");
    expect_error(
        &["train", "--config", s(&cfg), "--out", s(&fresh), "--lr", "1e20", "--quiet", "--threads", "1"],
        1,
        &["training diverged at epoch 1 step", "no checkpoint was written yet"],
    );
    assert!(!fresh.join("last.safetensors").exists());
}

#[test]
fn an_unwritable_run_folder_is_reported_before_the_data_is_read() {
    let m = Mnist::new();
    // Tests run as root, which no permission stops: a run folder under a regular file cannot
    // be created by anyone.
    let under_file = m.config().join("run");
    let nowhere = m.dir.path().join("no-data-here");
    // The data folder does not exist either: the run folder's error comes first.
    expect_error(
        &["train", "--config", s(&m.config()), "--out", s(&under_file), "--data", s(&nowhere), "--quiet"],
        2,
        &[s(&under_file), "cannot create the run folder"],
    );
    expect_error(
        &["train", "--config", s(&m.config()), "--out", s(&m.config()), "--quiet"],
        2,
        &[s(&m.config()), "it is a file, not a folder"],
    );
}

#[test]
fn a_bad_metrics_csv_is_an_error_naming_the_file_and_the_line() {
    use convnet::train::metrics::{parse_metrics_csv, CSV_HEADER};
    let path = Path::new("run/metrics.csv");
    let row = |epoch: usize| format!("{epoch},0.5,0.8,0.6,0.7,0.6,0.75,0.001,1.5,100");
    // A good file reads back row by row.
    let good = format!("{CSV_HEADER}\n{}\n{}\n", row(1), row(2));
    let rows = parse_metrics_csv(&good, path).unwrap();
    assert_eq!(
        rows.iter().map(|m| (m.epoch, m.test_accuracy, m.images_per_second)).collect::<Vec<_>>(),
        [(1, 0.75, 100.0), (2, 0.75, 100.0)]
    );
    assert!(parse_metrics_csv(CSV_HEADER, path).unwrap().is_empty(), "a header alone is a run with no epochs");
    for (text, says) in [
        (String::new(), "line 1 is not the metrics.csv header"),
        (format!("epoch,loss\n{}", row(1)), "line 1 is not the metrics.csv header"),
        (format!("{CSV_HEADER}\n{}\n1,0.5,nan?,0.6", row(1)), "line 3 is not a metrics row"),
        (format!("{CSV_HEADER}\n{}\n{},extra", row(1), row(2)), "line 3 is not a metrics row"),
        (format!("{CSV_HEADER}\n{}\n{}", row(1), row(3)), "line 3 is for epoch 3, expected epoch 2"),
        (format!("{CSV_HEADER}\n{}", row(0)), "line 2 is for epoch 0, expected epoch 1"),
    ] {
        let err = parse_metrics_csv(&text, path).expect_err(says).to_string();
        assert!(err.contains("run/metrics.csv") && err.contains(says), "{err}");
    }
}
