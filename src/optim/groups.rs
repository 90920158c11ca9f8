//! Parameter groups: a config's `[[param_groups]]` tables give some parameters their own
//! learning-rate and weight-decay multipliers, switch weight decay on or off for them, or train
//! them for the first N epochs only (as PyTorch's optimiser param groups and `requires_grad`).
//!
//! ```toml
//! [[param_groups]]
//! layers = "batch_norm"          # a layer kind, or a parameter-name prefix such as "0.conv2d"
//! params = ["beta"]              # only these roles (weight, bias, gamma, beta); all if left out
//! lr_scale = 64.0                # this group's lr = the schedule's lr x 64
//! weight_decay_scale = 0.015625  # its weight decay = the optimiser's x 1/64
//! decay = true                   # decay these too (biases and norms are not decayed by default)
//! train_epochs = 3               # trained in epochs 1 to 3, frozen after
//! ```
//!
//! A parameter belongs to the first group that matches it; one that matches none keeps the
//! optimiser's own settings. A group that matches no parameter of the model is refused (a typo
//! would otherwise do nothing).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroup {
    /// A layer kind ("conv2d", "batch_norm", "dense", ...) or the start of parameter names
    /// ("0.conv2d", "4.residual"): see `model::plan` for the names.
    pub layers: String,
    /// Only parameters with these roles (the last part of the name: "weight", "bias",
    /// "gamma", "beta"); every role when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Multiplies the schedule's learning rate for these parameters.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub lr_scale: f32,
    /// Multiplies the optimiser's weight decay for these parameters.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight_decay_scale: f32,
    /// Whether weight decay applies to them; when left out, as everywhere: weights yes,
    /// biases and normalisation parameters no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<bool>,
    /// Trained in the first N epochs only, then frozen (left as they are, their optimiser state
    /// untouched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_epochs: Option<usize>,
}

/// How the optimiser treats one parameter in one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSettings {
    /// 0: frozen this epoch (not updated at all).
    pub lr_scale: f32,
    pub weight_decay_scale: f32,
    pub decay: bool,
}

impl ParamGroup {
    /// Whether the parameter `name` ("3.batch_norm.beta") belongs to this group.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.rsplit('.');
        let role = parts.next().unwrap_or("");
        let kind = parts.next().unwrap_or("");
        let layer_matches = kind == self.layers || name.strip_prefix(self.layers.as_str()).is_some_and(|rest| rest.starts_with('.'));
        layer_matches && (self.params.is_empty() || self.params.iter().any(|p| p == role))
    }

    /// Checks the values; the message names the group (1-based) and the key.
    pub fn validate(&self, index: usize) -> std::result::Result<(), String> {
        let at = format!("param_groups[{}]", index + 1);
        if self.layers.trim().is_empty() {
            return Err(format!("{at}.layers must name a layer kind or a parameter-name prefix, got \"{}\"", self.layers));
        }
        for (key, value) in [("lr_scale", self.lr_scale), ("weight_decay_scale", self.weight_decay_scale)] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(format!("{at}.{key} must be a non-negative number, got {value}"));
            }
        }
        Ok(())
    }
}

/// The settings of parameter `name` in epoch `epoch` (0-based), whose default decay is
/// `decay`: from the first group that matches it, or the optimiser's own.
pub fn settings_for(groups: &[ParamGroup], name: &str, decay: bool, epoch: usize) -> ParamSettings {
    match groups.iter().find(|g| g.matches(name)) {
        None => ParamSettings { lr_scale: 1.0, weight_decay_scale: 1.0, decay },
        Some(g) => {
            let frozen = g.train_epochs.is_some_and(|n| epoch >= n);
            ParamSettings {
                lr_scale: if frozen { 0.0 } else { g.lr_scale },
                weight_decay_scale: g.weight_decay_scale,
                decay: g.decay.unwrap_or(decay),
            }
        }
    }
}

/// Refuses a group that matches none of `names` (the model's trainable parameters).
pub fn check_groups_match<'a>(groups: &[ParamGroup], names: impl Iterator<Item = &'a str> + Clone) -> Result<()> {
    for (i, g) in groups.iter().enumerate() {
        if !names.clone().any(|n| g.matches(n)) {
            let known: Vec<&str> = names.clone().collect();
            return Err(Error::invalid(
                "param_groups",
                format!(
                    "group {} (layers = \"{}\", params = {:?}) matches no trainable parameter; the model's are {}",
                    i + 1,
                    g.layers,
                    g.params,
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(layers: &str, params: &[&str]) -> ParamGroup {
        ParamGroup {
            layers: layers.into(),
            params: params.iter().map(|s| s.to_string()).collect(),
            lr_scale: 1.0,
            weight_decay_scale: 1.0,
            decay: None,
            train_epochs: None,
        }
    }

    #[test]
    fn a_group_matches_by_layer_kind_or_name_prefix_and_by_role() {
        let bn = group("batch_norm", &[]);
        assert!(bn.matches("3.batch_norm.beta"));
        assert!(bn.matches("4.residual.1.batch_norm.gamma"));
        assert!(!bn.matches("0.conv2d.weight"));
        let first = group("0.conv2d", &["bias"]);
        assert!(first.matches("0.conv2d.bias"));
        assert!(!first.matches("0.conv2d.weight"), "another role");
        assert!(!first.matches("10.conv2d.bias"), "a prefix stops at a dot");
        let block = group("4", &[]);
        assert!(block.matches("4.residual.0.conv2d.weight"));
        assert!(!block.matches("41.conv2d.weight"));
        assert!(!group("residual", &[]).matches("4.residual"), "the kind is the second-last part");
    }

    #[test]
    fn the_first_matching_group_sets_scales_decay_and_freezing() {
        let mut a = group("batch_norm", &["beta"]);
        a.lr_scale = 64.0;
        a.weight_decay_scale = 0.5;
        a.decay = Some(true);
        let mut b = group("0.conv2d", &[]);
        b.train_epochs = Some(3);
        let mut c = group("conv2d", &[]);
        c.lr_scale = 2.0;
        let groups = [a, b, c];
        assert_eq!(
            settings_for(&groups, "2.batch_norm.beta", false, 0),
            ParamSettings { lr_scale: 64.0, weight_decay_scale: 0.5, decay: true }
        );
        assert_eq!(
            settings_for(&groups, "2.batch_norm.gamma", false, 0),
            ParamSettings { lr_scale: 1.0, weight_decay_scale: 1.0, decay: false }
        );
        // Group b comes before c: trained in epochs 0, 1, 2 (1 to 3), frozen from the fourth.
        assert_eq!(settings_for(&groups, "0.conv2d.bias", false, 2).lr_scale, 1.0);
        assert_eq!(settings_for(&groups, "0.conv2d.bias", false, 3).lr_scale, 0.0);
        assert_eq!(
            settings_for(&groups, "5.conv2d.weight", true, 7),
            ParamSettings { lr_scale: 2.0, weight_decay_scale: 1.0, decay: true }
        );
    }

    #[test]
    fn a_saved_group_leaves_out_the_defaults_and_reads_back_the_same() {
        let plain = group("dense", &[]);
        assert_eq!(toml::to_string(&plain).unwrap(), "layers = \"dense\"\n");
        let mut scaled = group("batch_norm", &["beta"]);
        scaled.lr_scale = 64.0;
        scaled.weight_decay_scale = 0.5;
        scaled.train_epochs = Some(3);
        let text = toml::to_string(&scaled).unwrap();
        for key in ["params = [\"beta\"]", "lr_scale = 64.0", "weight_decay_scale = 0.5", "train_epochs = 3"] {
            assert!(text.contains(key), "{key} in {text}");
        }
        assert!(!text.contains("decay ="), "{text}");
        assert_eq!(toml::from_str::<ParamGroup>(&text).unwrap(), scaled);
    }

    #[test]
    fn bad_groups_are_refused_by_name() {
        let mut g = group("dense", &[]);
        g.lr_scale = -1.0;
        assert!(g.validate(1).unwrap_err().contains("param_groups[2].lr_scale must be a non-negative number, got -1"));
        g.lr_scale = 1.0;
        g.weight_decay_scale = f32::NAN;
        assert!(g.validate(0).unwrap_err().contains("param_groups[1].weight_decay_scale"));
        assert!(group(" ", &[]).validate(0).unwrap_err().contains("param_groups[1].layers"));
        assert!(group("dense", &[]).validate(0).is_ok());
        let names = ["0.conv2d.weight", "0.conv2d.bias"];
        let err = check_groups_match(&[group("dense", &[])], names.iter().copied()).unwrap_err().to_string();
        assert!(err.contains("group 1 (layers = \"dense\"") && err.contains("0.conv2d.weight, 0.conv2d.bias"), "{err}");
        check_groups_match(&[group("conv2d", &["bias"])], names.iter().copied()).unwrap();
    }
}
