//! Checkpoints: one safetensors file holds everything needed to evaluate, predict or resume.
//!
//! Tensors: every parameter as "<layer index>.<kind>.<weight|bias>" (shapes as in the model),
//! and the optimiser state as "optim.<param>.<m|v|momentum>".
//! Metadata: "config" (the model config, JSON) and "convnet" (class names, normalisation,
//! epochs done, optimiser step, seed, best validation accuracy; JSON).
//! Written to a temporary file in the same folder, fsync'd, then renamed over the old one, so a
//! crash leaves either the old checkpoint or the new one, never half of one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::model::{ModelConfig, Network};
use crate::optim::Optimizer;
use crate::tensor::Tensor;

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
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `net` (and the optimiser state, if given) to `path` atomically.
pub fn save_checkpoint(path: &Path, net: &Network, optimizer: Option<&Optimizer>, meta: &CheckpointMeta) -> Result<()> {
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
    let bytes = safetensors::serialize(views, &Some(info)).map_err(|e| ck(format!("cannot serialise: {e:?}")))?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let ck = |detail: String| Error::Checkpoint { path: path.to_path_buf(), detail };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ck(format!("not a valid safetensors file ({e:?})")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| ck(format!("unreadable header ({e:?})")))?;
        let info = header.metadata().as_ref().ok_or_else(|| ck("no convnet metadata (not written by convnet?)".into()))?;
        let get = |key: &str| info.get(key).ok_or_else(|| ck(format!("metadata has no \"{key}\" entry")));
        let config: ModelConfig = serde_json::from_str(get("config")?).map_err(|e| ck(format!("bad config in metadata: {e}")))?;
        let meta: CheckpointMeta = serde_json::from_str(get("convnet")?).map_err(|e| ck(format!("bad metadata: {e}")))?;
        if meta.format != FORMAT {
            return Err(ck(format!("format \"{}\" is not \"{FORMAT}\"", meta.format)));
        }
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ck(format!("tensor {name} is {:?}, expected F32", view.dtype())));
            }
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Checkpoint { path: path.to_path_buf(), config, meta, tensors })
    }

    /// Builds the network of the checkpoint's config and loads its weights, checking that
    /// every parameter is present with the right shape.
    pub fn network(&self) -> Result<Network> {
        let mut net = Network::build(&self.config, 0).map_err(|e| Error::Checkpoint { path: self.path.clone(), detail: e.to_string() })?;
        self.load_weights_into(&mut net)?;
        Ok(net)
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
        let mut v: Vec<_> = self
            .tensors
            .iter()
            .filter_map(|(k, (_, d))| k.strip_prefix("optim.").map(|n| (n.to_string(), d.clone())))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
