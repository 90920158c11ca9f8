//! Pooling in plain loops, as the tutorial writes it: for every output cell, look at its window.
//! The backward pass rebuilds the max mask from the input (create_mask_from_window) or spreads
//! the gradient evenly (distribute_value). The oracle for `pool.rs`.

use super::pool::{pool_geometry, wins};
use super::window::{Geometry, Window};
use crate::error::Result;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    Max,
    Average,
}

/// The input cells (row, col) of the window at output (i, j) that lie inside the image.
fn window_cells(g: &Geometry, i: usize, j: usize) -> Vec<(usize, usize)> {
    let mut cells = Vec::new();
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            if let (Some(r), Some(c)) = (g.in_row(i, ki), g.in_col(j, kj)) {
                cells.push((r, c));
            }
        }
    }
    cells
}

pub fn pool_forward(x: &Tensor, window: &Window, mode: PoolMode) -> Result<Tensor> {
    let (g, n, ch) = pool_geometry("pool_forward", x.shape(), window)?;
    let at = |img: usize, r: usize, c: usize, k: usize| x.data()[((img * g.ih + r) * g.iw + c) * ch + k];
    let mut y = vec![0.0f32; n * g.oh * g.ow * ch];
    for img in 0..n {
        for i in 0..g.oh {
            for j in 0..g.ow {
                let cells = window_cells(&g, i, j);
                for k in 0..ch {
                    let values = cells.iter().map(|&(r, c)| at(img, r, c, k));
                    let v = match mode {
                        PoolMode::Max => values.reduce(|best, v| if wins(v, best) { v } else { best }).unwrap_or(0.0),
                        PoolMode::Average => values.sum::<f32>() / cells.len() as f32,
                    };
                    y[((img * g.oh + i) * g.ow + j) * ch + k] = v;
                }
            }
        }
    }
    Tensor::from_vec(&[n, g.oh, g.ow, ch], y)
}

pub fn pool_backward(x: &Tensor, dy: &Tensor, window: &Window, mode: PoolMode) -> Result<Tensor> {
    let (g, n, ch) = pool_geometry("pool_backward", x.shape(), window)?;
    let idx = |img: usize, r: usize, c: usize, k: usize| ((img * g.ih + r) * g.iw + c) * ch + k;
    let mut dx = vec![0.0f32; x.len()];
    for img in 0..n {
        for i in 0..g.oh {
            for j in 0..g.ow {
                let cells = window_cells(&g, i, j);
                for k in 0..ch {
                    let d = dy.data()[((img * g.oh + i) * g.ow + j) * ch + k];
                    match mode {
                        PoolMode::Max => {
                            // The mask: the first cell holding the window's maximum.
                            let mut best = cells[0];
                            for &cell in &cells[1..] {
                                if wins(x.data()[idx(img, cell.0, cell.1, k)], x.data()[idx(img, best.0, best.1, k)]) {
                                    best = cell;
                                }
                            }
                            dx[idx(img, best.0, best.1, k)] += d;
                        }
                        PoolMode::Average => {
                            let share = d / cells.len() as f32;
                            for &(r, c) in &cells {
                                dx[idx(img, r, c, k)] += share;
                            }
                        }
                    }
                }
            }
        }
    }
    Tensor::from_vec(x.shape(), dx)
}
