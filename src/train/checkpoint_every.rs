//! How often a run writes last.safetensors inside an epoch (`--checkpoint-every`), so that a
//! kill that no handler can catch (SIGKILL, a power cut, the out-of-memory killer) loses at
//! most that much work. The end of every epoch writes one as well, whatever this says.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `10m`, `30s`, `2h`, `500steps` or `0` (never inside an epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// Only at the end of an epoch (and on a graceful stop).
    Never,
    /// When this much time has passed since the last checkpoint.
    Time(Duration),
    /// After every this many training steps (counted over the whole run, so the positions do
    /// not depend on where a run was resumed).
    Steps(u64),
}

impl Default for CheckpointEvery {
    /// Five minutes: a checkpoint costs milliseconds (a few MB written and synced), five
    /// minutes of training on two cores is worth keeping.
    fn default() -> Self {
        CheckpointEvery::Time(Duration::from_secs(5 * 60))
    }
}

impl CheckpointEvery {
    /// Whether a checkpoint is due after the step with this (0-based, whole-run) index, the
    /// last checkpoint having been written `since` ago.
    pub fn is_due(&self, global_step: u64, since: Duration) -> bool {
        match *self {
            CheckpointEvery::Never => false,
            CheckpointEvery::Time(interval) => since >= interval,
            CheckpointEvery::Steps(k) => (global_step + 1).is_multiple_of(k),
        }
    }
}

impl FromStr for CheckpointEvery {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expected = "expected a duration such as 30s, 10m or 2h, a number of steps such as 500steps, or 0 for never";
        if text == "0" || text == "off" {
            return Ok(CheckpointEvery::Never);
        }
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| format!("\"{text}\": {expected}"))?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "step" | "steps" => {
                return if n == 0 { Ok(CheckpointEvery::Never) } else { Ok(CheckpointEvery::Steps(n)) };
            }
            "" => return Err(format!("\"{text}\": a number needs a unit (s, m, h or steps); {expected}")),
            _ => return Err(format!("\"{text}\": unknown unit \"{unit}\"; {expected}")),
        };
        match n.checked_mul(seconds) {
            Some(0) => Ok(CheckpointEvery::Never),
            Some(s) => Ok(CheckpointEvery::Time(Duration::from_secs(s))),
            None => Err(format!("\"{text}\": too long")),
        }
    }
}

impl fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CheckpointEvery::Never => write!(f, "0"),
            CheckpointEvery::Steps(k) => write!(f, "{k}steps"),
            CheckpointEvery::Time(d) => {
                let s = d.as_secs();
                if s % 3600 == 0 {
                    write!(f, "{}h", s / 3600)
                } else if s % 60 == 0 {
                    write!(f, "{}m", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CheckpointEvery::{self, *};
    use std::time::Duration;

    fn parse(text: &str) -> Result<CheckpointEvery, String> {
        text.parse()
    }

    #[test]
    fn durations_steps_and_zero_are_read_and_written_back() {
        assert_eq!(parse("30s"), Ok(Time(Duration::from_secs(30))));
        assert_eq!(parse("10m"), Ok(Time(Duration::from_secs(600))));
        assert_eq!(parse("2h"), Ok(Time(Duration::from_secs(7200))));
        assert_eq!(parse("500steps"), Ok(Steps(500)));
        assert_eq!(parse("1step"), Ok(Steps(1)));
        for never in ["0", "off", "0m", "0steps"] {
            assert_eq!(parse(never), Ok(Never), "{never}");
        }
        for text in ["30s", "10m", "2h", "500steps", "0", "90s"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        assert_eq!(CheckpointEvery::default(), Time(Duration::from_secs(300)));
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_that_work() {
        for (text, says) in [("10", "needs a unit"), ("10 min", "unknown unit \" min\""), ("m", "expected a duration"), ("-5s", "expected")]
        {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says) && err.contains(&format!("\"{text}\"")), "{text}: {err}");
        }
        assert!(parse("99999999999999999h").unwrap_err().contains("too long"));
    }

    #[test]
    fn a_checkpoint_is_due_by_time_or_by_whole_run_step() {
        let minute = Duration::from_secs(60);
        assert!(Time(minute).is_due(0, minute));
        assert!(!Time(minute).is_due(0, minute - Duration::from_millis(1)));
        // Steps count from 1: with 3steps, after steps 3, 6, 9 (indexes 2, 5, 8).
        let due: Vec<u64> = (0..10).filter(|&s| Steps(3).is_due(s, Duration::ZERO)).collect();
        assert_eq!(due, [2, 5, 8]);
        assert!(!Never.is_due(99, Duration::MAX));
    }
}
