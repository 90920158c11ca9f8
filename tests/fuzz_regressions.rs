//! The parsers the fuzz targets (fuzz/fuzz_targets/) exercise, on the inputs that once crashed
//! them or nearly did (tests/fuzz_regressions/<target>/, each expected to give an error, not
//! a panic) and on the seed corpora (fuzz/corpus/<target>/seed-*, valid files, each expected to
//! parse). The checks here run the same code as the targets, so a regression shows in
//! `cargo test` without cargo-fuzz. See docs/reliability.md for the fuzzing runs.

use std::path::{Path, PathBuf};

use convnet::data::{idx_pair_to_dataset, parse_cifar10_records, parse_class_names, parse_idx, parse_idx_rank, Dataset, Normalization};
use convnet::model::{Loss, Network};
use convnet::optim::Optimizer;
use convnet::train::Checkpoint;
use convnet::Config;
use convnet::Tensor;

/// The files of `dir` whose names start with `prefix`, sorted.
fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    files(&root().join("tests/fuzz_regressions").join(target), "").into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let v: Vec<_> =
        files(&root().join("fuzz/corpus").join(target), "seed-").into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    assert!(!v.is_empty(), "no seeds for {target}");
    v
}

// ---------------------------------------------------------------- the targets' code

/// fuzz_targets/idx.rs: the whole input as one IDX file, then split into an images file and a
/// labels file by its first two bytes. Returns whether the pair made a data set.
fn idx_target(data: &[u8]) -> (convnet::Result<convnet::data::IdxArray>, bool) {
    let whole = parse_idx(data, "fuzz-idx");
    if data.len() < 2 {
        return (whole, false);
    }
    let rest = &data[2..];
    let split = usize::from(u16::from_le_bytes([data[0], data[1]])) % (rest.len() + 1);
    let (images_bytes, labels_bytes) = rest.split_at(split);
    let (images_path, labels_path) = (Path::new("fuzz-images"), Path::new("fuzz-labels"));
    let (Ok(images), Ok(labels)) = (parse_idx_rank(images_bytes, images_path, Some(3)), parse_idx_rank(labels_bytes, labels_path, Some(1)))
    else {
        return (whole, false);
    };
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let gzip = labels_bytes.starts_with(&[0x1f, 0x8b]);
    match idx_pair_to_dataset(images, images_path, labels, labels_path, gzip, &classes) {
        Ok(ds) => {
            let _ = Normalization::from_dataset(&ds);
            let _ = ds.split_validation(1);
            (whole, true)
        }
        Err(_) => (whole, false),
    }
}

/// fuzz_targets/cifar10.rs: the first byte is the number of classes, the rest a batch file;
/// the whole input is also read as batches.meta.txt. Returns (records ok, class names ok).
fn cifar10_target(data: &[u8]) -> (bool, bool) {
    let Some((&classes, rest)) = data.split_first() else { return (false, false) };
    let n_classes = usize::from(classes);
    let records = match parse_cifar10_records(rest, "fuzz-batch.bin", n_classes) {
        Ok((images, labels)) => {
            assert_eq!(images.len(), labels.len() * 3072);
            Dataset::new(images, labels, 32, 32, 3, (0..n_classes).map(|i| i.to_string()).collect()).unwrap();
            true
        }
        Err(_) => false,
    };
    (records, parse_class_names(data, "fuzz-batches.meta.txt").is_ok())
}

/// fuzz_targets/config.rs: parse, round-trip through to_toml, build, run a batch of one.
fn config_target(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let cfg = Config::from_toml(text, "fuzz.toml").map_err(|e| e.to_string())?;
    let back = Config::from_toml(&cfg.to_toml(), "config.toml").expect("a valid config survives to_toml");
    assert_eq!(back, cfg);
    if cfg.model.param_count().is_none_or(|p| p > 2_000_000) {
        return Ok(());
    }
    let mut net = Network::build(&cfg.model, 0).map_err(|e| e.to_string())?;
    let [h, w, c] = cfg.model.input;
    if h * w * c > 1 << 14 || net.flops() > 50_000_000 {
        return Ok(());
    }
    let x = Tensor::zeros(&[1, h, w, c]);
    let _ = net.predict(&x);
    let _ = net.compute_gradients(&x, &[0], Loss::default());
    Ok(())
}

/// fuzz_targets/checkpoint.rs: parse, build the network, load the optimiser state.
fn checkpoint_target(data: &[u8]) -> Result<(), String> {
    let ck = Checkpoint::from_bytes(data, Path::new("fuzz.safetensors")).map_err(|e| e.to_string())?;
    if ck.config.model.param_count().is_none_or(|p| p > 2_000_000) {
        return Ok(());
    }
    let net = ck.network().map_err(|e| e.to_string())?;
    ck.check_compatible(&ck.config.model).map_err(|e| e.to_string())?;
    let mut optimizer = Optimizer::new(ck.config.run.optimizer.clone()).map_err(|e| e.to_string())?;
    let sizes = net.trainable_sizes();
    // best.safetensors has no optimiser state: an error here is fine, a panic is not.
    let _ = optimizer.load_state(ck.meta.optimizer_step, ck.optimizer_state(), &sizes);
    Ok(())
}

// ---------------------------------------------------------------- seeds parse

#[test]
fn the_seed_corpora_are_valid_files() {
    for (path, bytes) in seeds("idx") {
        let (whole, pair) = idx_target(&bytes);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains("pair") {
            assert!(pair, "{name}: the pair makes a data set");
        } else {
            whole.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    for (path, bytes) in seeds("cifar10") {
        let (records, names) = cifar10_target(&bytes);
        assert!(records || names, "{}: neither records nor class names", path.display());
    }
    for (path, bytes) in seeds("config") {
        config_target(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for (path, bytes) in seeds("checkpoint") {
        checkpoint_target(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------- kept inputs give errors

#[test]
fn kept_idx_inputs_give_errors_not_panics() {
    for (path, bytes) in regressions("idx") {
        let (whole, pair) = idx_target(&bytes);
        assert!(whole.is_err() && !pair, "{}: expected an error", path.display());
    }
}

#[test]
fn kept_cifar10_inputs_give_errors_not_panics() {
    for (path, bytes) in regressions("cifar10") {
        assert_eq!(cifar10_target(&bytes), (false, false), "{}: expected errors", path.display());
    }
}

#[test]
fn kept_config_inputs_give_errors_not_panics() {
    for (path, bytes) in regressions("config") {
        let result = config_target(&bytes);
        assert!(result.is_err(), "{}: expected an error, got {result:?}", path.display());
        eprintln!("{}: {}", path.display(), result.unwrap_err());
    }
}

#[test]
fn kept_checkpoint_inputs_give_errors_not_panics() {
    for (path, bytes) in regressions("checkpoint") {
        let result = checkpoint_target(&bytes);
        assert!(result.is_err(), "{}: expected an error", path.display());
        eprintln!("{}: {}", path.display(), result.unwrap_err());
    }
}

// ---------------------------------------------------------------- found by reading the code

/// A checkpoint whose normalisation is for another number of channels than its model: predict
/// used to panic in Normalization::apply ("normalization: 1 means, 3 stds").
#[test]
fn checkpoint_with_normalisation_for_other_channels_is_refused() {
    let (_, bytes) = seeds("checkpoint").into_iter().find(|(p, _)| p.ends_with("seed-best.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header["__metadata__"]["convnet"].as_str().unwrap().to_string();
    let mut meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    meta["normalization"]["std"] = serde_json::json!([0.5, 0.5, 0.5]);
    header["__metadata__"]["convnet"] = serde_json::Value::String(meta.to_string());
    let text = serde_json::to_vec(&header).unwrap();
    let mut edited = (text.len() as u64).to_le_bytes().to_vec();
    edited.extend(text);
    edited.extend_from_slice(&bytes[8 + n..]);
    let err = checkpoint_target(&edited).unwrap_err();
    assert!(err.contains("normalization: 1 means and 3 stds for 1-channel images"), "{err}");
}

/// Sizes that overflow the shape arithmetic (a debug-build panic, or a wrapped size in
/// release) or ask for terabytes: refused by the config's validation before anything is built.
#[test]
fn configs_asking_for_absurd_sizes_are_refused() {
    let base = std::fs::read_to_string(root().join("fuzz/corpus/config/seed-seed.toml")).unwrap();
    let big_conv = "[[layers]]\ntype = \"conv2d\"\nfilters = 1000000\nkernel = 3\n[[layers]]\ntype = \"relu\"";
    let cases: &[&[(&str, &str)]] = &[
        &[("kernel = 3", "kernel = 4611686018427387904")],
        &[("kernel = 3", "kernel = [3, 100000]")],
        &[("padding = \"same\"", "padding = 9223372036854775807")],
        &[("padding = \"same\"", "padding = [0, 0, 0, 70000]")],
        &[("filters = 2", "filters = 9223372036854775807")],
        &[("units = 10", "units = 4611686018427387904")],
        &[("input = [8, 8, 1]", "input = [65536, 65536, 1]")],
        &[("input = [8, 8, 1]", "input = [8, 8, 9223372036854775807]")],
        &[("depth_radius = 1", "depth_radius = 9223372036854775807")],
        &[("size = 2", "size = 9223372036854775807")],
        &[("batch_size = 8", "batch_size = 9223372036854775807")],
        // Two convolutions of a million filters: 9e12 parameters.
        &[("filters = 2", "filters = 1000000"), ("[[layers]]\ntype = \"relu\"", big_conv)],
    ];
    for case in cases {
        let mut text = base.clone();
        for (from, to) in case.iter() {
            assert!(text.contains(from), "{from}");
            text = text.replacen(from, to, 1);
        }
        let err = config_target(text.as_bytes()).expect_err(&text);
        assert!(err.contains("over the limit") || err.contains("too large"), "{case:?}: {err}");
    }
}

/// The config's own count of parameters (used to refuse absurd models before building them,
/// and by the fuzz targets) agrees with the built network for every shipped config.
#[test]
fn param_counts_match_the_built_networks() {
    let mut configs = files(&root().join("configs"), "");
    configs.extend(files(&root().join("fuzz/corpus/config"), "seed-"));
    for path in configs.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let cfg = Config::load(path).unwrap();
        let net = Network::build(&cfg.model, 0).unwrap();
        assert_eq!(cfg.model.param_count(), Some(net.num_params() as u64), "{}", path.display());
    }
}
