//! The parsers the fuzz targets (fuzz/fuzz_targets/) exercise, on the inputs that once crashed
//! them or nearly did (tests/fuzz_regressions/<target>/, each expected to give an error, not
//! a panic) and on the seed corpora (fuzz/corpus/<target>/seed-*, valid files, each expected to
//! parse). The checks here run the targets' own code (fuzz/checks.rs, included below), so a
//! regression shows in `cargo test` without cargo-fuzz; each kept input must be refused for
//! the reason it was kept. See docs/reliability.md for the fuzzing runs.

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

use convnet::model::Network;
use convnet::Config;

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

// ---------------------------------------------------------------- seeds parse

#[test]
fn the_seed_corpora_are_valid_files() {
    for (path, bytes) in seeds("idx") {
        let outcome = checks::idx(&bytes);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains("pair") {
            outcome.pair.unwrap_or_else(|e| panic!("{name}: the pair makes a data set: {e}"));
        } else {
            outcome.whole.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    for (path, bytes) in seeds("cifar10") {
        let (records, names) = checks::cifar10(&bytes);
        assert!(records.is_ok() || names.is_ok(), "{}: neither records nor class names: {records:?} {names:?}", path.display());
    }
    for (path, bytes) in seeds("config") {
        checks::config(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for (path, bytes) in seeds("checkpoint") {
        checks::checkpoint(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for (path, bytes) in seeds("onnx") {
        checks::onnx(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------- kept inputs, each refused for its reason

/// The kept inputs of `target` and what each must be refused for: the file's name and the
/// words its error must hold. Every file in the folder must be listed, and every listed file
/// must be there.
fn kept<'a>(target: &str, reasons: &[(&str, &'a [&'a str])]) -> Vec<(String, Vec<u8>, &'a [&'a str])> {
    let files = regressions(target);
    let names: Vec<String> = files.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let mut listed: Vec<&str> = reasons.iter().map(|r| r.0).collect();
    listed.sort();
    assert_eq!(names, listed, "tests/fuzz_regressions/{target}: files and reasons differ");
    files.into_iter().zip(names).map(|((_, bytes), name)| (name.clone(), bytes, reasons.iter().find(|r| r.0 == name).unwrap().1)).collect()
}

fn assert_refused_for(what: &str, outcome: &checks::Outcome, words: &[&str]) {
    match outcome {
        Ok(()) => panic!("{what}: accepted, expected an error with {words:?}"),
        Err(e) => assert!(words.iter().all(|w| e.contains(w)), "{what}: the error {e:?} does not say {words:?}"),
    }
}

#[test]
fn kept_idx_inputs_are_refused_for_their_reasons() {
    let reasons: &[(&str, &[&str])] = &[
        ("review-dims-overflow", &["dimensions [4294967295, 4294967295, 4294967295] overflow the address space"]),
        ("review-lying-header", &["need 1000000000000000 bytes of data after the 16-byte header, found 16"]),
        ("review-zero-dims", &["magic number 0x00000800 declares 0 dimensions"]),
    ];
    for (name, bytes, words) in kept("idx", reasons) {
        let outcome = checks::idx(&bytes);
        assert_refused_for(&name, &outcome.whole, words);
        assert!(outcome.pair.is_err(), "{name}: the pair made a data set");
    }
}

#[test]
fn kept_cifar10_inputs_are_refused_for_their_reasons() {
    let reasons: &[(&str, &[&str])] = &[
        ("review-label-out-of-range", &["record 0 (byte offset 0): label 10 is out of range for the 10 classes"]),
        ("review-no-classes", &["label 3 is out of range for the 0 classes"]),
    ];
    for (name, bytes, words) in kept("cifar10", reasons) {
        let (records, names) = checks::cifar10(&bytes);
        assert_refused_for(&name, &records, words);
        assert!(names.is_err(), "{name}: read as class names");
    }
}

#[test]
fn kept_config_inputs_are_refused_for_their_reasons() {
    let reasons: &[(&str, &[&str])] = &[
        ("review-huge-stride.toml", &["layer 2 (max_pool): stride 9223372036854775807 is over the limit of 65536"]),
        ("review-padding-overflow.toml", &["layer 0 (conv2d): padding 9223372036854775807 is over the limit of 65536"]),
        ("review-units-terabytes.toml", &["layer 5 (dense): units 1000000000000 is over the limit of 1048576"]),
    ];
    for (name, bytes, words) in kept("config", reasons) {
        let outcome = checks::config(&bytes);
        assert_refused_for(&name, &outcome, words);
    }
}

#[test]
fn kept_checkpoint_inputs_are_refused_for_their_reasons() {
    let reasons: &[(&str, &[&str])] = &[
        (
            "review-config-padding-overflow.safetensors",
            &["config (in the checkpoint): layer 0 (conv2d): padding 9223372036854775807 is over the limit"],
        ),
        ("review-model-larger-than-file.safetensors", &["33020 parameters but the file holds 350 values"]),
        ("review-normalization-channels.safetensors", &["normalization: 1 means and 3 stds for 1-channel images"]),
    ];
    for (name, bytes, words) in kept("checkpoint", reasons) {
        let outcome = checks::checkpoint(&bytes);
        assert_refused_for(&name, &outcome, words);
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
    let err = checks::checkpoint(&edited).unwrap_err();
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
        let err = checks::config(text.as_bytes()).expect_err(&text);
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
