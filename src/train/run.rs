//! The run: how a model is trained, as a config file's `[data]`, `[train]`, `[optimizer]`,
//! `[schedule]` and `[augment]` tables hold it (the model itself is `model::ModelSpec`;
//! `crate::config::Config` is the whole file). A checkpoint carries it as JSON, so that a run
//! resumes with its own settings.

use serde::{Deserialize, Serialize};

use crate::data::augment::AugmentConfig;
use crate::ops::Precision;
use crate::optim::{LookaheadConfig, OptimizerConfig, ParamGroup, ScheduleConfig};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub train: TrainConfig,
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Per-group learning-rate and weight-decay multipliers and freezing (`optim::groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub param_groups: Vec<ParamGroup>,
}

/// Largest batch size.
pub const MAX_BATCH: usize = 1 << 20;

impl RunConfig {
    /// Checks the values that serde cannot: a batch size from 1 to [`MAX_BATCH`], label
    /// smoothing in [0, 1), a valid optimiser and schedule. The message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let eps = self.train.label_smoothing;
        if !(0.0..1.0).contains(&eps) {
            return Err(format!("train.label_smoothing must be in [0, 1), got {eps}"));
        }
        if self.train.batch_size == 0 {
            return Err("train.batch_size must be at least 1, got 0".into());
        }
        if self.train.batch_size > MAX_BATCH {
            return Err(format!("train.batch_size {} is over the limit of {MAX_BATCH}", self.train.batch_size));
        }
        self.optimizer.validate().map_err(|e| e.to_string())?;
        for (i, group) in self.param_groups.iter().enumerate() {
            group.validate(i)?;
        }
        if let Some(lookahead) = &self.train.lookahead {
            lookahead.validate()?;
        }
        self.augment.validate()?;
        self.schedule.validate().map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Where the data set lives; each kind has a default (see `DatasetKind::default_path`).
    #[serde(default)]
    pub path: Option<String>,
    /// Examples taken from the end of the training set for validation.
    #[serde(default)]
    pub validation: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// CIFAR-10, binary version.
    Cifar10,
    /// Fashion-MNIST, IDX files.
    FashionMnist,
    /// MNIST digits, IDX files.
    Mnist,
    /// One sub-folder per class of PNG/JPEG images, with a `test` and a `train` folder.
    ImageFolder,
}

impl DatasetKind {
    pub fn default_path(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "../shared/data/cifar-10-batches-bin",
            DatasetKind::FashionMnist => "/usr/share/datasets/fashion-mnist",
            DatasetKind::Mnist => "/usr/share/datasets/mnist",
            DatasetKind::ImageFolder => "data/images",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub epochs: usize,
    #[serde(default)]
    pub seed: u64,
    /// Label smoothing eps in [0, 1): targets (1 - eps) onehot + eps / classes.
    #[serde(default)]
    pub label_smoothing: f32,
    /// Evaluate on each image and its mirror image, averaging the probabilities.
    #[serde(default)]
    pub tta_flip: bool,
    /// Test-time translation by this many pixels: the image shifted (reflect padding) up-left
    /// and down-right is classified too (each with its mirror under `tta_flip`), weighted 1/4
    /// each against 1/2 for the unshifted views (0: off). See `train::evaluate`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tta_translate: usize,
    /// Test-time augmentation only in the final test evaluation (the one printed at the end and
    /// recorded in summary.json), not in the per-epoch evaluations of metrics.csv: views cost a
    /// forward pass each.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tta_final_only: bool,
    /// Lookahead weight averaging (`optim::lookahead`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead: Option<LookaheadConfig>,
    /// The precision of the convolutions' and dense layers' products: "f32" (the default) or
    /// "bf16" (bfloat16 inputs, float32 accumulation and master weights; `ops::precision`), its
    /// convolutions by the family that suits this CPU, or "bf16-tiles" / "bf16-winograd" to
    /// pick the family (the same bits on every machine).
    /// Used by training and its evaluations, and by `convnet bench`, `eval` and `predict`
    /// unless their `--precision` says otherwise.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: Precision,
}

fn is_f32(p: &Precision) -> bool {
    *p == Precision::F32
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::MAX_BATCH;
    use crate::Config;

    #[test]
    fn the_batch_size_may_reach_its_limit_and_not_pass_it() {
        let config = |batch: usize| {
            let text = format!(
                "name = \"b\"\ninput = [2, 2, 1]\n[data]\ndataset = \"mnist\"\n[train]\nbatch_size = {batch}\nepochs = 1\n[optimizer]\nkind = \"sgd\"\nlr = 0.1\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n"
            );
            Config::from_toml(&text, "b.toml")
        };
        config(MAX_BATCH).unwrap();
        let err = config(MAX_BATCH + 1).expect_err("over the limit").to_string();
        assert!(err.contains(&format!("train.batch_size {} is over the limit of {MAX_BATCH}", MAX_BATCH + 1)), "{err}");
    }
}
