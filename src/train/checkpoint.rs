//! Checkpoints: one safetensors file holds everything needed to evaluate, predict or resume.
//!
//! Tensors: every parameter as "<layer index>.<kind>.<weight|bias>" (shapes as in the model),
//! and the optimiser state as "optim.<param>.<m|v|momentum>".
//! Metadata: "config" (the model config, JSON) and "convnet" (class names, normalisation,
//! epochs done, optimiser step, seed, best validation accuracy; JSON).
//! Written to a temporary file in the same folder, fsync'd, then renamed over the old one, so a
//! crash leaves either the old checkpoint or the new one, never half of one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::fs::write_atomically;
use crate::model::{LayerConfig, ModelConfig, Network};
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use crate::train::metrics::{metrics_csv, parse_metrics_csv, EpochMetrics};

pub const FORMAT: &str = "convnet-checkpoint-1";

/// Everything in a checkpoint besides the tensors and the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: String,
    pub class_names: Vec<String>,
    pub normalization: Normalization,
    /// Epochs completed when this was written.
    pub epoch: usize,
    pub optimizer_step: u64,
    pub seed: u64,
    pub best_val_accuracy: f32,
}

/// A checkpoint read back from disk.
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub meta: CheckpointMeta,
    /// The metrics of the epochs so far, when the checkpoint carries them (last.safetensors
    /// written by this version; empty otherwise).
    pub history: Vec<EpochMetrics>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `net` (and the optimiser state, if given) to `path` atomically.
pub fn save_checkpoint(path: &Path, net: &Network, optimizer: Option<&Optimizer>, meta: &CheckpointMeta) -> Result<()> {
    save_checkpoint_with_history(path, net, optimizer, meta, &[])
}

/// [`save_checkpoint`], with the metrics of every epoch so far in the metadata ("history",
/// the text of metrics.csv): a resumed run then takes its history from the checkpoint, so
/// the checkpoint alone is the state of the run and metrics.csv can always be rewritten.
pub fn save_checkpoint_with_history(
    path: &Path,
    net: &Network,
    optimizer: Option<&Optimizer>,
    meta: &CheckpointMeta,
    history: &[EpochMetrics],
) -> Result<()> {
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = net
        .param_names()
        .iter()
        .zip(net.params())
        .map(|(name, p)| (name.clone(), p.value.shape().to_vec(), f32_bytes(p.value.data())))
        .collect();
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
    let mut info = HashMap::new();
    info.insert("config".to_string(), serde_json::to_string(&net.config).map_err(|e| ck(e.to_string()))?);
    info.insert("convnet".to_string(), serde_json::to_string(meta).map_err(|e| ck(e.to_string()))?);
    if !history.is_empty() {
        info.insert("history".to_string(), metrics_csv(history));
    }
    let bytes = safetensors::serialize(views, &Some(info)).map_err(|e| ck(format!("cannot serialise: {e:?}")))?;
    write_atomically(path, &bytes)
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
        let config: ModelConfig = serde_json::from_str(get("config")?).map_err(|e| ck(format!("bad config in metadata: {e}")))?;
        config.validate("(in the checkpoint)").map_err(|e| ck(e.to_string()))?;
        let meta: CheckpointMeta = serde_json::from_str(get("convnet")?).map_err(|e| ck(format!("bad metadata: {e}")))?;
        if meta.format != FORMAT {
            return Err(ck(format!("format \"{}\" is not \"{FORMAT}\"", meta.format)));
        }
        meta.normalization.validate(config.input[2]).map_err(|e| ck(format!("metadata: {e}")))?;
        let history = match info.get("history") {
            Some(text) => parse_metrics_csv(text, path).map_err(|e| match e {
                Error::Data { detail, .. } => ck(format!("metadata \"history\": {detail}")),
                other => other,
            })?,
            None => Vec::new(),
        };
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ck(format!("tensor {name} is {:?}, expected F32", view.dtype())));
            }
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Checkpoint { path: path.to_path_buf(), config, meta, history, tensors })
    }

    /// Builds the network of the checkpoint's config and loads its weights, checking that
    /// every parameter is present with the right shape and that the class names fit the
    /// model's outputs.
    pub fn network(&self) -> Result<Network> {
        // A header that claims a large model over a few stored values is refused before the
        // model's memory is allocated.
        let stored: u64 = self.tensors.iter().filter(|(k, _)| !k.starts_with("optim.")).map(|(_, (_, d))| d.len() as u64).sum();
        if let Some(needed) = self.config.estimated_params().filter(|&n| n > stored) {
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                detail: format!(
                    "the model in the metadata has {needed} parameters but the file holds {stored} values (truncated or edited?)"
                ),
            });
        }
        let mut net = Network::build(&self.config, 0).map_err(|e| Error::Checkpoint { path: self.path.clone(), detail: e.to_string() })?;
        if net.num_classes() != self.meta.class_names.len() {
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                detail: format!("the model outputs {} classes but the metadata names {}", net.num_classes(), self.meta.class_names.len()),
            });
        }
        self.load_weights_into(&mut net)?;
        Ok(net)
    }

    /// Checks that this checkpoint was written for `config`'s model (same input and layers),
    /// before its weights are loaded into a network built from `config` (`train --resume`).
    pub fn check_compatible(&self, config: &ModelConfig) -> Result<()> {
        let ck = |detail: String| Error::Checkpoint { path: self.path.clone(), detail };
        let theirs = &self.config;
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
        let names = net.param_names().to_vec();
        for (name, p) in names.iter().zip(net.params_mut()) {
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

    /// The optimiser state tensors (names without the "optim." prefix).
    pub fn optimizer_state(&self) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<_> =
            self.tensors.iter().filter_map(|(k, (_, d))| k.strip_prefix("optim.").map(|n| (n.to_string(), d.clone()))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
