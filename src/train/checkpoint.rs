//! Checkpoints: one safetensors file holds everything needed to evaluate, predict or resume.
//!
//! Tensors: every parameter under its name (the rule: `model::plan`, e.g.
//! "4.residual.2.conv2d.weight"; shapes as in the model), and the optimiser state as
//! "optim.<param name>.<m|v|momentum>", and the lookahead average, once it has started, as
//! "lookahead.<param name>".
//! Metadata (JSON): "model" (the model spec), "run" (the run's settings), "convnet" (the format
//! tag, class names, normalisation, epochs done, optimiser step, seed, best validation
//! accuracy) and, in last.safetensors, "history" (the text of metrics.csv) and, when it was
//! written inside an epoch, "progress" (how far that epoch had gone: [`EpochProgress`]).
//! Files of the previous format, `convnet-checkpoint-1`, still load (see `checkpoint_v1`).
//! Written to a temporary file in the same folder, fsync'd, then renamed over the old one, so a
//! crash leaves either the old checkpoint or the new one, never half of one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::checkpoint_v1;
use crate::config::Config;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::fs::write_atomically;
use crate::model::{LayerConfig, ModelSpec, Network};
use crate::optim::lookahead::PREFIX as LOOKAHEAD;
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use crate::train::metrics::{metrics_csv, parse_metrics_csv, EpochMetrics};
use crate::train::run::RunConfig;

/// The format this version writes: the model and the run as two metadata entries, and
/// parameter names by config index at every depth.
pub const FORMAT: &str = "convnet-checkpoint-2";

/// Everything in a checkpoint besides the tensors, the model and the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub class_names: Vec<String>,
    pub normalization: Normalization,
    /// Epochs completed when this was written.
    pub epoch: usize,
    pub optimizer_step: u64,
    pub seed: u64,
    pub best_val_accuracy: f32,
}

/// How far training had gone inside the epoch that follows the completed ones, in a
/// last.safetensors written mid-epoch (a periodic checkpoint, or a stop on Ctrl-C): the
/// resumed run does the remaining steps of that epoch and ends bit-identical to a run never
/// stopped. The sums are those of the epoch's metrics so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochProgress {
    /// Training steps done in the epoch, 1 to `steps_per_epoch` (all of them when the stop came
    /// between the last step and the epoch's evaluation).
    pub steps_done: usize,
    /// The epoch's steps and the batch size they were counted with: a mid-epoch resume needs
    /// the same ones, or the step would point at other examples.
    pub steps_per_epoch: usize,
    pub batch_size: usize,
    /// The training examples the steps went over (the epoch's shuffle depends on their number).
    pub train_examples: usize,
    /// The sum of the loss over the examples trained on so far in the epoch (an f64: serde_json's
    /// `float_roundtrip` reads it back exactly).
    pub loss_sum: f64,
    /// Training examples classified correctly so far in the epoch.
    pub correct: usize,
    /// The learning rate of the last step.
    pub lr: f32,
    /// Seconds of training so far in the epoch, over all the processes that trained it.
    pub seconds: f32,
}

/// The "convnet" metadata entry: the format tag beside the meta.
#[derive(Serialize)]
struct StoredMeta<'a> {
    format: &'a str,
    #[serde(flatten)]
    meta: &'a CheckpointMeta,
}

/// The format tag alone, read before anything else.
#[derive(Deserialize)]
struct FormatTag {
    format: String,
}

/// A checkpoint read back from disk.
pub struct Checkpoint {
    pub path: PathBuf,
    /// The model and the run it was trained with.
    pub config: Config,
    pub meta: CheckpointMeta,
    /// The metrics of the epochs so far, when the checkpoint carries them (last.safetensors;
    /// empty otherwise).
    pub history: Vec<EpochMetrics>,
    /// Where inside the next epoch it was written, for a mid-epoch checkpoint.
    pub progress: Option<EpochProgress>,
    /// By today's names, whatever the file's format.
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `net`, the run it is trained with (and the optimiser state, if given) to `path`
/// atomically.
pub fn save_checkpoint(path: &Path, net: &Network, run: &RunConfig, optimizer: Option<&Optimizer>, meta: &CheckpointMeta) -> Result<()> {
    save_run_checkpoint(path, net, run, optimizer, meta, RunRecord::default())
}

/// What last.safetensors holds of a run beyond the weights and the optimiser state.
#[derive(Clone, Copy, Default)]
pub struct RunRecord<'a> {
    /// The metrics of every epoch so far.
    pub history: &'a [EpochMetrics],
    /// How far the next epoch has gone, for a checkpoint written inside it.
    pub progress: Option<&'a EpochProgress>,
    /// The lookahead average ("lookahead.<param name>" tensors; `optim::lookahead`).
    pub averaged: &'a [(String, Tensor)],
}

/// [`save_checkpoint`], with the metrics of every epoch so far in the metadata ("history",
/// the text of metrics.csv), inside an epoch how far it has gone ("progress"), and the
/// lookahead average as tensors: a resumed
/// run then takes both from the checkpoint, so the checkpoint alone is the state of the run
/// and metrics.csv can always be rewritten.
pub fn save_run_checkpoint(
    path: &Path,
    net: &Network,
    run: &RunConfig,
    optimizer: Option<&Optimizer>,
    meta: &CheckpointMeta,
    record: RunRecord,
) -> Result<()> {
    write_atomically(path, &checkpoint_bytes(path, net, run, optimizer, meta, record)?)
}

/// The bytes [`save_run_checkpoint`] writes (`path` names the file in errors): for a binding
/// that keeps a model in memory and reads it back with [`Checkpoint::from_bytes`].
pub fn checkpoint_bytes(
    path: &Path,
    net: &Network,
    run: &RunConfig,
    optimizer: Option<&Optimizer>,
    meta: &CheckpointMeta,
    record: RunRecord,
) -> Result<Vec<u8>> {
    let RunRecord { history, progress, averaged } = record;
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> =
        net.params().iter().map(|p| (p.name.clone(), p.value.shape().to_vec(), f32_bytes(p.value.data()))).collect();
    named.extend(averaged.iter().map(|(name, t)| (name.clone(), t.shape().to_vec(), f32_bytes(t.data()))));
    if let Some(opt) = optimizer {
        for (name, v) in opt.state() {
            named.push((format!("optim.{name}"), vec![v.len()], f32_bytes(&v)));
        }
    }
    let ck = |detail: String| Error::Checkpoint { path: path.to_path_buf(), detail };
    let views = named
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ck(format!("cannot build tensor view: {e:?}")))?;
    let json = |value: std::result::Result<String, serde_json::Error>| value.map_err(|e| ck(e.to_string()));
    let mut info = HashMap::new();
    info.insert("model".to_string(), json(serde_json::to_string(net.spec()))?);
    info.insert("run".to_string(), json(serde_json::to_string(run))?);
    info.insert("convnet".to_string(), json(serde_json::to_string(&StoredMeta { format: FORMAT, meta }))?);
    if !history.is_empty() {
        info.insert("history".to_string(), metrics_csv(history));
    }
    if let Some(progress) = progress {
        info.insert("progress".to_string(), json(serde_json::to_string(progress))?);
    }
    safetensors::serialize(views, &Some(info)).map_err(|e| ck(format!("cannot serialise: {e:?}")))
}

/// A safetensors parse error in words.
fn describe_safetensors_error(e: &SafeTensorError, len: usize) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => {
            format!("not a safetensors file: {len} bytes is too short for the 8-byte header length (empty or truncated)")
        }
        SafeTensorError::InvalidHeaderLength => format!(
            "not a safetensors file, or truncated: the header length in the first 8 bytes points past the end of the \
             file ({len} bytes)"
        ),
        SafeTensorError::HeaderTooLarge => "not a safetensors file: the header length in the first 8 bytes is over 100 MB".into(),
        SafeTensorError::InvalidHeader | SafeTensorError::InvalidHeaderStart | SafeTensorError::InvalidHeaderDeserialization => {
            "not a safetensors file: the header is not the expected JSON".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "truncated or damaged: the tensors listed in the header do not cover the {len}-byte file exactly (cut short while copied?)"
        ),
        SafeTensorError::InvalidOffset(name) => format!("damaged: the offsets of tensor {name} are invalid"),
        SafeTensorError::ValidationOverflow | SafeTensorError::TensorInvalidInfo => {
            "damaged: a tensor's shape does not match its size".into()
        }
        other => format!("not a valid safetensors file ({other:?})"),
    }
}

impl Checkpoint {
    /// Reads and checks a checkpoint file (see [`Checkpoint::from_bytes`]).
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let ck = |detail: String| Error::Checkpoint { path: path.to_path_buf(), detail };
        if path.is_dir() {
            return Err(ck("is a directory, expected a .safetensors file written by convnet train".into()));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Checkpoint::from_bytes(&bytes, path)
    }

    /// Parses a checkpoint held in memory; `path` names it in errors. Checks everything that a
    /// later step would otherwise trip over: the safetensors structure, the metadata (the config
    /// is validated like a config file, the normalisation must fit its channels), every tensor
    /// F32. Whether the tensors fit the model is checked by [`Checkpoint::network`] and
    /// [`Checkpoint::load_weights_into`].
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        let ck = |detail: String| Error::Checkpoint { path: path.to_path_buf(), detail };
        let st = SafeTensors::deserialize(bytes).map_err(|e| ck(describe_safetensors_error(&e, bytes.len())))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| ck(describe_safetensors_error(&e, bytes.len())))?;
        let info = header
            .metadata()
            .as_ref()
            .ok_or_else(|| ck("a safetensors file without convnet metadata (not written by convnet train?)".into()))?;
        let get = |key: &str| info.get(key).ok_or_else(|| ck(format!("metadata has no \"{key}\" entry (not written by convnet train?)")));
        let stored = get("convnet")?;
        let format = serde_json::from_str::<FormatTag>(stored).map_err(|e| ck(format!("bad metadata: {e}")))?.format;
        let config = match format.as_str() {
            FORMAT => {
                let model: ModelSpec = serde_json::from_str(get("model")?).map_err(|e| ck(format!("bad model in metadata: {e}")))?;
                let run: RunConfig = serde_json::from_str(get("run")?).map_err(|e| ck(format!("bad run settings in metadata: {e}")))?;
                Config { model, run }
            }
            checkpoint_v1::FORMAT => checkpoint_v1::config(get("config")?).map_err(|e| ck(format!("bad config in metadata: {e}")))?,
            other => return Err(ck(format!("format \"{other}\" is not \"{FORMAT}\" (nor the older \"{}\")", checkpoint_v1::FORMAT))),
        };
        config.validate("(in the checkpoint)").map_err(|e| ck(e.to_string()))?;
        let meta: CheckpointMeta = serde_json::from_str(stored).map_err(|e| ck(format!("bad metadata: {e}")))?;
        meta.normalization.validate(config.model.input[2]).map_err(|e| ck(format!("metadata: {e}")))?;
        let history = match info.get("history") {
            Some(text) => parse_metrics_csv(text, path).map_err(|e| match e {
                Error::Data { detail, .. } => ck(format!("metadata \"history\": {detail}")),
                other => other,
            })?,
            None => Vec::new(),
        };
        let progress = match info.get("progress") {
            Some(text) => {
                let p: EpochProgress = serde_json::from_str(text).map_err(|e| ck(format!("bad metadata \"progress\": {e}")))?;
                if p.steps_done == 0 || p.steps_done > p.steps_per_epoch || p.batch_size == 0 {
                    return Err(ck(format!(
                        "bad metadata \"progress\": step {} of {} with batch size {}",
                        p.steps_done, p.steps_per_epoch, p.batch_size
                    )));
                }
                Some(p)
            }
            None => None,
        };
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ck(format!("tensor {name} is {:?}, expected F32", view.dtype())));
            }
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        if format == checkpoint_v1::FORMAT {
            let plan = config.model.plan().map_err(|e| ck(e.to_string()))?;
            tensors = checkpoint_v1::rename_tensors(&plan.layers, tensors);
        }
        Ok(Checkpoint { path: path.to_path_buf(), config, meta, history, progress, tensors })
    }

    /// Builds the network of the checkpoint's config and loads its weights, checking that
    /// every parameter is present with the right shape and that the class names fit the
    /// model's outputs.
    pub fn network(&self) -> Result<Network> {
        // A header that claims a large model over a few stored values is refused before the
        // model's memory is allocated.
        let stored: u64 = self
            .tensors
            .iter()
            .filter(|(k, _)| !k.starts_with("optim.") && !k.starts_with(LOOKAHEAD))
            .map(|(_, (_, d))| d.len() as u64)
            .sum();
        if let Some(needed) = self.config.model.param_count().filter(|&n| n > stored) {
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                detail: format!(
                    "the model in the metadata has {needed} parameters but the file holds {stored} values (truncated or edited?)"
                ),
            });
        }
        let mut net =
            Network::build(&self.config.model, 0).map_err(|e| Error::Checkpoint { path: self.path.clone(), detail: e.to_string() })?;
        if net.num_classes() != self.meta.class_names.len() {
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                detail: format!("the model outputs {} classes but the metadata names {}", net.num_classes(), self.meta.class_names.len()),
            });
        }
        self.load_weights_into(&mut net)?;
        // Used as it was trained: in the precision of its config (`set_precision` to change it).
        net.set_precision(self.config.run.train.precision);
        Ok(net)
    }

    /// Checks that this checkpoint holds a network of `config`'s architecture (same input and
    /// layers; the name, description and initialiser may differ), before its weights are loaded
    /// into a network built from `config` (`train --resume`). The run's settings are not
    /// compared: a run may resume with more epochs, say.
    pub fn check_compatible(&self, config: &ModelSpec) -> Result<()> {
        let ck = |detail: String| Error::Checkpoint { path: self.path.clone(), detail };
        let theirs = &self.config.model;
        if theirs.input != config.input {
            return Err(ck(format!(
                "belongs to another model: it was written for model \"{}\" with input {:?}, the config's model \"{}\" has input {:?}",
                theirs.name, theirs.input, config.name, config.input
            )));
        }
        if theirs.layers != config.layers {
            let i =
                theirs.layers.iter().zip(&config.layers).position(|(a, b)| a != b).unwrap_or(theirs.layers.len().min(config.layers.len()));
            let show = |layers: &[LayerConfig]| layers.get(i).map_or_else(|| "nothing".to_string(), |l| format!("{l:?}"));
            return Err(ck(format!(
                "belongs to another model: it was written for model \"{}\" ({} layers), the config's model \"{}\" has {} layers \
                 and differs at layer {i}: {} in the checkpoint, {} in the config",
                theirs.name,
                theirs.layers.len(),
                config.name,
                config.layers.len(),
                show(&theirs.layers),
                show(&config.layers)
            )));
        }
        Ok(())
    }

    /// Copies the checkpoint's weights into `net`, which must have the same architecture.
    pub fn load_weights_into(&self, net: &mut Network) -> Result<()> {
        for p in net.params_mut() {
            let name = &p.name;
            let (shape, data) = self.tensors.get(name).ok_or_else(|| Error::Checkpoint {
                path: self.path.clone(),
                detail: format!("tensor {name} is missing (the checkpoint belongs to another model?)"),
            })?;
            if shape != p.value.shape() {
                return Err(Error::Checkpoint {
                    path: self.path.clone(),
                    detail: format!("tensor {name} has shape {shape:?}, the model expects {:?}", p.value.shape()),
                });
            }
            p.value = Tensor::from_vec(shape, data.clone())?;
        }
        Ok(())
    }

    /// A tensor of the file by name ("lookahead.0.conv2d.weight", say), if it holds one.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.tensors.get(name).and_then(|(shape, data)| Tensor::from_vec(shape, data.clone()).ok())
    }

    /// The optimiser state tensors (names without the "optim." prefix).
    pub fn optimizer_state(&self) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<_> =
            self.tensors.iter().filter_map(|(k, (_, d))| k.strip_prefix("optim.").map(|n| (n.to_string(), d.clone()))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
