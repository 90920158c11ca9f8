//! Max and average pooling, the fast path: NHWC loops with the channel innermost (contiguous),
//! parallel over the batch. TensorFlow semantics for SAME: out = ceil(in / s); padded cells
//! never win a max and are not counted in an average.
//!
//! ```text
//! Shapes: x [N, H, W, C] -> y [N, oh, ow, C].
//!   max:     y = max over the window;        dx[argmax] += dy  (ties: the first cell in
//!            row-major window order wins, as in TensorFlow and PyTorch)
//!   average: y = mean over the window cells inside the image; dx[cell] += dy / count
//! ```
//! The plain-loop twin used by the tests is `pool_ref`.

use rayon::prelude::*;

use super::simd::simd_dispatch;
use super::window::{Geometry, Padding, Window};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Resolves a pooling window on input shape `x`, returning the geometry and (n, c).
pub fn pool_geometry(op: &str, x: &[usize], window: &Window) -> Result<(Geometry, usize, usize)> {
    let [n, ih, iw, c] = x[..] else {
        return Err(Error::shape(op, "input of rank 4 [N, H, W, C]", format!("{x:?}")));
    };
    if let Padding::Explicit { top, bottom, left, right } = window.padding {
        // A window lying wholly in the padding would have nothing to pool.
        if top.max(bottom) >= window.kh || left.max(right) >= window.kw {
            return Err(Error::invalid(
                op,
                format!("padding {:?} must be smaller than the kernel {}x{}", window.padding, window.kh, window.kw),
            ));
        }
    }
    let g = Geometry::new(op, ih, iw, window)?;
    Ok((g, n, c))
}

/// Max pooling; also returns, for every output value, the index within its image of the input
/// value that won (used by the backward pass).
pub fn max_pool2d_forward(x: &Tensor, window: &Window) -> Result<(Tensor, Vec<u32>)> {
    let (mut y, mut argmax) = (Tensor::empty(), Vec::new());
    max_pool2d_forward_into(x, window, &mut y, &mut argmax)?;
    Ok((y, argmax))
}

/// `max_pool2d_forward` into reused buffers. One task per output row (not per image), so that
/// a single image (batch-1 latency) still spreads over every thread.
pub fn max_pool2d_forward_into(x: &Tensor, window: &Window, y: &mut Tensor, argmax: &mut Vec<u32>) -> Result<()> {
    let (g, n, c) = pool_geometry("max_pool2d", x.shape(), window)?;
    let (in_size, row_size) = (g.ih * g.iw * c, g.ow * c);
    y.resize(&[n, g.oh, g.ow, c]);
    argmax.resize(n * g.oh * row_size, 0);
    y.data_mut().par_chunks_mut(row_size).zip(argmax.par_chunks_mut(row_size)).enumerate().for_each_init(
        // Offsets of the window's cells inside the image, reused for every output pixel.
        || Vec::with_capacity(g.kh * g.kw),
        |cells: &mut Vec<usize>, (row, (y_row, arg_row))| {
            let (img, oi) = (row / g.oh, row % g.oh);
            let x_img = &x.data()[img * in_size..][..in_size];
            for oj in 0..g.ow {
                cells.clear();
                for ki in 0..g.kh {
                    let Some(r) = g.in_row(oi, ki) else { continue };
                    cells.extend((0..g.kw).filter_map(|kj| g.in_col(oj, kj)).map(|s| (r * g.iw + s) * c));
                }
                let at = oj * c;
                max_window(x_img, cells, &mut y_row[at..at + c], &mut arg_row[at..at + c]);
            }
        },
    );
    Ok(())
}

/// The maximum over the window cells at offsets `cells` (in row-major window order, at least
/// one) of every channel, and the index of the first cell that holds it. AVX2 where the SIMD
/// level allows it (`ops::simd`), keeping the running maximum in registers across the cells; a
/// plain loop otherwise.
#[inline]
fn max_window(x: &[f32], cells: &[usize], best: &mut [f32], arg: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2_allowed() {
            // SAFETY: the level allows AVX2, so the CPU supports it (ops::simd).
            unsafe { max_window_avx2(x, cells, best, arg) };
            return;
        }
    }
    max_window_scalar(x, cells, best, arg, 0);
}

/// Channels `from..` of `max_window`, one at a time.
fn max_window_scalar(x: &[f32], cells: &[usize], best: &mut [f32], arg: &mut [u32], from: usize) {
    for ch in from..best.len() {
        let (mut b, mut a) = (x[cells[0] + ch], cells[0] + ch);
        for &cell in &cells[1..] {
            if wins(x[cell + ch], b) {
                (b, a) = (x[cell + ch], cell + ch);
            }
        }
        best[ch] = b;
        arg[ch] = a as u32;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_window_avx2(x: &[f32], cells: &[usize], best: &mut [f32], arg: &mut [u32]) {
    use std::arch::x86_64::*;
    let c = best.len().min(arg.len());
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut ch = 0;
    while ch + 8 <= c {
        // SAFETY: every cell offset + c is inside x (the caller's window geometry), and
        // ch + 8 <= c keeps the 8-wide loads and stores inside x, best and arg.
        unsafe {
            let first = cells[0] + ch;
            let mut b = _mm256_loadu_ps(x.as_ptr().add(first));
            let mut a = _mm256_add_epi32(_mm256_set1_epi32(first as i32), lanes);
            for &cell in &cells[1..] {
                let at = cell + ch;
                let v = _mm256_loadu_ps(x.as_ptr().add(at));
                // wins(v, b) = v > b or v is NaN
                let take = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, b), _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                b = _mm256_blendv_ps(b, v, take);
                let idx = _mm256_add_epi32(_mm256_set1_epi32(at as i32), lanes);
                a = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(idx), take));
            }
            _mm256_storeu_ps(best.as_mut_ptr().add(ch), b);
            _mm256_storeu_si256(arg.as_mut_ptr().add(ch) as *mut __m256i, a);
        }
        ch += 8;
    }
    max_window_scalar(x, cells, best, arg, ch);
}

/// Whether `v` replaces the running maximum `best`: strictly greater keeps the first maximum;
/// a NaN always wins so that a diverged input shows in the output instead of vanishing.
#[inline]
pub(crate) fn wins(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// Routes each output gradient to the input position that won the max (`argmax` from the
/// forward pass over `x_shape` with `window`).
pub fn max_pool2d_backward(dy: &Tensor, argmax: &[u32], x_shape: &[usize], window: &Window) -> Result<Tensor> {
    let mut dx = Tensor::empty();
    max_pool2d_backward_into(dy, argmax, x_shape, window, &mut dx)?;
    Ok(dx)
}

/// `max_pool2d_backward` into a reused buffer. Where the windows lie apart (every input cell
/// in one window at most: a stride of the kernel's size or more, as the ResNet's and airbench's
/// 2x2 pools), each cell of dx is written once, its window's dy where it won, zero elsewhere
/// and in the rows and columns no window covers (airbench's 31x31, 15x15 and 7x7 inputs leave
/// the last); otherwise dx is zeroed and each dy added at its winner. The same bits either way
/// (a winner holds 0 + dy).
pub fn max_pool2d_backward_into(dy: &Tensor, argmax: &[u32], x_shape: &[usize], window: &Window, dx: &mut Tensor) -> Result<()> {
    let (g, n, c) = pool_geometry("max_pool2d backward", x_shape, window)?;
    let in_size = g.ih * g.iw * c;
    let out_size = g.oh * g.ow * c;
    if argmax.len() != dy.len() || dy.shape() != [n, g.oh, g.ow, c] {
        let expected = format!("{} gradients of shape {:?}", argmax.len(), [n, g.oh, g.ow, c]);
        return Err(Error::shape("max_pool2d backward", expected, format!("{:?}", dy.shape())));
    }
    dx.resize(x_shape);
    let coverage = windows_apart(&g);
    dx.data_mut().par_chunks_mut(in_size).enumerate().for_each(|(img, dx_img)| {
        let dy_img = &dy.data()[img * out_size..][..out_size];
        let arg_img = &argmax[img * out_size..][..out_size];
        if let Some((rows, cols)) = &coverage {
            route_apart(&g, c, dy_img, arg_img, dx_img);
            zero_uncovered(&g, c, rows, cols, dx_img);
        } else {
            dx_img.fill(0.0);
            for (d, &a) in dy_img.iter().zip(arg_img) {
                dx_img[a as usize] += d;
            }
        }
    });
    Ok(())
}

/// Where every input row lies in one window row at most, and every column in one window
/// column at most: whether each row and each column lies in one. None where windows overlap.
fn windows_apart(g: &Geometry) -> Option<(Vec<bool>, Vec<bool>)> {
    let mut rows = vec![0u32; g.ih];
    (0..g.oh).flat_map(|o| (0..g.kh).filter_map(move |k| g.in_row(o, k))).for_each(|r| rows[r] += 1);
    let mut cols = vec![0u32; g.iw];
    (0..g.ow).flat_map(|o| (0..g.kw).filter_map(move |k| g.in_col(o, k))).for_each(|s| cols[s] += 1);
    let covered = |counts: Vec<u32>| counts.into_iter().map(|count| (count <= 1).then_some(count == 1)).collect::<Option<Vec<bool>>>();
    Some((covered(rows)?, covered(cols)?))
}

simd_dispatch! {
    /// One image's dx where the windows lie apart: every cell of each window written, 0 + dy
    /// at its winner (`arg`, an index into the image) and zero at the others. (Dispatched per
    /// image, not per cell: a call per cell of 32 channels cost as much as the work; the
    /// ResNet's 32x32x32 pool backward 1.0-1.14 ms per cell, 0.6-0.78 per image.)
    fn route_apart => route_apart_plain(g: &Geometry, c: usize, dy: &[f32], arg: &[u32], dx: &mut [f32])
}

#[inline(always)]
fn route_apart_plain(g: &Geometry, c: usize, dy: &[f32], arg: &[u32], dx: &mut [f32]) {
    for oi in 0..g.oh {
        for oj in 0..g.ow {
            let at = (oi * g.ow + oj) * c;
            let (dy, arg) = (&dy[at..at + c], &arg[at..at + c]);
            for r in (0..g.kh).filter_map(|ki| g.in_row(oi, ki)) {
                for s in (0..g.kw).filter_map(|kj| g.in_col(oj, kj)) {
                    let cell = (r * g.iw + s) * c;
                    route_cell(dy, arg, cell as u32, &mut dx[cell..cell + c]);
                }
            }
        }
    }
}

/// Zeros one image's dx in the rows and columns that no window covers (`rows`, `cols`: whether
/// each is covered), the cells `route_apart` does not write.
fn zero_uncovered(g: &Geometry, c: usize, rows: &[bool], cols: &[bool], dx: &mut [f32]) {
    for (row, &row_covered) in dx.chunks_exact_mut(g.iw * c).zip(rows) {
        if !row_covered {
            row.fill(0.0);
            continue;
        }
        for (cell, _) in row.chunks_exact_mut(c).zip(cols).filter(|(_, &covered)| !covered) {
            cell.fill(0.0);
        }
    }
}

/// dx[ch] = 0 + dy[ch] where arg[ch] is this cell's channel ch (index `cell + ch`), else 0.
#[inline(always)]
fn route_cell(dy: &[f32], arg: &[u32], cell: u32, dx: &mut [f32]) {
    for (ch, ((dx, &d), &a)) in dx.iter_mut().zip(dy).zip(arg).enumerate() {
        *dx = if a == cell + ch as u32 { 0.0 + d } else { 0.0 };
    }
}

/// Number of window cells inside the image at output (oi, oj): the average's divisor.
fn inside_count(g: &Geometry, oi: usize, oj: usize) -> usize {
    let rows = (0..g.kh).filter(|&ki| g.in_row(oi, ki).is_some()).count();
    let cols = (0..g.kw).filter(|&kj| g.in_col(oj, kj).is_some()).count();
    rows * cols
}

/// Average pooling over the window cells inside the image.
pub fn avg_pool2d_forward(x: &Tensor, window: &Window) -> Result<Tensor> {
    let mut y = Tensor::empty();
    avg_pool2d_forward_into(x, window, &mut y)?;
    Ok(y)
}

/// `avg_pool2d_forward` into a reused buffer.
pub fn avg_pool2d_forward_into(x: &Tensor, window: &Window, y: &mut Tensor) -> Result<()> {
    let (g, n, c) = pool_geometry("avg_pool2d", x.shape(), window)?;
    let (in_size, out_size) = (g.ih * g.iw * c, g.oh * g.ow * c);
    y.resize(&[n, g.oh, g.ow, c]);
    y.data_mut().par_chunks_mut(out_size).enumerate().for_each(|(img, y_img)| {
        y_img.fill(0.0);
        let x_img = &x.data()[img * in_size..][..in_size];
        for oi in 0..g.oh {
            for oj in 0..g.ow {
                let acc = &mut y_img[(oi * g.ow + oj) * c..][..c];
                for ki in 0..g.kh {
                    let Some(r) = g.in_row(oi, ki) else { continue };
                    for kj in 0..g.kw {
                        let Some(s) = g.in_col(oj, kj) else { continue };
                        acc.iter_mut().zip(&x_img[(r * g.iw + s) * c..][..c]).for_each(|(a, v)| *a += v);
                    }
                }
                let inv = 1.0 / inside_count(&g, oi, oj) as f32;
                acc.iter_mut().for_each(|a| *a *= inv);
            }
        }
    });
    Ok(())
}

/// Spreads each output gradient evenly over the cells it averaged.
pub fn avg_pool2d_backward(dy: &Tensor, x_shape: &[usize], window: &Window) -> Result<Tensor> {
    let mut dx = Tensor::empty();
    avg_pool2d_backward_into(dy, x_shape, window, &mut dx)?;
    Ok(dx)
}

/// `avg_pool2d_backward` into a reused buffer.
pub fn avg_pool2d_backward_into(dy: &Tensor, x_shape: &[usize], window: &Window, dx: &mut Tensor) -> Result<()> {
    let (g, n, c) = pool_geometry("avg_pool2d", x_shape, window)?;
    if dy.shape() != [n, g.oh, g.ow, c] {
        return Err(Error::shape("avg_pool2d backward", format!("dy {:?}", [n, g.oh, g.ow, c]), format!("{:?}", dy.shape())));
    }
    let (in_size, out_size) = (g.ih * g.iw * c, g.oh * g.ow * c);
    dx.resize(x_shape);
    dx.data_mut().par_chunks_mut(in_size).enumerate().for_each(|(img, dx_img)| {
        dx_img.fill(0.0);
        let dy_img = &dy.data()[img * out_size..][..out_size];
        for oi in 0..g.oh {
            for oj in 0..g.ow {
                let inv = 1.0 / inside_count(&g, oi, oj) as f32;
                let d = &dy_img[(oi * g.ow + oj) * c..][..c];
                for ki in 0..g.kh {
                    let Some(r) = g.in_row(oi, ki) else { continue };
                    for kj in 0..g.kw {
                        let Some(s) = g.in_col(oj, kj) else { continue };
                        dx_img[(r * g.iw + s) * c..][..c].iter_mut().zip(d).for_each(|(a, v)| *a += v * inv);
                    }
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The windows lie apart when no row or column lies in two: a stride of the kernel's size or
    /// more; the rows and columns in none (past the last window, between windows) are reported.
    #[test]
    fn windows_lie_apart_where_no_cell_is_in_two() {
        let apart = |size: usize, k: usize, s: usize, padding: Padding| {
            let g = Geometry::new("test", size, size, &Window::new(k, k, s, s, padding)).unwrap();
            windows_apart(&g)
        };
        let every = |n: usize| vec![true; n];
        assert_eq!(apart(32, 2, 2, Padding::Valid), Some((every(32), every(32))));
        assert_eq!(apart(7, 3, 3, Padding::Same), Some((every(7), every(7))), "9 cells over 7 rows and 2 of padding");
        let last_out = vec![true, true, true, true, true, true, false];
        assert_eq!(apart(7, 2, 2, Padding::Valid), Some((last_out.clone(), last_out)), "the last row in no window");
        assert_eq!(apart(8, 3, 2, Padding::Same), None, "overlapping windows");
        let gaps = vec![true, true, false, true, true, false, true, true];
        assert_eq!(apart(8, 2, 3, Padding::Valid), Some((gaps.clone(), gaps)), "rows between windows");
    }

    /// dX written cell by cell where the windows lie apart, against zeroing and adding each dy
    /// at its winner, bit for bit (-0 included: a winner holds 0 + dy, as the addition gives;
    /// the cells in no window zero, over a dx that held NaN).
    #[test]
    fn routing_apart_equals_the_scatter_bit_for_bit() {
        for (shape, window) in [
            ([2, 8, 6, 19], Window::new(2, 2, 2, 2, Padding::Valid)),
            ([1, 7, 7, 5], Window::new(3, 3, 3, 3, Padding::Same)),
            ([3, 4, 6, 16], Window::new(2, 3, 2, 3, Padding::Valid)),
            ([2, 7, 9, 16], Window::new(2, 2, 2, 2, Padding::Valid)),
            ([1, 8, 8, 3], Window::new(2, 2, 3, 3, Padding::Valid)),
        ] {
            let len: usize = shape.iter().product();
            let values = (0..len).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let x = Tensor::from_vec(&shape, values).unwrap();
            let (y, arg) = max_pool2d_forward(&x, &window).unwrap();
            let dy_values = (0..y.len()).map(|i| if i % 7 == 0 { -0.0 } else { (i % 11) as f32 - 5.0 }).collect();
            let dy = Tensor::from_vec(y.shape(), dy_values).unwrap();
            let (g, n, c) = pool_geometry("test", &shape, &window).unwrap();
            assert!(windows_apart(&g).is_some(), "{shape:?} {window:?} must take the path of windows apart");
            let mut dx = Tensor::from_vec(&shape, vec![f32::NAN; len]).unwrap();
            max_pool2d_backward_into(&dy, &arg, &shape, &window, &mut dx).unwrap();
            let mut scattered = vec![0.0f32; len];
            let (in_size, out_size) = (len / n, y.len() / n);
            for img in 0..n {
                for o in 0..out_size {
                    scattered[img * in_size + arg[img * out_size + o] as usize] += dy.data()[img * out_size + o];
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(dx.data()), bits(&scattered), "{shape:?} {window:?} ({c} channels)");
        }
    }
}
