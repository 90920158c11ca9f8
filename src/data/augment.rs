//! Data augmentation for training batches: random crop with padding (zero or reflect), random
//! horizontal flip, and cutout. Every random choice comes from the RNG passed in, which the
//! trainer seeds from (seed, step): augmented runs are reproducible and resumable.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use super::normalize::Normalization;
use crate::tensor::Tensor;

/// Data augmentation, applied on the fly to training batches only (never to validation or
/// test), from a seeded RNG.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random crop of the original size from the image padded by this many pixels (0: off).
    #[serde(default)]
    pub crop_padding: usize,
    /// How the crop pads: "zero" (black) or "reflect" (mirror the border).
    #[serde(default)]
    pub padding_mode: CropPadding,
    /// Mirror left-right with probability 1/2.
    #[serde(default)]
    pub flip: bool,
    /// "Alternating flip" (airbench): each image is mirrored in every other epoch, from a coin
    /// of its own in the first epoch, instead of at random every time: flipped in epoch e iff
    /// coin(image) xor (e odd). Every image is seen both ways within any two epochs. Left out
    /// of a saved config when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub alternating_flip: bool,
    /// Zero (after normalisation: set to the mean) a random square of this side (0: off).
    #[serde(default)]
    pub cutout: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropPadding {
    #[default]
    Zero,
    Reflect,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl AugmentConfig {
    pub fn is_active(&self) -> bool {
        self.crop_padding > 0 || self.flip || self.alternating_flip || self.cutout > 0
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.flip && self.alternating_flip {
            return Err("augment.flip and augment.alternating_flip are two ways to mirror images: choose one".into());
        }
        Ok(())
    }
}

/// Whether image `index` of the training set is mirrored in epoch `epoch` (0-based) under
/// alternating flip, in a run with seed `seed`.
pub fn alternating_flip(seed: u64, index: usize, epoch: usize) -> bool {
    crate::seeds::flip_coin(seed, index) ^ (epoch % 2 == 1)
}

/// Where an augmented batch sits in its run: the run's seed and the epoch (0-based), which
/// alternating flip depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchAt {
    pub seed: u64,
    pub epoch: usize,
}

/// Source index for position `i` of an axis of length `n` shifted by `offset - pad`, or None
/// where the crop reaches into zero padding. Reflect mirrors without repeating the border
/// (as numpy's and PyTorch's "reflect").
fn source(i: usize, offset: usize, pad: usize, n: usize, mode: CropPadding) -> Option<usize> {
    let p = i as isize + offset as isize - pad as isize;
    let n = n as isize;
    if (0..n).contains(&p) {
        return Some(p as usize);
    }
    match mode {
        CropPadding::Zero => None,
        CropPadding::Reflect => {
            // Mirror once; padding larger than the image falls back to the nearest edge.
            let r = if p < 0 { -p } else { 2 * (n - 1) - p };
            Some(r.clamp(0, n - 1) as usize)
        }
    }
}

/// Where one image's crop starts in its padded version, and whether it is mirrored.
#[derive(Clone, Copy)]
struct Placement {
    oy: usize,
    ox: usize,
    flip: bool,
}

/// One image [h, w, c] of `ds` transformed into `out`: shifted by the crop offsets and maybe
/// mirrored.
fn crop_flip(ds: &Dataset, i: usize, cfg: &AugmentConfig, at: Placement, out: &mut [u8]) {
    let (src, h, w, c) = (ds.image(i), ds.height, ds.width, ds.channels);
    let Placement { oy, ox, flip } = at;
    let pad = cfg.crop_padding;
    for i in 0..h {
        let si = source(i, oy, pad, h, cfg.padding_mode);
        for j in 0..w {
            let jj = if flip { w - 1 - j } else { j };
            let dst = &mut out[(i * w + j) * c..][..c];
            match (si, source(jj, ox, pad, w, cfg.padding_mode)) {
                (Some(r), Some(s)) => dst.copy_from_slice(&src[(r * w + s) * c..][..c]),
                _ => dst.fill(0),
            }
        }
    }
}

/// Like `make_batch`, with each image augmented as `cfg` says.
pub fn make_augmented_batch(
    ds: &Dataset,
    indices: &[usize],
    norm: &Normalization,
    cfg: &AugmentConfig,
    rng: &mut ChaCha8Rng,
    at: BatchAt,
) -> (Tensor, Vec<usize>) {
    let (h, w, c) = (ds.height, ds.width, ds.channels);
    let size = ds.image_size();
    let mut pixels = vec![0u8; indices.len() * size];
    let mut labels = Vec::with_capacity(indices.len());
    let mut cutouts = Vec::with_capacity(indices.len());
    for (k, &i) in indices.iter().enumerate() {
        let pad = cfg.crop_padding;
        let (oy, ox) = if pad > 0 { (rng.gen_range(0..=2 * pad), rng.gen_range(0..=2 * pad)) } else { (0, 0) };
        let flip = (cfg.flip && rng.gen::<bool>()) || (cfg.alternating_flip && alternating_flip(at.seed, i, at.epoch));
        crop_flip(ds, i, cfg, Placement { oy, ox, flip }, &mut pixels[k * size..][..size]);
        if cfg.cutout > 0 {
            cutouts.push((rng.gen_range(0..h), rng.gen_range(0..w)));
        }
        labels.push(usize::from(ds.labels[i]));
    }
    let mut data = vec![0f32; pixels.len()];
    norm.apply(&pixels, &mut data);
    // Cutout: a square centred at a random pixel (clipped at the border) set to 0, which after
    // normalisation is the training set's mean colour.
    for (k, &(cy, cx)) in cutouts.iter().enumerate() {
        let half = cfg.cutout / 2;
        let (y0, y1) = (cy.saturating_sub(half), (cy + cfg.cutout - half).min(h));
        let (x0, x1) = (cx.saturating_sub(half), (cx + cfg.cutout - half).min(w));
        let img = &mut data[k * size..][..size];
        for y in y0..y1 {
            img[(y * w + x0) * c..(y * w + x1) * c].fill(0.0);
        }
    }
    let shape = [indices.len(), h, w, c];
    let tensor = Tensor::from_vec(&shape, data).unwrap_or_else(|_| Tensor::zeros(&shape));
    (tensor, labels)
}

/// Mirrors every image of an NHWC batch left-right (test-time augmentation).
pub fn flip_batch(x: &Tensor) -> Tensor {
    let mut out = x.clone();
    if let [_, _, w, c] = x.shape()[..] {
        for (dst, src) in out.data_mut().chunks_exact_mut(w * c).zip(x.data().chunks_exact(w * c)) {
            for j in 0..w {
                dst[j * c..(j + 1) * c].copy_from_slice(&src[(w - 1 - j) * c..(w - j) * c]);
            }
        }
    }
    out
}

/// Shifts every image of an NHWC batch by (dy, dx) pixels, reflecting at the border:
/// `out[y][x] = in[y + dy][x + dx]`, mirrored back inside (test-time augmentation; the shift of
/// a reflect-padded crop).
pub fn translate_batch(x: &Tensor, dy: isize, dx: isize) -> Tensor {
    let mut out = x.clone();
    if let [_, h, w, c] = x.shape()[..] {
        let at = |i: usize, d: isize, n: usize| source(i, (d + n as isize) as usize, n, n, CropPadding::Reflect).unwrap_or(i);
        for (dst, src) in out.data_mut().chunks_exact_mut(h * w * c).zip(x.data().chunks_exact(h * w * c)) {
            for y in 0..h {
                let sy = at(y, dy, h);
                for xx in 0..w {
                    let sx = at(xx, dx, w);
                    dst[(y * w + xx) * c..][..c].copy_from_slice(&src[(sy * w + sx) * c..][..c]);
                }
            }
        }
    }
    out
}
