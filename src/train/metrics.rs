//! Per-epoch metrics and the run folder's metrics.csv.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::write_atomically;

#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub val_loss: f32,
    pub val_accuracy: f32,
    pub test_loss: f32,
    pub test_accuracy: f32,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
    /// Wall time of the training steps (evaluation excluded).
    pub seconds: f32,
    pub images_per_second: f32,
}

pub const CSV_HEADER: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second";

impl EpochMetrics {
    pub fn csv_row(&self) -> String {
        format!(
            // Shortest round-trip formatting: a resumed run reads back exactly what it wrote.
            "{},{},{},{},{},{},{},{:e},{:.3},{:.1}",
            self.epoch,
            self.train_loss,
            self.train_accuracy,
            self.val_loss,
            self.val_accuracy,
            self.test_loss,
            self.test_accuracy,
            self.lr,
            self.seconds,
            self.images_per_second
        )
    }

    pub fn from_csv_row(row: &str) -> Option<EpochMetrics> {
        let f: Vec<&str> = row.trim().split(',').collect();
        if f.len() != 10 {
            return None;
        }
        let p = |i: usize| f[i].parse::<f32>().ok();
        Some(EpochMetrics {
            epoch: f[0].parse().ok()?,
            train_loss: p(1)?,
            train_accuracy: p(2)?,
            val_loss: p(3)?,
            val_accuracy: p(4)?,
            test_loss: p(5)?,
            test_accuracy: p(6)?,
            lr: p(7)?,
            seconds: p(8)?,
            images_per_second: p(9)?,
        })
    }
}

/// The text of metrics.csv for `rows`: the header, then one line per epoch.
pub fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(&r.csv_row());
        text.push('\n');
    }
    text
}

/// Rewrites metrics.csv with all epochs so far (atomically: the file is never half written).
pub fn write_metrics(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    write_atomically(path, metrics_csv(rows).as_bytes())
}

pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_metrics_csv(&text, path)
}

/// Parses the text of a metrics.csv (`path` names it in errors): the header, then rows for
/// epochs 1, 2, 3, ... in order.
pub fn parse_metrics_csv(text: &str, path: &Path) -> Result<Vec<EpochMetrics>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header.trim() != CSV_HEADER {
        return Err(Error::data(path, format!("line 1 is not the metrics.csv header: {header:?}")));
    }
    let mut rows = Vec::new();
    for (i, l) in lines.enumerate() {
        let m = EpochMetrics::from_csv_row(l).ok_or_else(|| Error::data(path, format!("line {} is not a metrics row: {l:?}", i + 2)))?;
        if m.epoch != i + 1 {
            return Err(Error::data(path, format!("line {} is for epoch {}, expected epoch {}", i + 2, m.epoch, i + 1)));
        }
        rows.push(m);
    }
    Ok(rows)
}
