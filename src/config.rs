//! A config file: the model (`model::ModelSpec`: name, input, init, layers) and the run
//! (`train::RunConfig`: data, train, optimizer, schedule, augment) in one small TOML file, as in
//! `configs/`. The two are kept apart in memory (the network holds only the model, as Caffe
//! keeps the net apart from the solver); the file keeps them side by side at the top level.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::data::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::model::spec::{Init, LayerConfig, ModelSpec};
use crate::optim::{OptimizerConfig, ParamGroup, ScheduleConfig};
use crate::train::run::{DataConfig, RunConfig, TrainConfig};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "ConfigFile", into = "ConfigFile")]
pub struct Config {
    pub model: ModelSpec,
    pub run: RunConfig,
}

/// The file's layout: every key at the top level, unknown ones refused (with the nearest known
/// key suggested).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    name: String,
    #[serde(default)]
    description: String,
    input: [usize; 3],
    #[serde(default)]
    init: Init,
    layers: Vec<LayerConfig>,
    data: DataConfig,
    train: TrainConfig,
    optimizer: OptimizerConfig,
    #[serde(default)]
    schedule: ScheduleConfig,
    #[serde(default)]
    augment: AugmentConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    param_groups: Vec<ParamGroup>,
}

impl From<ConfigFile> for Config {
    fn from(f: ConfigFile) -> Config {
        Config {
            model: ModelSpec { name: f.name, description: f.description, input: f.input, init: f.init, layers: f.layers },
            run: RunConfig {
                data: f.data,
                train: f.train,
                optimizer: f.optimizer,
                schedule: f.schedule,
                augment: f.augment,
                param_groups: f.param_groups,
            },
        }
    }
}

impl From<Config> for ConfigFile {
    fn from(c: Config) -> ConfigFile {
        let (ModelSpec { name, description, input, init, layers }, RunConfig { data, train, optimizer, schedule, augment, param_groups }) =
            (c.model, c.run);
        ConfigFile { name, description, input, init, layers, data, train, optimizer, schedule, augment, param_groups }
    }
}

impl Config {
    /// Parses a config from TOML text and validates it; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Config { file: file.into(), detail: describe_toml_error(text, &e) })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::from_toml(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# could not serialise the config: {e}\n"))
    }

    /// Every check of the run and of the model (its shapes walked layer by layer: see
    /// `ModelSpec::plan`); the error names `file`: "config FILE: layer 5 (dense): ...".
    pub fn validate(&self, file: &str) -> Result<()> {
        self.run.validate().map_err(|detail| Error::Config { file: file.into(), detail })?;
        self.model.validate().map_err(|e| match e {
            Error::Config { detail, .. } => Error::Config { file: file.into(), detail },
            other => Error::Config { file: file.into(), detail: other.to_string() },
        })
    }
}

/// A TOML or serde error on one line: "line 29: unknown field `filtrs`, expected one of
/// `filters`, ... (did you mean `filters`?)". toml's own text spans several lines (a snippet
/// with a caret), which does not fit a one-line error; an unknown key inside `[[layers]]` is
/// reported by toml at the table's header, so the line of the key itself is looked up.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    let hint = suggestion(&message).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
    let line = e.span().map(|span| {
        let start = span.start.min(text.len());
        let mut line = text.get(..start).map_or(0, |t| t.matches('\n').count()) + 1;
        if let Some(key) = message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
            // The first line from the span on that assigns the key.
            let found = text
                .lines()
                .enumerate()
                .skip(line - 1)
                .find(|(_, l)| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')));
            if let Some((i, _)) = found {
                line = i + 1;
            }
        }
        line
    });
    match line {
        Some(line) => format!("line {line}: {message}{hint}"),
        None => format!("{message}{hint}"),
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), the
/// expected name nearest to `x` by edit distance, if it is close enough to be a typo.
fn suggestion(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1).or_else(|| message.split("unknown variant `").nth(1))?;
    let (wrong, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let names = expected.split('`').skip(1).step_by(2);
    let (dist, best) = names.map(|n| (edit_distance(wrong, n), n)).min()?;
    (dist <= wrong.len().max(2) / 2 + 1).then(|| best.to_string())
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances_by_hand() {
        // kitten -> sitten -> sittin -> sitting: two substitutions and an insertion.
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2, "a deletion and an insertion");
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("abc", "ab"), 1, "a deletion at the end");
        assert_eq!(edit_distance("batch_size", "batchsize"), 1, "a deletion in the middle");
        assert_eq!(edit_distance("filters", "filters"), 0);
        assert_eq!(edit_distance("filtres", "filters"), 2, "a swap is two substitutions");
    }

    #[test]
    fn a_suggestion_needs_a_distance_of_at_most_half_the_word_plus_one() {
        // For a 7-letter word the bound is 7 / 2 + 1 = 4.
        let message = |wrong: &str, known: &str| format!("unknown field `{wrong}`, expected one of `{known}`, `zzzzzzzzzzzzzz`");
        assert_eq!(suggestion(&message("abcdefg", "abcwxyz")), Some("abcwxyz".into()), "distance 4");
        assert_eq!(suggestion(&message("abcdefg", "abvwxyz")), None, "distance 5");
        assert_eq!(suggestion("unknown variant `maxpool`, expected one of `conv2d`, `max_pool`"), Some("max_pool".into()));
        assert_eq!(suggestion("missing field `lr`"), None, "nothing to suggest from");
    }

    #[test]
    fn an_unknown_key_is_reported_on_its_own_line_even_first_in_its_table() {
        let text = "name = \"t\"\ninput = [4, 4, 1]\n[data]\ndataset = \"mnist\"\n[train]\nbatch_size = 1\nepochs = 1\n\
                    [optimizer]\nkind = \"sgd\"\nlr = 0.1\n[[layers]]\nfiltres = 2\ntype = \"conv2d\"\nkernel = 3\n";
        let err = Config::from_toml(text, "t.toml").expect_err("refused").to_string();
        assert!(err.contains("line 12: unknown field `filtres`"), "{err}");
        assert!(err.contains("did you mean `filters`?"), "{err}");
    }
}
