//! Optimisers and learning-rate schedules.
//!
//! `OptimizerConfig` is the `[optimizer]` table of a training config; `Optimizer` applies it. Each
//! step the model passes its parameters as a list of `Param` (always the same list, in the same
//! order) and the learning rate the schedule gives for that step:
//!
//! ```text
//! sgd:   v = mu * v + g;  w -= lr * (nesterov ? g + mu * v : v)      (see `sgd`)
//! adam:  m, v moments with bias correction;  w -= lr * m_hat / (sqrt(v_hat) + eps)   (see `adam`)
//! adamw: as adam, after w *= 1 - lr * wd on decay = true params
//! ```
//!
//! The per-parameter state (velocity or moments) is created on the first step, sized from the
//! params. `state()` / `load_state()` save and restore it together with the step count, exactly,
//! so that a run resumed from a checkpoint produces bit-identical weights to one never stopped.

pub mod adam;
pub mod groups;
pub mod lookahead;
pub mod param;
pub mod schedule;
pub mod sgd;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use adam::Adam;
pub use groups::{ParamGroup, ParamSettings};
pub use lookahead::{Lookahead, LookaheadConfig};
pub use param::Param;
pub use schedule::ScheduleConfig;
pub use sgd::Sgd;

fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_eps() -> f32 {
    1e-8
}
fn default_adamw_decay() -> f32 {
    0.01
}

/// The optimiser settings, as written in a config file (`kind = "sgd" | "adam" | "adamw"`).
/// Defaults are PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    Sgd {
        lr: f32,
        #[serde(default)]
        momentum: f32,
        #[serde(default)]
        nesterov: bool,
        /// Coupled: added to the gradient as wd * w.
        #[serde(default)]
        weight_decay: f32,
    },
    Adam {
        lr: f32,
        #[serde(default = "default_beta1")]
        beta1: f32,
        #[serde(default = "default_beta2")]
        beta2: f32,
        #[serde(default = "default_eps")]
        eps: f32,
        /// Coupled: added to the gradient as wd * w.
        #[serde(default)]
        weight_decay: f32,
    },
    Adamw {
        lr: f32,
        #[serde(default = "default_beta1")]
        beta1: f32,
        #[serde(default = "default_beta2")]
        beta2: f32,
        #[serde(default = "default_eps")]
        eps: f32,
        /// Decoupled: the weights shrink by a factor 1 - lr * wd each step.
        #[serde(default = "default_adamw_decay")]
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// The base learning rate (the schedule scales it).
    pub fn lr(&self) -> f32 {
        match *self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } | OptimizerConfig::Adamw { lr, .. } => lr,
        }
    }

    /// The same settings with another base learning rate (e.g. from a command-line override).
    pub fn with_lr(mut self, new_lr: f32) -> Self {
        match &mut self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } | OptimizerConfig::Adamw { lr, .. } => *lr = new_lr,
        }
        self
    }

    /// Checks the settings; each error names the key and its value, e.g.
    /// "optimizer: lr must be positive, got -0.1".
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| Err(Error::invalid("optimizer", detail));
        // Checks are written so that NaN fails them: NaN compares false with everything.
        let lr = self.lr();
        if lr.is_nan() || lr <= 0.0 {
            return bad(format!("lr must be positive, got {lr}"));
        }
        if !lr.is_finite() {
            return bad(format!("lr must be finite, got {lr}"));
        }
        let weight_decay = match *self {
            OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => {
                if !(0.0..1.0).contains(&momentum) {
                    return bad(format!("momentum must be in [0, 1), got {momentum}"));
                }
                if nesterov && momentum == 0.0 {
                    return bad(format!("nesterov requires momentum > 0, got momentum {momentum}"));
                }
                weight_decay
            }
            OptimizerConfig::Adam { beta1, beta2, eps, weight_decay, .. }
            | OptimizerConfig::Adamw { beta1, beta2, eps, weight_decay, .. } => {
                for (key, beta) in [("beta1", beta1), ("beta2", beta2)] {
                    if !(0.0..1.0).contains(&beta) {
                        return bad(format!("{key} must be in [0, 1), got {beta}"));
                    }
                }
                if !(eps > 0.0 && eps.is_finite()) {
                    return bad(format!("eps must be positive, got {eps}"));
                }
                weight_decay
            }
        };
        if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
            return bad(format!("weight_decay must be non-negative, got {weight_decay}"));
        }
        Ok(())
    }
}

/// The update rule a config selects.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Sgd(Sgd),
    Adam(Adam),
}

impl Rule {
    fn from_config(cfg: &OptimizerConfig) -> Rule {
        match *cfg {
            OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => Rule::Sgd(Sgd { momentum, nesterov, weight_decay }),
            OptimizerConfig::Adam { beta1, beta2, eps, weight_decay, .. } => {
                Rule::Adam(Adam { beta1, beta2, eps, weight_decay, decoupled: false })
            }
            OptimizerConfig::Adamw { beta1, beta2, eps, weight_decay, .. } => {
                Rule::Adam(Adam { beta1, beta2, eps, weight_decay, decoupled: true })
            }
        }
    }

    /// The same rule with its weight decay multiplied by `scale` (a param group's
    /// `weight_decay_scale`). x * 1.0 is x exactly, so no group is bit-identical to none.
    fn with_decay_scaled(self, scale: f32) -> Rule {
        match self {
            Rule::Sgd(s) => Rule::Sgd(Sgd { weight_decay: s.weight_decay * scale, ..s }),
            Rule::Adam(a) => Rule::Adam(Adam { weight_decay: a.weight_decay * scale, ..a }),
        }
    }

    /// The state buffers kept per parameter, as suffixes of their checkpoint names.
    fn buffers(&self) -> &'static [&'static str] {
        match self {
            Rule::Sgd(s) if s.has_momentum() => &["momentum"],
            Rule::Sgd(_) => &[],
            Rule::Adam(_) => &["m", "v"],
        }
    }
}

/// The state of one parameter: its name and size (to check that later steps pass the same
/// parameter) and one buffer per `Rule::buffers` entry, in that order.
#[derive(Clone)]
struct Slot {
    name: String,
    len: usize,
    buffers: Vec<Vec<f32>>,
}

/// An optimiser: the update rule, the number of steps taken and the per-parameter state.
#[derive(Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    rule: Rule,
    steps: u64,
    /// None until the first step (or after loading a step-0 state): the layout is not known yet.
    slots: Option<Vec<Slot>>,
}

impl std::fmt::Debug for Optimizer {
    // The buffers can hold millions of values; show their shape, not their contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer")
            .field("config", &self.config)
            .field("steps", &self.steps)
            .field("params", &self.slots.as_ref().map(Vec::len))
            .finish()
    }
}

impl Optimizer {
    /// An optimiser with no state yet; fails if the config does not validate.
    pub fn new(config: OptimizerConfig) -> Result<Optimizer> {
        config.validate()?;
        let rule = Rule::from_config(&config);
        Ok(Optimizer { config, rule, steps: 0, slots: None })
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The number of successful `step` calls, including those restored by `load_state`.
    pub fn steps_taken(&self) -> u64 {
        self.steps
    }

    /// Updates every parameter once at learning rate `lr` (from the schedule, not the config, so
    /// the schedule is in control). The first call sizes the state from `params`; later calls must
    /// pass the same parameters, in the same order, with the same sizes. On error nothing changes.
    pub fn step(&mut self, params: &mut [Param], lr: f32) -> Result<()> {
        // 0 is allowed: a cosine schedule with min_lr = 0 ends there.
        if !(lr >= 0.0 && lr.is_finite()) {
            return Err(Error::invalid("optimizer", format!("step: lr must be non-negative and finite, got {lr}")));
        }
        for p in params.iter() {
            if p.value.len() != p.grad.len() {
                return Err(Error::shape(
                    "optimizer",
                    format!("gradient of `{}` with {} values", p.name, p.value.len()),
                    format!("{} values", p.grad.len()),
                ));
            }
        }
        let layout: Vec<(&str, usize)> = params.iter().map(|p| (p.name, p.value.len())).collect();
        match &self.slots {
            Some(slots) => check_layout(slots, &layout)?,
            None => {
                check_unique(layout.iter().map(|&(name, _)| name))?;
                let n_buffers = self.rule.buffers().len();
                let slots = layout
                    .iter()
                    .map(|&(name, len)| Slot { name: name.to_string(), len, buffers: vec![vec![0.0; len]; n_buffers] })
                    .collect();
                self.slots = Some(slots);
            }
        }
        let slots = self.slots.as_mut().expect("state was created above");

        let t = self.steps + 1;
        for (p, slot) in params.iter_mut().zip(slots.iter_mut()) {
            // A frozen parameter is skipped, as PyTorch skips one without a gradient.
            if p.lr_scale == 0.0 {
                continue;
            }
            let lr = lr * p.lr_scale;
            match (&self.rule.with_decay_scaled(p.weight_decay_scale), slot.buffers.as_mut_slice()) {
                (Rule::Sgd(sgd), []) => sgd.update(p, &mut [], lr),
                (Rule::Sgd(sgd), [velocity]) => sgd.update(p, velocity, lr),
                (Rule::Adam(adam), [m, v]) => adam.update(p, m, v, t, lr),
                _ => unreachable!("slots always hold the buffers their rule names"),
            }
        }
        self.steps = t;
        Ok(())
    }

    /// The state to save in a checkpoint, in parameter order: "<param name>.momentum" for SGD with
    /// momentum, "<param name>.m" and "<param name>.v" for Adam(W). Empty before the first step
    /// (and always for SGD without momentum). Save `steps_taken()` beside it.
    pub fn state(&self) -> Vec<(String, Vec<f32>)> {
        let names = self.rule.buffers();
        let Some(slots) = &self.slots else { return Vec::new() };
        slots
            .iter()
            .flat_map(|slot| names.iter().zip(&slot.buffers).map(|(suffix, buf)| (format!("{}.{suffix}", slot.name), buf.clone())))
            .collect()
    }

    /// Restores state saved by `state()` and `steps_taken()`. `params` is the model's parameter
    /// list as (name, number of values), in the order `step` will receive them. Every tensor the
    /// rule needs must be present with the right size, and no others (a tensor left over usually
    /// means the checkpoint was saved with another optimiser). On error nothing changes.
    pub fn load_state(&mut self, step: u64, tensors: Vec<(String, Vec<f32>)>, params: &[(String, usize)]) -> Result<()> {
        let op = "optimizer state";
        check_unique(params.iter().map(|(name, _)| name.as_str()))?;

        let mut by_name: HashMap<String, Vec<f32>> = HashMap::with_capacity(tensors.len());
        for (name, data) in tensors {
            if by_name.contains_key(&name) {
                return Err(Error::invalid(op, format!("tensor `{name}` appears twice")));
            }
            by_name.insert(name, data);
        }

        // Step 0: nothing has been learned; the state is created on the next step as usual.
        if step == 0 {
            if let Some(name) = sorted_keys(&by_name).first() {
                return Err(Error::invalid(op, format!("step count is 0 but tensor `{name}` is present")));
            }
            self.steps = 0;
            self.slots = None;
            return Ok(());
        }

        let mut slots = Vec::with_capacity(params.len());
        for (name, len) in params {
            let mut buffers = Vec::with_capacity(self.rule.buffers().len());
            for suffix in self.rule.buffers() {
                let key = format!("{name}.{suffix}");
                let Some(data) = by_name.remove(&key) else {
                    return Err(Error::invalid(op, format!("missing tensor `{key}`")));
                };
                if data.len() != *len {
                    return Err(Error::shape(op, format!("`{key}` with {len} values"), format!("{} values", data.len())));
                }
                buffers.push(data);
            }
            slots.push(Slot { name: name.clone(), len: *len, buffers });
        }
        let extra = sorted_keys(&by_name);
        if !extra.is_empty() {
            return Err(Error::invalid(
                op,
                format!(
                    "unexpected tensor(s) {} for a {} optimiser (saved with another optimiser or model?)",
                    extra.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
                    self.kind_name()
                ),
            ));
        }

        self.steps = step;
        self.slots = Some(slots);
        Ok(())
    }

    fn kind_name(&self) -> &'static str {
        match self.config {
            OptimizerConfig::Sgd { .. } => "sgd",
            OptimizerConfig::Adam { .. } => "adam",
            OptimizerConfig::Adamw { .. } => "adamw",
        }
    }
}

/// Checks that a step's parameters match the ones the state was built for.
fn check_layout(slots: &[Slot], layout: &[(&str, usize)]) -> Result<()> {
    if slots.len() != layout.len() {
        return Err(Error::shape("optimizer", format!("{} parameters (as on earlier steps)", slots.len()), format!("{}", layout.len())));
    }
    for (i, (slot, &(name, len))) in slots.iter().zip(layout).enumerate() {
        if slot.name != name {
            return Err(Error::invalid(
                "optimizer",
                format!("parameter {i} is `{name}` but was `{}` on earlier steps; pass the same list in the same order", slot.name),
            ));
        }
        if slot.len != len {
            return Err(Error::shape(
                "optimizer",
                format!("`{name}` with {} values (as on earlier steps)", slot.len),
                format!("{len} values"),
            ));
        }
    }
    Ok(())
}

/// Parameter names label the saved state, so two parameters may not share one.
fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(Error::invalid("optimizer", format!("two parameters are named `{name}`")));
        }
    }
    Ok(())
}

fn sorted_keys(map: &HashMap<String, Vec<f32>>) -> Vec<&str> {
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}
