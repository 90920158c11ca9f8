//! Mini-batches: the shuffled order of each epoch, the index ranges of its batches, and the
//! normalised NHWC f32 tensor for one batch.
//!
//! Each epoch's order comes from its own generator seeded by (seed, epoch), so training
//! resumed at epoch k sees exactly the order an uninterrupted run would, with no RNG state
//! saved in the checkpoint.

use std::ops::Range;

use rand::seq::SliceRandom;

use super::dataset::Dataset;
use super::normalize::Normalization;
use crate::tensor::Tensor;

/// A permutation of `0..n`, determined by `seed` and `epoch` alone.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = crate::seeds::shuffle_rng(seed, epoch);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}

/// `0..batch_size`, `batch_size..2*batch_size`, ... covering `0..n`; the last range is shorter
/// when `batch_size` does not divide `n` (kept, not dropped). Panics if `batch_size` is 0.
pub fn batch_ranges(n: usize, batch_size: usize) -> impl Iterator<Item = Range<usize>> {
    assert!(batch_size > 0, "batch_ranges: batch size must be at least 1");
    (0..n).step_by(batch_size).map(move |start| start..(start + batch_size).min(n))
}

/// The images `indices` of `ds` as a normalised [len, h, w, c] tensor, and their labels.
/// Panics if an index is out of range or `norm` is for a different channel count (caller bugs).
pub fn make_batch(ds: &Dataset, indices: &[usize], norm: &Normalization) -> (Tensor, Vec<usize>) {
    assert_eq!(norm.channels(), ds.channels, "make_batch: normalization for {} channels, data set has {}", norm.channels(), ds.channels);
    // Gather the raw bytes first so the normalisation table is built once per batch.
    let mut pixels = Vec::with_capacity(indices.len() * ds.image_size());
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        pixels.extend_from_slice(ds.image(i));
        labels.push(usize::from(ds.labels[i]));
    }
    let mut data = vec![0f32; pixels.len()];
    norm.apply(&pixels, &mut data);
    let shape = [indices.len(), ds.height, ds.width, ds.channels];
    let tensor = Tensor::from_vec(&shape, data).expect("buffer sized from the shape");
    (tensor, labels)
}
