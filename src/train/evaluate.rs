//! Evaluation: loss, accuracy and confusion matrix of a network on a data set.

use crate::data::augment::{flip_batch, translate_batch};
use crate::data::{batch_ranges, make_batch, Dataset, Normalization};
use crate::error::Result;
use crate::model::network::argmax;
use crate::model::Network;
use crate::ops::softmax::softmax;
use crate::train::run::RunConfig;

#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean cross-entropy (without the L2 penalty).
    pub loss: f32,
    pub accuracy: f32,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// Accuracy of each class: the diagonal over the row sums.
    pub fn per_class_accuracy(&self) -> Vec<f32> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: usize = row.iter().sum();
                if n == 0 {
                    0.0
                } else {
                    row[i] as f32 / n as f32
                }
            })
            .collect()
    }
}

/// How to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// Images per forward pass (memory, not results: evaluation does not depend on it).
    pub batch_size: usize,
    /// Classify each image and its mirror image and average their probabilities (flip
    /// test-time augmentation; a run's `train.tta_flip`).
    pub tta_flip: bool,
    /// Also classify each image shifted by this many pixels up-left and down-right (reflect
    /// padding): the unshifted views weigh 1/2, each shifted one 1/4 (0: off; a run's
    /// `train.tta_translate`).
    pub tta_translate: usize,
}

impl EvalOptions {
    /// What `convnet eval` and the final evaluation of a run use: batches of 256, and the
    /// run's TTA settings.
    pub fn for_run(run: &RunConfig) -> EvalOptions {
        EvalOptions { batch_size: 256, tta_flip: run.train.tta_flip, tta_translate: run.train.tta_translate }
    }

    /// What the per-epoch evaluations of a run use: as `for_run`, without TTA when the run
    /// says `tta_final_only`.
    pub fn per_epoch(run: &RunConfig) -> EvalOptions {
        let all = EvalOptions::for_run(run);
        if run.train.tta_final_only {
            EvalOptions { tta_flip: false, tta_translate: 0, ..all }
        } else {
            all
        }
    }

    /// Forward passes per image: each shift, and its mirror under `tta_flip`.
    pub fn views(&self) -> usize {
        self.shifts().len() * (1 + usize::from(self.tta_flip))
    }

    /// The views each image is classified in: (shift in pixels on both axes, weight).
    fn shifts(&self) -> Vec<(isize, f32)> {
        match self.tta_translate as isize {
            0 => vec![(0, 1.0)],
            t => vec![(0, 0.5), (-t, 0.25), (t, 0.25)],
        }
    }
}

/// Evaluates `net` on `ds` in eval mode.
pub fn evaluate(net: &mut Network, ds: &Dataset, norm: &Normalization, options: EvalOptions) -> Result<Evaluation> {
    let (tta, batch_size) = (options.tta_flip, options.batch_size);
    let k = net.num_classes();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss_sum = 0.0f64;
    let order: Vec<usize> = (0..ds.len()).collect();
    for range in batch_ranges(ds.len(), batch_size.max(1)) {
        let (x, labels) = make_batch(ds, &order[range], norm);
        let mut probs = vec![0.0f32; labels.len() * k];
        for (shift, weight) in options.shifts() {
            let shifted;
            let view = if shift == 0 {
                &x
            } else {
                shifted = translate_batch(&x, shift, shift);
                &shifted
            };
            let mut view_probs = softmax(&net.predict(view)?)?;
            if tta {
                let mirrored = softmax(&net.predict(&flip_batch(view))?)?;
                view_probs.data_mut().iter_mut().zip(mirrored.data()).for_each(|(p, q)| *p = 0.5 * (*p + q));
            }
            probs.iter_mut().zip(view_probs.data()).for_each(|(p, q)| *p += weight * q);
        }
        for (row, &label) in probs.chunks_exact(k).zip(&labels) {
            loss_sum -= (row[label].max(1e-30) as f64).ln();
            confusion[label][argmax(row)] += 1;
        }
    }
    let n = ds.len().max(1);
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    Ok(Evaluation { loss: (loss_sum / n as f64) as f32, accuracy: correct as f32 / n as f32, confusion })
}
