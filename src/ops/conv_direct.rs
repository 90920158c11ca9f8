//! A stride-1 convolution computed directly on the NHWC image, without a column matrix:
//! ```text
//!   y[i, j, co] = b[co] + sum over ki, kj, ci of xp[i + ki, j + kj, ci] * w[ki, kj, ci, co]
//! ```
//! where xp is the image with its zero padding written out (pad_top rows above, pad_left
//! columns to the left, zeros wherever the window passes the edge). For few input channels
//! (an RGB image, or 16 channels at 32x32) im2col writes a column matrix kh*kw times the image
//! and hands the GEMM a thin inner dimension; here a tile of P output pixels x NV vectors of
//! output channels is held in registers while the taps and input channels stream past: each
//! (tap, input channel) loads NV vectors of w and P values of xp for P x NV multiply-adds.
//! The input gradient of a stride-1 layer is itself such a convolution (`conv2d`'s
//! `input_grad_window`), so the same kernel serves dX.
//!
//! The trick that keeps the tiles full: pixel (i, j) of the output reads xp at
//! (i + ki) * wp + j + kj, with wp = ow + kw - 1 the padded width, so if the output is
//! numbered i * wp + j ("wide" rows of wp pixels, of which the last kw - 1 are never stored)
//! a tile is P consecutive numbers wherever it falls, across rows, and its pixels are c_in
//! values apart in xp. The wide pixels cost (kw - 1) / wp more work (6% at 32x32).
//!
//! Every output value is one chain of fused multiply-adds from 0 over the taps (row by row)
//! and, within a tap, the input channels in order, then + b (then ReLU): every copy of the
//! kernel (portable, AVX2, AVX-512, each with its own tile) gives the same bits, those of
//! [`forward_direct_ref`].

use std::ops::Range;

use super::window::{Geometry, Window};

/// Whether the direct kernel computes a convolution with `window` from `c_in` to `c_out`
/// channels where Winograd does not (`conv2d::algorithm` asks Winograd first): stride 1, and
/// at most 32 channels on each side. Measured against im2col + GEMM (2 threads, AVX-512,
/// `convnet bench --layers`, docs/performance.md): faster for the ResNet's 3 -> 16 and
/// 16 -> 32 layers at 32x32 and its 32 -> 16 input gradient, Fashion-MNIST's 1 -> 32 and
/// airbench's 2x2 3 -> 24; slower for the seed network's 5x5 3 -> 64, where four vectors of
/// output channels leave a tile only 7 pixels.
pub fn applies(window: &Window, c_in: usize, c_out: usize) -> bool {
    (window.sh, window.sw) == (1, 1) && c_in <= MAX_CHANNELS && c_out <= MAX_CHANNELS
}

/// The most input or output channels the direct kernel is taken for.
const MAX_CHANNELS: usize = 32;

/// One direct convolution: an image of `g`'s input size with `c_in` channels, the weights
/// `[kh, kw, c_in, c_out]` (HWIO), the bias `[c_out]`, and whether a ReLU follows.
#[derive(Clone, Copy)]
pub struct DirectConv<'a> {
    pub g: &'a Geometry,
    pub c_in: usize,
    pub c_out: usize,
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub relu: bool,
}

/// Rows of the padded copy for `rows` output rows, `wp` wide: the kh - 1 more that the taps
/// reach, and a few of zeros after them that the last tile reads past the last stored pixel
/// (at most P + kw wide pixels).
pub(crate) fn padded_height(g: &Geometry, rows: usize, wp: usize) -> usize {
    rows + g.kh - 1 + (MAX_TILE_PIXELS + g.kw).div_ceil(wp) + 1
}

/// Fills `buf` with the padded rows (`wp` wide) of `x` (one image) that output rows `rows`
/// read: image rows from rows.start - pad_top on, each at column pad_left, zeros elsewhere.
/// Every value is written once (the buffer keeps whatever it held before).
fn fill_padded(x: &[f32], s: &DirectConv, rows: &Range<usize>, wp: usize, buf: &mut Vec<f32>) {
    fill_padded_with(x, s.g, (s.c_in, s.c_in), rows, wp, buf, |image, padded| padded.copy_from_slice(image));
}

/// [`fill_padded`] for any stored form of a pixel: each image row's `cols` pixels of
/// `c_in` values go through `convert` into `cols` pixels of `per_pixel` values (`channels` =
/// (c_in, per_pixel)); the padding is `T::default()`. `conv_direct_bf16` stores pairs.
pub(crate) fn fill_padded_with<T: Copy + Default>(
    x: &[f32],
    g: &Geometry,
    channels: (usize, usize),
    rows: &Range<usize>,
    wp: usize,
    buf: &mut Vec<T>,
    convert: impl Fn(&[f32], &mut [T]),
) {
    let (c, per_pixel) = channels;
    buf.resize(padded_height(g, rows.len(), wp) * wp * per_pixel, T::default());
    // Padded columns pad_left.. hold the image's columns 0.. (as many as fit in wp).
    let left = g.pad_left.min(wp);
    let cols = g.iw.min(wp - left);
    for (pr, row) in buf.chunks_exact_mut(wp * per_pixel).enumerate() {
        let image_row = (rows.start + pr).checked_sub(g.pad_top).filter(|&r| r < g.ih && pr < rows.len() + g.kh - 1);
        match image_row {
            Some(r) => {
                let (before, rest) = row.split_at_mut(left * per_pixel);
                let (inside, after) = rest.split_at_mut(cols * per_pixel);
                before.fill(T::default());
                convert(&x[r * g.iw * c..][..cols * c], inside);
                after.fill(T::default());
            }
            None => row.fill(T::default()),
        }
    }
}

/// The most pixels a tile of any copy of the kernel has.
pub(crate) const MAX_TILE_PIXELS: usize = 28;

/// Output rows `rows` of one image: `y` ([rows.len(), ow, c_out]) = conv(`x` [ih, iw, c_in], w)
/// + b, then ReLU if asked. `buf` is reused for the padded rows.
pub fn forward_direct_rows(x: &[f32], s: DirectConv, rows: Range<usize>, buf: &mut Vec<f32>, y: &mut [f32]) {
    let g = s.g;
    assert_eq!((g.sh, g.sw), (1, 1), "forward_direct_rows: stride 1 only");
    assert!(x.len() >= g.ih * g.iw * s.c_in, "forward_direct_rows: x too short");
    assert_eq!(s.w.len(), g.kh * g.kw * s.c_in * s.c_out, "forward_direct_rows: w of another shape");
    assert_eq!(s.b.len(), s.c_out, "forward_direct_rows: b of another length");
    assert!(rows.end <= g.oh, "forward_direct_rows: rows past the output");
    assert_eq!(y.len(), rows.len() * g.ow * s.c_out, "forward_direct_rows: y of another length");
    if rows.is_empty() {
        return;
    }
    // The padded width: ow + kw - 1 (stride 1).
    let wp = g.ow + g.kw - 1;
    fill_padded(x, &s, &rows, wp, buf);
    let wide = WideRows { wp, ow: g.ow, pixels: (rows.len() - 1) * wp + g.ow };
    tiles(buf, s, wide, y);
}

/// The output pixels numbered on wide rows: pixel q is (q / wp, q % wp), stored if its column
/// is under ow; `pixels` wide pixels up to the last stored one.
#[derive(Clone, Copy)]
pub(crate) struct WideRows {
    pub(crate) wp: usize,
    pub(crate) ow: usize,
    pub(crate) pixels: usize,
}

impl WideRows {
    /// Where wide pixel q goes in the output (in pixels), if it is stored.
    #[inline(always)]
    pub(crate) fn out_pixel(&self, q: usize) -> Option<usize> {
        let (i, j) = (q / self.wp, q % self.wp);
        (j < self.ow && q < self.pixels).then_some(i * self.ow + j)
    }
}

#[cfg(target_arch = "x86_64")]
fn tiles(xp: &[f32], s: DirectConv, wide: WideRows, y: &mut [f32]) {
    use crate::ops::simd::{avx2_allowed, avx512bf16_allowed};
    if avx512bf16_allowed() {
        // SAFETY: the level allows AVX-512 (F, VL, BW) with AVX2 and FMA, so the CPU has them.
        return unsafe { x86::tiles_avx512(xp, s, wide, y) };
    }
    if avx2_allowed() {
        // SAFETY: the level allows AVX2, so the CPU has AVX2 and FMA.
        return unsafe { x86::tiles_avx2(xp, s, wide, y) };
    }
    tiles_portable(xp, s, wide, y)
}

#[cfg(not(target_arch = "x86_64"))]
fn tiles(xp: &[f32], s: DirectConv, wide: WideRows, y: &mut [f32]) {
    tiles_portable(xp, s, wide, y)
}

/// Where tap (ki, kj) starts in the padded rows, relative to the pixel: (ki * wp + kj) * c_in.
#[inline(always)]
fn tap_offset(s: &DirectConv, wp: usize, t: usize) -> usize {
    ((t / s.g.kw) * wp + t % s.g.kw) * s.c_in
}

/// The portable copy: one wide pixel and up to 16 output channels at a time, in plain loops.
fn tiles_portable(xp: &[f32], s: DirectConv, wide: WideRows, y: &mut [f32]) {
    const CO: usize = 16;
    let taps = s.g.kh * s.g.kw;
    for q in 0..wide.pixels {
        let Some(out) = wide.out_pixel(q) else { continue };
        for co0 in (0..s.c_out).step_by(CO) {
            let co = CO.min(s.c_out - co0);
            let mut acc = [0.0f32; CO];
            for t in 0..taps {
                let xs = &xp[q * s.c_in + tap_offset(&s, wide.wp, t)..][..s.c_in];
                for (ci, &xv) in xs.iter().enumerate() {
                    let ws = &s.w[(t * s.c_in + ci) * s.c_out + co0..][..co];
                    for (a, &wv) in acc.iter_mut().zip(ws) {
                        *a = xv.mul_add(wv, *a);
                    }
                }
            }
            finish_pixel(&mut y[out * s.c_out + co0..][..co], &acc, &s.b[co0..], s.relu);
        }
    }
}

/// One pixel's block of outputs from its sums: sum + b, then ReLU if asked (a NaN stays NaN).
/// The plain copies' epilogue, here and in `conv_direct_bf16`.
#[inline(always)]
pub(crate) fn finish_pixel(y_px: &mut [f32], acc: &[f32], b: &[f32], relu: bool) {
    for ((v, a), &b) in y_px.iter_mut().zip(acc).zip(b) {
        let sum = a + b;
        *v = if relu && sum < 0.0 { 0.0 } else { sum };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The vector copies: a tile of P wide pixels x NV vectors of output channels in registers
    //! (AVX-512: 28 accumulators of 16 lanes, P x NV = 28, 14 x 2, 9 x 3, 7 x 4; AVX2: 12 of 8
    //! lanes, 12 x 1, 6 x 2), one load of w per vector and one broadcast of xp per pixel for
    //! each tap and input channel; masked loads and stores for a last, narrower vector.
    use std::arch::x86_64::*;

    use super::{tap_offset, DirectConv, WideRows};

    /// The kernel `$block::<NV, P, CI>` with the input channels as a constant where they are
    /// one of the counts the networks have (1, 3, 16, 32: a tile's pixels then sit at fixed
    /// offsets, with no address arithmetic in the loop), else read at run time (CI = 0).
    macro_rules! by_channels {
        ($block:ident, $nv:literal, $p:literal, $c_in:expr, ($($arg:expr),*)) => {
            match $c_in {
                1 => $block::<$nv, $p, 1>($($arg),*),
                3 => $block::<$nv, $p, 3>($($arg),*),
                16 => $block::<$nv, $p, 16>($($arg),*),
                32 => $block::<$nv, $p, 32>($($arg),*),
                _ => $block::<$nv, $p, 0>($($arg),*),
            }
        };
    }

    /// # Safety
    /// The CPU must have AVX-512 F, VL and BW, AVX2 and FMA; `xp` must hold the padded rows
    /// (`padded_height`) and `y` the output rows of `wide`.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx2,fma")]
    pub(super) unsafe fn tiles_avx512(xp: &[f32], s: DirectConv, wide: WideRows, y: &mut [f32]) {
        let vectors = s.c_out.div_ceil(16);
        // Blocks of 4 vectors (64 channels), the last of what is left.
        for v0 in (0..vectors).step_by(4) {
            let co0 = v0 * 16;
            // SAFETY: the caller's promises; the block is inside the output channels.
            unsafe {
                match (vectors - v0).min(4) {
                    1 => by_channels!(block_avx512, 1, 28, s.c_in, (xp, s, wide, co0, y)),
                    2 => by_channels!(block_avx512, 2, 14, s.c_in, (xp, s, wide, co0, y)),
                    3 => by_channels!(block_avx512, 3, 9, s.c_in, (xp, s, wide, co0, y)),
                    _ => by_channels!(block_avx512, 4, 7, s.c_in, (xp, s, wide, co0, y)),
                }
            }
        }
    }

    /// Lanes l < n of a 16-lane mask (all of them from 16 on).
    fn lanes16(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            (1u16 << n) - 1
        }
    }

    #[inline(always)]
    unsafe fn block_avx512<const NV: usize, const P: usize, const CI: usize>(
        xp: &[f32],
        s: DirectConv,
        wide: WideRows,
        co0: usize,
        y: &mut [f32],
    ) {
        let (taps, c_in) = (s.g.kh * s.g.kw, if CI == 0 { s.c_in } else { CI });
        let masks: [__mmask16; NV] = std::array::from_fn(|v| lanes16(s.c_out.saturating_sub(co0 + 16 * v)));
        // SAFETY: co0 + 16 v + lane < c_out for every lane a mask lets through.
        let bias: [__m512; NV] = std::array::from_fn(|v| unsafe { _mm512_maskz_loadu_ps(masks[v], s.b.as_ptr().add(co0 + 16 * v)) });
        for q0 in (0..wide.pixels).step_by(P) {
            let mut acc = [[_mm512_setzero_ps(); NV]; P];
            for t in 0..taps {
                // SAFETY (all pointer use in the loop): the tile's pixels, up to q0 + P, and
                // their taps are inside the padded rows (`padded_height` leaves room for the
                // last tile); w's rows are [c_in, c_out], read under the masks.
                unsafe {
                    let mut x_ci = xp.as_ptr().add(q0 * c_in + tap_offset(&s, wide.wp, t));
                    let mut w_row = s.w.as_ptr().add(t * s.c_in * s.c_out + co0);
                    for _ in 0..c_in {
                        let wv: [__m512; NV] = std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], w_row.add(16 * v)));
                        for (p, a) in acc.iter_mut().enumerate() {
                            let xv = _mm512_set1_ps(*x_ci.add(p * c_in));
                            for v in 0..NV {
                                a[v] = _mm512_fmadd_ps(xv, wv[v], a[v]);
                            }
                        }
                        x_ci = x_ci.add(1);
                        w_row = w_row.add(s.c_out);
                    }
                }
            }
            let zero = _mm512_setzero_ps();
            for (p, a) in acc.iter().enumerate() {
                let Some(out) = wide.out_pixel(q0 + p) else { continue };
                for v in 0..NV {
                    let sum = _mm512_add_ps(a[v], bias[v]);
                    // max(0, sum) is sum when sum is NaN or a zero (the second operand), as in
                    // the plain loops' `if sum < 0.0 { 0.0 } else { sum }`.
                    let value = if s.relu { _mm512_max_ps(zero, sum) } else { sum };
                    // SAFETY: pixel `out` of the output rows, channels under the mask.
                    unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(out * s.c_out + co0 + 16 * v), masks[v], value) };
                }
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; as `tiles_avx512` for the slices.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tiles_avx2(xp: &[f32], s: DirectConv, wide: WideRows, y: &mut [f32]) {
        let vectors = s.c_out.div_ceil(8);
        for v0 in (0..vectors).step_by(2) {
            // SAFETY: as in `tiles_avx512`.
            unsafe {
                match vectors - v0 {
                    1 => by_channels!(block_avx2, 1, 12, s.c_in, (xp, s, wide, v0 * 8, y)),
                    _ => by_channels!(block_avx2, 2, 6, s.c_in, (xp, s, wide, v0 * 8, y)),
                }
            }
        }
    }

    /// Lanes l < n of an 8-lane mask (all ones where on).
    fn lanes8(n: usize) -> __m256i {
        let on: [i32; 8] = std::array::from_fn(|l| if l < n { -1 } else { 0 });
        // SAFETY: an unaligned load of eight i32 from a local array.
        unsafe { _mm256_loadu_si256(on.as_ptr().cast()) }
    }

    #[inline(always)]
    unsafe fn block_avx2<const NV: usize, const P: usize, const CI: usize>(
        xp: &[f32],
        s: DirectConv,
        wide: WideRows,
        co0: usize,
        y: &mut [f32],
    ) {
        let (taps, c_in) = (s.g.kh * s.g.kw, if CI == 0 { s.c_in } else { CI });
        let masks: [__m256i; NV] = std::array::from_fn(|v| lanes8(s.c_out.saturating_sub(co0 + 8 * v)));
        // SAFETY: masked-off lanes of a maskload are not read.
        let bias: [__m256; NV] = std::array::from_fn(|v| unsafe { _mm256_maskload_ps(s.b.as_ptr().add(co0 + 8 * v), masks[v]) });
        for q0 in (0..wide.pixels).step_by(P) {
            let mut acc = [[_mm256_setzero_ps(); NV]; P];
            for t in 0..taps {
                // SAFETY: as in `block_avx512`.
                unsafe {
                    let mut x_ci = xp.as_ptr().add(q0 * c_in + tap_offset(&s, wide.wp, t));
                    let mut w_row = s.w.as_ptr().add(t * s.c_in * s.c_out + co0);
                    for _ in 0..c_in {
                        let wv: [__m256; NV] = std::array::from_fn(|v| _mm256_maskload_ps(w_row.add(8 * v), masks[v]));
                        for (p, a) in acc.iter_mut().enumerate() {
                            let xv = _mm256_broadcast_ss(&*x_ci.add(p * c_in));
                            for v in 0..NV {
                                a[v] = _mm256_fmadd_ps(xv, wv[v], a[v]);
                            }
                        }
                        x_ci = x_ci.add(1);
                        w_row = w_row.add(s.c_out);
                    }
                }
            }
            let zero = _mm256_setzero_ps();
            for (p, a) in acc.iter().enumerate() {
                let Some(out) = wide.out_pixel(q0 + p) else { continue };
                for v in 0..NV {
                    let sum = _mm256_add_ps(a[v], bias[v]);
                    let value = if s.relu { _mm256_max_ps(zero, sum) } else { sum };
                    // SAFETY: pixel `out` of the output rows, channels under the mask.
                    unsafe { _mm256_maskstore_ps(y.as_mut_ptr().add(out * s.c_out + co0 + 8 * v), masks[v], value) };
                }
            }
        }
    }
}

/// The same sums in plain loops over one image, one output value at a time: the tests' oracle
/// (taps in the padding multiply a zero, as in the kernel).
pub fn forward_direct_ref(x: &[f32], s: DirectConv, y: &mut [f32]) {
    let g = s.g;
    for i in 0..g.oh {
        for j in 0..g.ow {
            for co in 0..s.c_out {
                let mut sum = 0.0f32;
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        for ci in 0..s.c_in {
                            let xv = match (g.in_row(i, ki), g.in_col(j, kj)) {
                                (Some(r), Some(c)) => x[(r * g.iw + c) * s.c_in + ci],
                                _ => 0.0,
                            };
                            sum = xv.mul_add(s.w[((ki * g.kw + kj) * s.c_in + ci) * s.c_out + co], sum);
                        }
                    }
                }
                let sum = sum + s.b[co];
                y[(i * g.ow + j) * s.c_out + co] = if s.relu && sum < 0.0 { 0.0 } else { sum };
            }
        }
    }
}
