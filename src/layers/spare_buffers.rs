//! Buffers lent between the layers of a `Sequential` in a training step, so that memory goes
//! only to the tensors still needed. Each layer owns an output y and an input gradient dx, but
//! not all of them live for the whole step:
//!
//! - a layer's output whose values the next layer's backward pass does not read (a
//!   convolution's output under max pooling, which keeps its argmax) is dead once the next
//!   layer's forward has run: its buffer is lent out (`Tensor::take_values`);
//! - layer i's input gradient is dead once layer i - 1's backward has read it: at most two are
//!   live at a time (the first layer's, the block's own input gradient, is kept);
//! - an output that its layer can compute again from its kept input (GELU, an activation: see
//!   `Layer::recomputable`) is lent out after the next layer's forward and computed again just
//!   before a backward pass reads it (recomputation, as in gradient checkpointing, at the cost
//!   of one elementwise pass).
//!
//! A layer given a hollow buffer takes the spare that best fits, and gives it back when it is
//! dead again; after the first steps the same buffers go round and a step allocates nothing.

use crate::tensor::Tensor;

#[derive(Default)]
pub(crate) struct SpareBuffers {
    buffers: Vec<Vec<f32>>,
}

impl SpareBuffers {
    /// Takes `t`'s buffer (its shape stays; see `Tensor::take_values`).
    pub fn lend(&mut self, t: &mut Tensor) {
        let buffer = t.take_values();
        if buffer.capacity() > 0 {
            self.buffers.push(buffer);
        }
    }

    /// Gives `t`, if it has no values (hollow, or never sized), the spare that best holds `len`
    /// values: the smallest that holds them, else the largest (grown by `restore_values`).
    pub fn fill(&mut self, t: &mut Tensor, len: usize) {
        if !t.is_empty() || self.buffers.is_empty() {
            return;
        }
        let fits = |b: &Vec<f32>| b.capacity() >= len;
        let best = match self.buffers.iter().enumerate().filter(|(_, b)| fits(b)).min_by_key(|(_, b)| b.capacity()) {
            Some((i, _)) => i,
            None => self.buffers.iter().enumerate().max_by_key(|(_, b)| b.capacity()).map_or(0, |(i, _)| i),
        };
        // A never-sized tensor (shape [0]) keeps the buffer's capacity for its first `resize`.
        t.restore_values(self.buffers.swap_remove(best));
    }

    #[cfg(test)]
    fn capacities(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self.buffers.iter().map(|b| b.capacity()).collect();
        c.sort_unstable();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(len: usize) -> Tensor {
        Tensor::zeros(&[len])
    }

    #[test]
    fn a_tensor_without_values_gets_the_smallest_spare_that_holds_them_else_the_largest() {
        let mut spares = SpareBuffers::default();
        for len in [10, 1000, 100] {
            spares.lend(&mut tensor(len));
        }
        // A never-sized tensor lends nothing.
        spares.lend(&mut Tensor::empty());
        assert_eq!(spares.capacities(), [10, 100, 1000]);
        let mut t = tensor(50);
        t.take_values();
        assert!(t.is_hollow());
        spares.fill(&mut t, 50);
        assert!(!t.is_hollow() && t.len() == 50);
        assert_eq!(spares.capacities(), [10, 1000]);
        // Nothing holds 2000: the largest, grown to the shape.
        let mut big = tensor(2000);
        big.take_values();
        spares.fill(&mut big, 2000);
        assert_eq!((big.len(), spares.capacities()), (2000, vec![10]));
        // A tensor that has its values keeps them; a never-sized one takes a spare's capacity.
        spares.fill(&mut big, 5);
        assert_eq!(spares.capacities(), [10]);
        let mut fresh = Tensor::empty();
        spares.fill(&mut fresh, 8);
        assert!(spares.capacities().is_empty());
        fresh.resize(&[8]);
        assert_eq!(fresh.len(), 8);
        // None spare: nothing happens.
        let mut other = tensor(4);
        other.take_values();
        spares.fill(&mut other, 4);
        assert!(other.is_hollow());
    }
}
