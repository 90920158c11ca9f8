//! Lookahead weight averaging, as the fast CIFAR-10 recipe uses it (airbench, arXiv
//! 2404.00498): every `every` steps from epoch `from_epoch` on, an average of the weights is
//! pulled towards the current ones and the network is set back to the average:
//!
//! ```text
//! decay_t = decay * (t / T)^power        t: steps done, T: steps of the whole run
//! avg     = avg + (1 - decay_t) (w - avg)       (w: every parameter and batch-norm statistic)
//! w       = avg
//! ```
//!
//! Early on decay_t is near 0 (avg follows w); towards the end it nears `decay`, so the last
//! steps are averaged over. At the end of training the network takes the average (`finish`),
//! and every evaluation in between uses it (`swap` in, evaluate, `swap` back). The average is
//! saved in last.safetensors as "lookahead.<param name>", so a resumed run continues exactly.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::Param;
use crate::tensor::Tensor;

fn every() -> usize {
    5
}
fn decay() -> f32 {
    // 0.95^5: a decay of 0.95 per step, applied every 5 steps.
    0.773_780_9
}
fn power() -> f32 {
    3.0
}
fn from_epoch() -> usize {
    1
}

/// `[train.lookahead]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookaheadConfig {
    /// Steps between two averagings.
    #[serde(default = "every")]
    pub every: usize,
    /// The largest decay, reached at the end of training.
    #[serde(default = "decay")]
    pub decay: f32,
    /// How the decay ramps up: decay x (t / T)^power.
    #[serde(default = "power")]
    pub power: f32,
    /// The first epoch (1-based) that averages; the average starts as that epoch's first weights.
    #[serde(default = "from_epoch")]
    pub from_epoch: usize,
}

impl LookaheadConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.every == 0 {
            return Err("train.lookahead.every must be at least 1, got 0".into());
        }
        if !(0.0..=1.0).contains(&self.decay) {
            return Err(format!("train.lookahead.decay must be in [0, 1], got {}", self.decay));
        }
        if !(self.power >= 0.0 && self.power.is_finite()) {
            return Err(format!("train.lookahead.power must be a non-negative number, got {}", self.power));
        }
        if self.from_epoch == 0 {
            return Err("train.lookahead.from_epoch counts from 1, got 0".into());
        }
        Ok(())
    }

    /// The decay after `t` of `total` steps.
    pub fn decay_at(&self, t: u64, total: u64) -> f32 {
        let fraction = t as f64 / total.max(1) as f64;
        (self.decay as f64 * fraction.powf(self.power as f64)) as f32
    }
}

/// The running average: one tensor per parameter, in `Network::params` order.
#[derive(Clone, Debug, Default)]
pub struct Lookahead {
    average: Option<Vec<Tensor>>,
}

/// The prefix of the average's tensors in a checkpoint.
pub const PREFIX: &str = "lookahead.";

impl Lookahead {
    /// Whether the average has started.
    pub fn is_started(&self) -> bool {
        self.average.is_some()
    }

    /// Starts the average from the current weights, unless it has started.
    pub fn start(&mut self, params: &[&Param]) {
        if self.average.is_none() {
            self.average = Some(params.iter().map(|p| p.value.clone()).collect());
        }
    }

    /// One averaging with decay `decay`: avg += (1 - decay)(w - avg), then w = avg.
    pub fn update(&mut self, params: &mut [&mut Param], decay: f32) -> Result<()> {
        let Some(average) = &mut self.average else { return Ok(()) };
        check_layout(average, params.iter().map(|p| &**p))?;
        let weight = 1.0 - decay;
        for (avg, p) in average.iter_mut().zip(params.iter_mut()) {
            for (a, w) in avg.data_mut().iter_mut().zip(p.value.data_mut().iter_mut()) {
                *a += weight * (*w - *a);
                *w = *a;
            }
        }
        Ok(())
    }

    /// Exchanges the weights and the average (twice: back as they were). Nothing happens
    /// before the average has started.
    pub fn swap(&mut self, params: &mut [&mut Param]) -> Result<()> {
        let Some(average) = &mut self.average else { return Ok(()) };
        check_layout(average, params.iter().map(|p| &**p))?;
        for (avg, p) in average.iter_mut().zip(params.iter_mut()) {
            std::mem::swap(avg, &mut p.value);
        }
        Ok(())
    }

    /// The average as checkpoint tensors ("lookahead.<param name>"); empty before it starts.
    pub fn state(&self, params: &[&Param]) -> Vec<(String, Tensor)> {
        let Some(average) = &self.average else { return Vec::new() };
        params.iter().zip(average).map(|(p, a)| (format!("{PREFIX}{}", p.name), a.clone())).collect()
    }

    /// Restores the average from checkpoint tensors: all of them or none (not started).
    pub fn load_state(&mut self, params: &[&Param], mut get: impl FnMut(&str) -> Option<Tensor>) -> Result<()> {
        let found: Vec<Option<Tensor>> = params.iter().map(|p| get(&format!("{PREFIX}{}", p.name))).collect();
        if found.iter().all(Option::is_none) {
            self.average = None;
            return Ok(());
        }
        let mut average = Vec::with_capacity(params.len());
        for (p, t) in params.iter().zip(found) {
            let t = t.ok_or_else(|| Error::invalid("lookahead", format!("the average of {} is missing", p.name)))?;
            if t.shape() != p.value.shape() {
                return Err(Error::shape("lookahead", format!("{:?} for {}", p.value.shape(), p.name), format!("{:?}", t.shape())));
            }
            average.push(t);
        }
        self.average = Some(average);
        Ok(())
    }
}

fn check_layout<'a>(average: &[Tensor], params: impl ExactSizeIterator<Item = &'a Param>) -> Result<()> {
    if average.len() != params.len() {
        return Err(Error::shape("lookahead", format!("{} parameters", average.len()), format!("{}", params.len())));
    }
    for (a, p) in average.iter().zip(params) {
        if a.shape() != p.value.shape() {
            return Err(Error::shape("lookahead", format!("{:?} for {}", a.shape(), p.name), format!("{:?}", p.value.shape())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, values: &[f32]) -> Param {
        Param::new(name, Tensor::from_vec(&[values.len()], values.to_vec()).unwrap(), 0.0, true)
    }

    #[test]
    fn the_arithmetic_of_two_averagings_by_hand() {
        let mut w = [param("w", &[1.0, -2.0]), param("b", &[4.0])];
        let mut la = Lookahead::default();
        la.start(&w.iter().collect::<Vec<_>>());
        // The weights move; the average pulls them back: avg = 1 + 0.25 (3 - 1) = 1.5, ...
        w[0].value.data_mut().copy_from_slice(&[3.0, 2.0]);
        w[1].value.data_mut()[0] = 0.0;
        la.update(&mut w.iter_mut().collect::<Vec<_>>(), 0.75).unwrap();
        assert_eq!(w[0].value.data(), &[1.5, -1.0]);
        assert_eq!(w[1].value.data(), &[3.0]);
        // Decay 0: the average jumps to the weights. Decay 1: the weights return to it.
        w[0].value.data_mut()[0] = 7.0;
        la.update(&mut w.iter_mut().collect::<Vec<_>>(), 0.0).unwrap();
        assert_eq!(w[0].value.data(), &[7.0, -1.0]);
        w[0].value.data_mut()[0] = 9.0;
        la.update(&mut w.iter_mut().collect::<Vec<_>>(), 1.0).unwrap();
        assert_eq!(w[0].value.data(), &[7.0, -1.0]);
    }

    #[test]
    fn swap_exchanges_and_state_round_trips() {
        let mut w = [param("w", &[1.0])];
        let mut la = Lookahead::default();
        la.swap(&mut w.iter_mut().collect::<Vec<_>>()).unwrap();
        assert_eq!(w[0].value.data(), &[1.0], "nothing to swap before the start");
        assert!(la.state(&w.iter().collect::<Vec<_>>()).is_empty());
        la.start(&w.iter().collect::<Vec<_>>());
        w[0].value.data_mut()[0] = 5.0;
        la.swap(&mut w.iter_mut().collect::<Vec<_>>()).unwrap();
        assert_eq!(w[0].value.data(), &[1.0]);
        la.swap(&mut w.iter_mut().collect::<Vec<_>>()).unwrap();
        assert_eq!(w[0].value.data(), &[5.0]);
        let state = la.state(&w.iter().collect::<Vec<_>>());
        assert_eq!(state.len(), 1);
        assert_eq!((state[0].0.as_str(), state[0].1.data()), ("lookahead.w", &[1.0][..]));
        let mut back = Lookahead::default();
        back.load_state(&w.iter().collect::<Vec<_>>(), |name| state.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())).unwrap();
        assert!(back.is_started());
        back.swap(&mut w.iter_mut().collect::<Vec<_>>()).unwrap();
        assert_eq!(w[0].value.data(), &[1.0]);
        let mut none = Lookahead::default();
        none.load_state(&w.iter().collect::<Vec<_>>(), |_| None).unwrap();
        assert!(!none.is_started());
        let wrong = Tensor::from_vec(&[2], vec![0.0, 0.0]).unwrap();
        let err = none.load_state(&w.iter().collect::<Vec<_>>(), |_| Some(wrong.clone())).unwrap_err().to_string();
        assert!(err.contains("lookahead"), "{err}");
    }

    #[test]
    fn an_empty_table_takes_the_recipes_values() {
        let cfg: LookaheadConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, LookaheadConfig { every: 5, decay: 0.773_780_9, power: 3.0, from_epoch: 1 });
    }

    #[test]
    fn update_and_swap_refuse_parameters_that_do_not_match_the_average() {
        let w = [param("w", &[1.0, 2.0])];
        let mut la = Lookahead::default();
        la.start(&w.iter().collect::<Vec<_>>());
        let mut other_shape = [param("w", &[1.0])];
        let mut more = [param("w", &[1.0, 2.0]), param("b", &[3.0])];
        for params in [&mut other_shape[..], &mut more[..]] {
            let mut params: Vec<&mut Param> = params.iter_mut().collect();
            let err = la.update(&mut params, 0.5).unwrap_err().to_string();
            assert!(err.contains("lookahead"), "{err}");
            assert!(la.swap(&mut params).is_err());
        }
        assert_eq!(other_shape[0].value.data(), &[1.0], "nothing written on refusal");
    }

    #[test]
    fn the_decay_ramps_as_the_cube_of_progress() {
        let cfg = LookaheadConfig { every: 5, decay: 0.8, power: 3.0, from_epoch: 3 };
        assert_eq!(cfg.decay_at(0, 100), 0.0);
        assert!((cfg.decay_at(50, 100) - 0.1).abs() < 1e-7);
        assert!((cfg.decay_at(100, 100) - 0.8).abs() < 1e-7);
        assert!((decay() - 0.95f32.powi(5)).abs() < 1e-7);
        assert!(cfg.validate().is_ok());
        assert!(LookaheadConfig { every: 0, ..cfg.clone() }.validate().unwrap_err().contains("every"));
        assert!(LookaheadConfig { decay: 1.5, ..cfg.clone() }.validate().unwrap_err().contains("decay"));
        assert!(LookaheadConfig { power: -1.0, ..cfg.clone() }.validate().unwrap_err().contains("power"));
        assert!(LookaheadConfig { from_epoch: 0, ..cfg }.validate().unwrap_err().contains("from_epoch"));
    }
}
