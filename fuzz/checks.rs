//! What each fuzz target does with its input, written once: the targets (fuzz_targets/*.rs)
//! call these and ignore the outcome (they look for panics), and tests/fuzz_regressions.rs
//! calls the same functions to check what each kept input is refused for. Only `convnet` and
//! std here, so the main crate's tests can include this file (`#[path]`).
#![allow(dead_code)]

use std::path::Path;

use convnet::data::{idx_pair_to_dataset, parse_cifar10_records, parse_class_names, parse_idx, parse_idx_rank, Dataset, Normalization};
use convnet::interop::onnx::{export_onnx, import_onnx};
use convnet::model::{Loss, Network};
use convnet::optim::Optimizer;
use convnet::train::Checkpoint;
use convnet::{Config, Tensor};

/// Models above this many parameters are parsed and validated but not built: the fuzzer looks
/// for panics, and building a model of a billion parameters (within the config limits) would
/// only measure the allocator.
pub const MAX_BUILD_PARAMS: u64 = 2_000_000;
/// Models whose input has more values than this, or more forward FLOPs than `MAX_RUN_FLOPS`,
/// are built but not run.
pub const MAX_RUN_INPUT: usize = 1 << 14;
pub const MAX_RUN_FLOPS: u64 = 50_000_000;

/// What became of an input: Ok, or the error's message.
pub type Outcome = Result<(), String>;

fn message(e: convnet::Error) -> String {
    e.to_string()
}

/// The IDX target: the whole input as one IDX file (`whole`), then split by its first two
/// bytes into an images file and a labels file that go through the checks of a real
/// train/t10k pair (`pair`).
pub struct IdxOutcome {
    pub whole: Outcome,
    pub pair: Outcome,
}

pub fn idx(data: &[u8]) -> IdxOutcome {
    let whole = parse_idx(data, Path::new("fuzz-idx")).map(|_| ()).map_err(message);
    IdxOutcome { whole, pair: idx_pair(data) }
}

fn idx_pair(data: &[u8]) -> Outcome {
    if data.len() < 2 {
        return Err("shorter than the two bytes that split it".into());
    }
    let (head, rest) = data.split_at(2);
    let split = usize::from(u16::from_le_bytes([head[0], head[1]])) % (rest.len() + 1);
    let (images_bytes, labels_bytes) = rest.split_at(split);
    let (images_path, labels_path) = (Path::new("fuzz-images"), Path::new("fuzz-labels"));
    let images = parse_idx_rank(images_bytes, images_path, Some(3)).map_err(message)?;
    let labels = parse_idx_rank(labels_bytes, labels_path, Some(1)).map_err(message)?;
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let gzip = labels_bytes.starts_with(&[0x1f, 0x8b]);
    let ds = idx_pair_to_dataset(images, images_path, labels, labels_path, gzip, &classes).map_err(message)?;
    let _ = Normalization::from_dataset(&ds);
    let _ = ds.split_validation(1);
    Ok(())
}

/// The CIFAR-10 target: the first byte is the number of classes (0 to 255, so labels out of
/// range are hit), the rest a batch file; the whole input is also read as batches.meta.txt.
/// Returns (the records, the class names).
pub fn cifar10(data: &[u8]) -> (Outcome, Outcome) {
    let names = parse_class_names(data, Path::new("fuzz-batches.meta.txt")).map(|_| ()).map_err(message);
    let Some((&classes, rest)) = data.split_first() else { return (Err("empty input".into()), names) };
    let n_classes = usize::from(classes);
    let records = parse_cifar10_records(rest, Path::new("fuzz-batch.bin"), n_classes).map_err(message).map(|(images, labels)| {
        assert_eq!(images.len(), labels.len() * 3072);
        let names = (0..n_classes).map(|i| i.to_string()).collect();
        // What the loader builds from them must pass the data set's own checks.
        Dataset::new(images, labels, 32, 32, 3, names).expect("records the parser accepted make a valid data set");
    });
    (records, names)
}

/// The config target: TOML text to Config (with its validation), back through to_toml, then
/// Network::build and one forward and backward pass on a batch of one, for models small
/// enough to run quickly.
pub fn config(data: &[u8]) -> Outcome {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let cfg = Config::from_toml(text, "fuzz.toml").map_err(message)?;
    // A config that parsed must also serialise and parse back (the run folder's config.toml).
    let back = Config::from_toml(&cfg.to_toml(), "config.toml").expect("a valid config survives to_toml");
    assert_eq!(back, cfg);
    if cfg.model.param_count().is_none_or(|p| p > MAX_BUILD_PARAMS) {
        return Ok(());
    }
    let mut net = Network::build(&cfg.model, 0).map_err(message)?;
    let [h, w, c] = cfg.model.input;
    if h * w * c > MAX_RUN_INPUT || net.flops() > MAX_RUN_FLOPS {
        return Ok(());
    }
    let x = Tensor::zeros(&[1, h, w, c]);
    // Errors are fine here (batch norm cannot train on one value per channel); panics are not.
    let _ = net.predict(&x);
    let _ = net.compute_gradients(&x, &[0], Loss::default());
    Ok(())
}

/// The checkpoint target: safetensors bytes to Checkpoint (metadata, config, normalisation,
/// tensors), then the network with its weights, what `train --resume` checks, and the
/// optimiser state.
pub fn checkpoint(data: &[u8]) -> Outcome {
    let ck = Checkpoint::from_bytes(data, Path::new("fuzz.safetensors")).map_err(message)?;
    if ck.config.model.param_count().is_none_or(|p| p > MAX_BUILD_PARAMS) {
        return Ok(());
    }
    let net = ck.network().map_err(message)?;
    ck.check_compatible(&ck.config.model).map_err(message)?;
    let mut optimizer = Optimizer::new(ck.config.run.optimizer.clone()).map_err(message)?;
    // best.safetensors has no optimiser state: an error here is fine, a panic is not.
    let _ = optimizer.load_state(ck.meta.optimizer_step, ck.optimizer_state(), &net.trainable_sizes());
    Ok(())
}

/// The ONNX importer: any bytes give a model or an error, never a panic. A model that imports
/// (and is small enough to build) gets its weights loaded, and its checkpoint exported again.
pub fn onnx(data: &[u8]) -> Outcome {
    let path = Path::new("fuzz.onnx");
    let imported = import_onnx(data, path).map_err(message)?;
    if imported.model.param_count().is_none_or(|p| p > MAX_BUILD_PARAMS) {
        return Ok(());
    }
    imported.network(path).map_err(message)?;
    let dir = std::env::temp_dir().join(format!("convnet-fuzz-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ck_path = dir.join("imported.safetensors");
    imported.save(path, &ck_path, None).map_err(message)?;
    let ck = Checkpoint::load(&ck_path).map_err(message)?;
    export_onnx(&ck).map_err(message)?;
    Ok(())
}
