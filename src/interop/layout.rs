//! Weight and value layouts between convnet (NHWC images, HWIO conv weights, [in, out] dense
//! weights, flattening in (h, w, c) order) and ONNX / PyTorch (NCHW, OIHW, [out, in], (c, h, w)).

use crate::model::plan::{LayerPlan, PlannedOp};
use crate::tensor::Tensor;

/// How an NCHW graph flattens the flatten layer `layers[i]` so that it computes what convnet's
/// (h, w, c) flatten does.
#[derive(Clone, Debug, PartialEq)]
pub enum FlattenOrder {
    /// Nothing to reorder: the input is already flat, or a 1x1 map.
    AsIs,
    /// A plain (c, h, w) flatten, the rows of the dense layer that follows (past element-wise
    /// layers) taken in this order ([`dense_out_in`]).
    PermuteNextDense(Vec<usize>),
    /// Something other than a dense layer follows: transpose to NHWC, then flatten.
    Nhwc,
}

pub fn flatten_order(layers: &[LayerPlan], i: usize) -> FlattenOrder {
    let [h, w, c] = layers[i].input[..] else { return FlattenOrder::AsIs };
    if h * w == 1 {
        return FlattenOrder::AsIs;
    }
    let next = layers[i + 1..]
        .iter()
        .find(|l| !matches!(l.op, PlannedOp::Activation(_) | PlannedOp::Gelu | PlannedOp::Scale(_) | PlannedOp::Dropout { .. }));
    match next.map(|l| &l.op) {
        Some(PlannedOp::Dense { .. }) => FlattenOrder::PermuteNextDense(chw_to_hwc_order(h, w, c)),
        _ => FlattenOrder::Nhwc,
    }
}

/// convnet's HWIO conv weights [kh, kw, cin, cout] as ONNX's OIHW.
pub fn hwio_to_oihw(w: &Tensor) -> Vec<f32> {
    let [kh, kw, ci, co] = w.shape()[..] else { panic!("conv weights are 4-D, got {:?}", w.shape()) };
    let d = w.data();
    let mut out = vec![0.0; d.len()];
    for o in 0..co {
        for i in 0..ci {
            for y in 0..kh {
                for x in 0..kw {
                    out[((o * ci + i) * kh + y) * kw + x] = d[((y * kw + x) * ci + i) * co + o];
                }
            }
        }
    }
    out
}

/// convnet's dense weights [in, out] as [out, in], the inputs taken in the order `order` gives:
/// row `order[k]` of convnet's matrix becomes column k.
pub fn dense_out_in(w: &Tensor, order: &[usize]) -> Vec<f32> {
    let [fin, fout] = w.shape()[..] else { panic!("dense weights are 2-D, got {:?}", w.shape()) };
    debug_assert_eq!(order.len(), fin);
    let d = w.data();
    let mut out = vec![0.0; d.len()];
    for o in 0..fout {
        for (k, &row) in order.iter().enumerate() {
            out[o * fin + k] = d[row * fout + o];
        }
    }
    out
}

/// For each position of a (c, h, w) flattening, the (h, w, c) position holding the same value.
pub fn chw_to_hwc_order(h: usize, w: usize, c: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(h * w * c);
    for k in 0..c {
        for i in 0..h {
            for j in 0..w {
                order.push((i * w + j) * c + k);
            }
        }
    }
    order
}

/// ONNX's OIHW conv weights (`data`, [cout, cin, kh, kw]) as convnet's HWIO.
pub fn oihw_to_hwio(data: &[f32], [co, ci, kh, kw]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for o in 0..co {
        for i in 0..ci {
            for y in 0..kh {
                for x in 0..kw {
                    out[((y * kw + x) * ci + i) * co + o] = data[((o * ci + i) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_change_layout_as_the_formulas_say() {
        // w[y][x][i][o] = 1000y + 100x + 10i + o.
        let (kh, kw, ci, co) = (2, 3, 2, 4);
        let data = (0..kh * kw * ci * co)
            .map(|n| {
                let (o, i, x, y) = (n % co, n / co % ci, n / (co * ci) % kw, n / (co * ci * kw));
                (1000 * y + 100 * x + 10 * i + o) as f32
            })
            .collect();
        let w = Tensor::from_vec(&[kh, kw, ci, co], data).unwrap();
        let oihw = hwio_to_oihw(&w);
        assert_eq!(oihw_to_hwio(&oihw, [co, ci, kh, kw]), w.data(), "the two conversions are inverses");
        // out[o][i][y][x]
        assert_eq!(oihw[((3 * ci + 1) * kh + 1) * kw + 2], 1213.0);
        assert_eq!(oihw[0], 0.0);
        // Dense [3, 2]: rows r, columns o, value 10r + o; order takes row 2 first.
        let w = Tensor::from_vec(&[3, 2], vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]).unwrap();
        assert_eq!(dense_out_in(&w, &[2, 0, 1]), [20.0, 0.0, 10.0, 21.0, 1.0, 11.0]);
        // h 1, w 2, c 3: NCHW position (k, 0, j) holds NHWC (0, j, k) = j*3 + k.
        assert_eq!(chw_to_hwc_order(1, 2, 3), [0, 3, 1, 4, 2, 5]);
    }
}
