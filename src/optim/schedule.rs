//! Learning-rate schedules: the learning rate for each global step (0-based), from the base rate,
//! the steps per epoch and the number of epochs.
//!
//! ```text
//! warmup_steps = round(warmup_epochs * steps_per_epoch)
//! total_steps  = total_epochs * steps_per_epoch
//! epoch        = step / steps_per_epoch            (integer division)
//!
//! during warm-up (step < warmup_steps), for every kind:
//!   lr = base_lr * (step + 1) / warmup_steps       (linear ramp; the last warm-up step reaches base_lr)
//! after it:
//!   constant: lr = base_lr
//!   step:     lr = base_lr * gamma^(epoch / step_epochs)   (integer division: drops at epoch boundaries)
//!   cosine:   t  = (step - warmup_steps) / (total_steps - warmup_steps), clamped to [0, 1]
//!             lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2
//!   onecycle: (PyTorch's OneCycleLR with cosine annealing; no separate warm-up)
//!             start = base_lr / div_factor, end = start / final_div_factor,
//!             up = pct_start * total_steps - 1
//!             step <= up: lr = anneal(start, base_lr, step / up)
//!             after:      lr = anneal(base_lr, end, (step - up) / (total_steps - 1 - up))
//!             anneal(a, b, t) = b + (a - b) * (1 + cos(pi * t)) / 2
//!   triangle: (the fast CIFAR-10 recipe's; no separate warm-up)
//!             peak = round(peak_at * total_steps)
//!             step <= peak: lr = base_lr * (start_factor + (1 - start_factor) * step / peak)
//!             after:        lr = base_lr * (1 + (end_factor - 1) * (step - peak) / (total_steps - peak))
//!             (straight lines through start_factor at step 0, 1 at the peak and end_factor at
//!             step = total_steps, one past the last step, as the cosine)
//! ```
//!
//! The cosine starts at base_lr on the first step after warm-up and reaches min_lr at
//! `step = total_steps`, one past the last step (as PyTorch's `CosineAnnealingLR` with
//! `T_max = total_steps`), so no step is spent at exactly min_lr. The step decay counts epochs
//! from the start of training, warm-up included. `steps_per_epoch = 0` is treated as 1.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// The base rate throughout, after an optional warm-up.
    Constant {
        #[serde(default)]
        warmup_epochs: f32,
    },
    /// Multiply the rate by `gamma` every `step_epochs` epochs.
    Step {
        step_epochs: usize,
        gamma: f32,
        #[serde(default)]
        warmup_epochs: f32,
    },
    /// Half a cosine from the base rate down to `min_lr` over the steps after warm-up.
    Cosine {
        #[serde(default)]
        min_lr: f32,
        #[serde(default)]
        warmup_epochs: f32,
    },
    /// Up from base_lr / div_factor to base_lr over the first pct_start of training, then down
    /// to base_lr / div_factor / final_div_factor (the "one-cycle" policy).
    Onecycle {
        #[serde(default = "pct_start")]
        pct_start: f32,
        #[serde(default = "div_factor")]
        div_factor: f32,
        #[serde(default = "final_div_factor")]
        final_div_factor: f32,
    },
    /// Straight up from base_lr * start_factor to base_lr at peak_at of training, then
    /// straight down towards base_lr * end_factor (the fast CIFAR-10 recipe's defaults: 0.2,
    /// 0.23, 0.07).
    Triangle {
        #[serde(default = "triangle_start")]
        start_factor: f32,
        #[serde(default = "triangle_peak")]
        peak_at: f32,
        #[serde(default = "triangle_end")]
        end_factor: f32,
    },
}

fn triangle_start() -> f32 {
    0.2
}
fn triangle_peak() -> f32 {
    0.23
}
fn triangle_end() -> f32 {
    0.07
}

fn pct_start() -> f32 {
    0.25
}
fn div_factor() -> f32 {
    25.0
}
fn final_div_factor() -> f32 {
    1e4
}

/// Cosine interpolation from `a` (t = 0) to `b` (t = 1).
fn anneal(a: f64, b: f64, t: f64) -> f64 {
    b + (a - b) * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos()) / 2.0
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig::Constant { warmup_epochs: 0.0 }
    }
}

impl ScheduleConfig {
    /// The warm-up length in epochs (may be fractional).
    pub fn warmup_epochs(&self) -> f32 {
        match *self {
            ScheduleConfig::Constant { warmup_epochs }
            | ScheduleConfig::Step { warmup_epochs, .. }
            | ScheduleConfig::Cosine { warmup_epochs, .. } => warmup_epochs,
            ScheduleConfig::Onecycle { .. } | ScheduleConfig::Triangle { .. } => 0.0,
        }
    }

    /// Checks the settings; each error names the key and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| Err(Error::invalid("schedule", detail));
        let warmup = self.warmup_epochs();
        if !(warmup >= 0.0 && warmup.is_finite()) {
            return bad(format!("warmup_epochs must be non-negative, got {warmup}"));
        }
        match *self {
            ScheduleConfig::Constant { .. } => {}
            ScheduleConfig::Step { step_epochs, gamma, .. } => {
                if step_epochs == 0 {
                    return bad(format!("step_epochs must be at least 1, got {step_epochs}"));
                }
                // gamma > 1 would raise the rate at every step; almost certainly a typo.
                if !(gamma > 0.0 && gamma <= 1.0) {
                    return bad(format!("gamma must be in (0, 1], got {gamma}"));
                }
            }
            ScheduleConfig::Cosine { min_lr, .. } => {
                if !(min_lr >= 0.0 && min_lr.is_finite()) {
                    return bad(format!("min_lr must be non-negative, got {min_lr}"));
                }
            }
            ScheduleConfig::Onecycle { pct_start, div_factor, final_div_factor } => {
                if !(pct_start > 0.0 && pct_start < 1.0) {
                    return bad(format!("pct_start must be in (0, 1), got {pct_start}"));
                }
                if !(div_factor >= 1.0 && final_div_factor >= 1.0 && div_factor.is_finite() && final_div_factor.is_finite()) {
                    return bad(format!("div_factor and final_div_factor must be at least 1, got {div_factor} and {final_div_factor}"));
                }
            }
            ScheduleConfig::Triangle { start_factor, peak_at, end_factor } => {
                let unit = |v: f32| (0.0..=1.0).contains(&v);
                if !(unit(start_factor) && unit(peak_at) && unit(end_factor)) {
                    return bad(format!(
                        "start_factor, peak_at and end_factor must each be in [0, 1], got {start_factor}, {peak_at} and {end_factor}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The number of warm-up steps: `round(warmup_epochs * steps_per_epoch)`.
    pub fn warmup_steps(&self, steps_per_epoch: usize) -> usize {
        (self.warmup_epochs() as f64 * steps_per_epoch.max(1) as f64).round() as usize
    }

    /// The learning rate for global step `step` (0-based); see the module docs for the formulas.
    pub fn lr_at(&self, base_lr: f32, step: usize, steps_per_epoch: usize, total_epochs: usize) -> f32 {
        let steps_per_epoch = steps_per_epoch.max(1);
        let warmup_steps = self.warmup_steps(steps_per_epoch);
        // f64 throughout so that long runs (millions of steps) keep an exact ramp and cosine.
        let base = base_lr as f64;
        if step < warmup_steps {
            return (base * (step + 1) as f64 / warmup_steps as f64) as f32;
        }
        let lr = match *self {
            ScheduleConfig::Constant { .. } => base,
            ScheduleConfig::Step { step_epochs, gamma, .. } => {
                let epoch = step / steps_per_epoch;
                let drops = epoch / step_epochs.max(1);
                base * (gamma as f64).powi(drops.min(i32::MAX as usize) as i32)
            }
            ScheduleConfig::Cosine { min_lr, .. } => {
                let total_steps = total_epochs * steps_per_epoch;
                let span = total_steps.saturating_sub(warmup_steps);
                // No steps after warm-up (span 0) means the decay is already over.
                let t = if span == 0 { 1.0 } else { ((step - warmup_steps) as f64 / span as f64).min(1.0) };
                let min = min_lr as f64;
                min + (base - min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
            ScheduleConfig::Onecycle { pct_start, div_factor, final_div_factor } => {
                let total = (total_epochs * steps_per_epoch).max(2) as f64;
                let start = base / div_factor as f64;
                let end = start / final_div_factor as f64;
                let up = (pct_start as f64 * total - 1.0).max(1.0);
                let s = step as f64;
                if s <= up {
                    anneal(start, base, s / up)
                } else {
                    anneal(base, end, (s - up) / (total - 1.0 - up).max(1.0))
                }
            }
            ScheduleConfig::Triangle { start_factor, peak_at, end_factor } => {
                let total = (total_epochs * steps_per_epoch) as f64;
                let peak = (peak_at as f64 * total).round();
                let (s, start, end) = (step as f64, start_factor as f64, end_factor as f64);
                let factor = if s <= peak && peak > 0.0 {
                    start + (1.0 - start) * s / peak
                } else if total > peak {
                    1.0 + (end - 1.0) * ((s - peak) / (total - peak)).min(1.0)
                } else {
                    end
                };
                base * factor
            }
        };
        lr as f32
    }
}
