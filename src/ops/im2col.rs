//! im2col / col2im for NHWC images: turn every receptive field into one row, so that a
//! convolution becomes one matrix product.
//!
//! For one image [H, W, C] and a window with output oh x ow, the column matrix is
//! [oh*ow, kh*kw*C]: row (i, j) holds the patch under output pixel (i, j), ordered (ki, kj, c),
//! which is the order of an HWIO weight flattened to [kh*kw*C, C_out]. Padded cells are zero.

use super::window::Geometry;

/// Writes the column matrix of one image `x` ([ih, iw, c]) into `col` ([oh*ow, kh*kw*c]).
pub fn im2col(x: &[f32], g: &Geometry, c: usize, col: &mut [f32]) {
    im2col_rows(x, g, c, 0..g.oh, col);
}

/// The rows of the column matrix that belong to output image rows `out_rows`, written from the
/// start of `col` ([out_rows.len()*ow, kh*kw*c]): one block of a convolution split by rows.
pub fn im2col_rows(x: &[f32], g: &Geometry, c: usize, out_rows: std::ops::Range<usize>, col: &mut [f32]) {
    let row_len = g.kh * g.kw * c;
    let first = out_rows.start;
    for oi in out_rows {
        for oj in 0..g.ow {
            let row = &mut col[((oi - first) * g.ow + oj) * row_len..][..row_len];
            for ki in 0..g.kh {
                let seg = &mut row[ki * g.kw * c..][..g.kw * c];
                let Some(r) = g.in_row(oi, ki) else {
                    seg.fill(0.0);
                    continue;
                };
                // In NHWC a whole kernel row is one contiguous run of kw*c values when no
                // column falls in the padding: copy it at once.
                if let (Some(s0), Some(_)) = (g.in_col(oj, 0), g.in_col(oj, g.kw - 1)) {
                    seg.copy_from_slice(&x[(r * g.iw + s0) * c..][..g.kw * c]);
                    continue;
                }
                for kj in 0..g.kw {
                    let dst = &mut seg[kj * c..][..c];
                    match g.in_col(oj, kj) {
                        Some(s) => dst.copy_from_slice(&x[(r * g.iw + s) * c..][..c]),
                        None => dst.fill(0.0),
                    }
                }
            }
        }
    }
}

/// Adds the column-matrix gradient `col` back onto the image gradient `dx` ([ih, iw, c]):
/// each input pixel receives the sum over every patch it appeared in.
pub fn col2im(col: &[f32], g: &Geometry, c: usize, dx: &mut [f32]) {
    let row_len = g.kh * g.kw * c;
    for oi in 0..g.oh {
        for oj in 0..g.ow {
            let row = &col[(oi * g.ow + oj) * row_len..][..row_len];
            for ki in 0..g.kh {
                let Some(r) = g.in_row(oi, ki) else { continue };
                if let (Some(s0), Some(_)) = (g.in_col(oj, 0), g.in_col(oj, g.kw - 1)) {
                    let src = &row[ki * g.kw * c..][..g.kw * c];
                    let dst = &mut dx[(r * g.iw + s0) * c..][..g.kw * c];
                    dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                    continue;
                }
                for kj in 0..g.kw {
                    if let Some(s) = g.in_col(oj, kj) {
                        let src = &row[(ki * g.kw + kj) * c..][..c];
                        let dst = &mut dx[(r * g.iw + s) * c..][..c];
                        for (d, v) in dst.iter_mut().zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::{Padding, Window};

    /// Every entry of the column matrix by its definition: row (i, j), column (ki, kj, c) holds
    /// x at (i*sh + ki - pad_top, j*sw + kj - pad_left, c), or zero outside the image, for
    /// channel counts 1-9 and 16, kernels 2-5, strides 1 and 2, SAME and VALID.
    #[test]
    fn column_matrix_matches_its_definition() {
        for c in (1..=9).chain([16]) {
            for (k, stride, padding) in [(3, 1, Padding::Same), (5, 1, Padding::Same), (5, 2, Padding::Valid), (2, 2, Padding::Same)] {
                let (ih, iw) = (7, 9);
                let g = Geometry::new("test", ih, iw, &Window::new(k, k, stride, stride, padding)).unwrap();
                let x: Vec<f32> = (0..ih * iw * c).map(|v| v as f32 + 0.5).collect();
                let row_len = k * k * c;
                let mut col = vec![f32::NAN; g.oh * g.ow * row_len];
                im2col(&x, &g, c, &mut col);
                for i in 0..g.oh {
                    for j in 0..g.ow {
                        for ki in 0..k {
                            for kj in 0..k {
                                for ch in 0..c {
                                    let (r, s) =
                                        ((i * stride + ki) as isize - g.pad_top as isize, (j * stride + kj) as isize - g.pad_left as isize);
                                    let inside = r >= 0 && s >= 0 && (r as usize) < ih && (s as usize) < iw;
                                    let want = if inside { x[(r as usize * iw + s as usize) * c + ch] } else { 0.0 };
                                    let got = col[(i * g.ow + j) * row_len + (ki * k + kj) * c + ch];
                                    assert_eq!(
                                        got.to_bits(),
                                        want.to_bits(),
                                        "c {c}, kernel {k}, stride {stride}, row ({i}, {j}), tap ({ki}, {kj}, {ch})"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
