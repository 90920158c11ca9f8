//! Per-channel input normalisation: `x = (pixel/255 - mean[c]) / std[c]`, with the mean and
//! (population) standard deviation measured on the [0, 1] scale over the training set only,
//! so validation and test images are mapped with statistics they did not contribute to.
//! Serializable so a checkpoint can carry the statistics its model was trained with.

use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use crate::error::{Error, Result};

/// Smallest std used, so a constant channel maps to 0 instead of dividing by zero.
const STD_FLOOR: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Per-channel mean and population std over every pixel of `ds`, on the [0, 1] scale.
    /// The sums are of integers in u64, so they are exact however many pixels there are, and
    /// the division is done in f64. An empty data set gives mean 0 and std 1 (the identity on
    /// the [0, 1] scale).
    pub fn from_dataset(ds: &Dataset) -> Normalization {
        let c = ds.channels;
        let mut sum = vec![0u64; c];
        let mut sum_sq = vec![0u64; c];
        if c > 0 {
            for pixel in ds.images.chunks_exact(c) {
                for ((s, sq), &v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(pixel) {
                    let v = u64::from(v);
                    *s += v;
                    *sq += v * v;
                }
            }
        }
        let count = ds.images.len().checked_div(c).unwrap_or(0) as f64;
        if count == 0.0 {
            return Normalization { mean: vec![0.0; c], std: vec![1.0; c] };
        }
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for (&s, &sq) in sum.iter().zip(&sum_sq) {
            let m = s as f64 / count / 255.0;
            // Var = E[x^2] - E[x]^2; clamped at 0 against rounding for constant channels.
            let var = (sq as f64 / count / (255.0 * 255.0) - m * m).max(0.0);
            mean.push(m as f32);
            std.push(var.sqrt().max(STD_FLOOR) as f32);
        }
        Normalization { mean, std }
    }

    /// Number of channels the statistics are for.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Checks the statistics are usable for `channels`-channel images: one finite mean and one
    /// positive finite std per channel. Call this on statistics read from a file before
    /// [`apply`](Self::apply), which panics on a channel mismatch.
    pub fn validate(&self, channels: usize) -> Result<()> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(Error::invalid(
                "normalization",
                format!("{} means and {} stds for {channels}-channel images", self.mean.len(), self.std.len()),
            ));
        }
        if let Some(c) = (0..channels).find(|&c| !(self.mean[c].is_finite() && self.std[c].is_finite() && self.std[c] > 0.0)) {
            return Err(Error::invalid(
                "normalization",
                format!("channel {c}: mean {} and std {} must be finite, std > 0", self.mean[c], self.std[c]),
            ));
        }
        Ok(())
    }

    /// Maps HWC u8 pixels to normalised f32: `out[i] = (pixels[i]/255 - mean[c]) / std[c]`
    /// where `c = i % channels`. Panics if the lengths differ or are not a whole number of
    /// pixels (a caller bug: check file-borne statistics with [`validate`](Self::validate)).
    pub fn apply(&self, pixels: &[u8], out: &mut [f32]) {
        let c = self.mean.len();
        assert!(c > 0 && self.std.len() == c, "normalization: {} means, {} stds", c, self.std.len());
        assert_eq!(pixels.len(), out.len(), "normalization: pixel and output lengths differ");
        assert_eq!(pixels.len() % c, 0, "normalization: {} bytes is not a whole number of {c}-channel pixels", pixels.len());
        // A 256-entry table per channel: the exact formula in f64, then one lookup per byte.
        let table: Vec<[f32; 256]> = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| {
                let mut t = [0f32; 256];
                for (v, slot) in t.iter_mut().enumerate() {
                    *slot = ((v as f64 / 255.0 - f64::from(m)) / f64::from(s)) as f32;
                }
                t
            })
            .collect();
        for (px_in, px_out) in pixels.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
            for ((o, &v), t) in px_out.iter_mut().zip(px_in).zip(&table) {
                *o = t[usize::from(v)];
            }
        }
    }
}
