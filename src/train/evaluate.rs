//! Evaluation: loss, accuracy and confusion matrix of a network on a data set.

use crate::data::{batch_ranges, make_batch, Dataset, Normalization};
use crate::error::Result;
use crate::model::network::argmax;
use crate::model::Network;
use crate::ops::softmax::softmax_cross_entropy;

#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean cross-entropy (without the L2 penalty).
    pub loss: f32,
    pub accuracy: f32,
    /// confusion[true][predicted] counts.
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
                if n == 0 { 0.0 } else { row[i] as f32 / n as f32 }
            })
            .collect()
    }
}

pub fn evaluate(net: &mut Network, ds: &Dataset, norm: &Normalization, batch_size: usize) -> Result<Evaluation> {
    let k = net.num_classes();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss_sum = 0.0f64;
    let order: Vec<usize> = (0..ds.len()).collect();
    for range in batch_ranges(ds.len(), batch_size.max(1)) {
        let (x, labels) = make_batch(ds, &order[range], norm);
        let logits = net.predict(&x)?;
        let (loss, _) = softmax_cross_entropy(&logits, &labels)?;
        loss_sum += loss as f64 * labels.len() as f64;
        for (row, &label) in logits.data().chunks_exact(k).zip(&labels) {
            confusion[label][argmax(row)] += 1;
        }
    }
    let n = ds.len().max(1);
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    Ok(Evaluation { loss: (loss_sum / n as f64) as f32, accuracy: correct as f32 / n as f32, confusion })
}
