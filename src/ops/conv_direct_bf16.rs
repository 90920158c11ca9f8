//! The direct convolution (`conv_direct`) with bf16 products, on VDPBF16PS's chain: the
//! winograd family's kernel for the layers float32 computes directly (stride 1, at most 32
//! channels each side: the ResNet's 3 -> 16 and 16 -> 32 at 32x32, and the 32 -> 16 of its
//! input gradient).
//!
//! ```text
//!   y[i, j, co] = b[co] + sum over ki, kj, ci of xp[i + ki, j + kj, ci] * w[ki, kj, ci, co]
//! ```
//!
//! as in `conv_direct` (the same wide rows, the same tiles of pixels x vectors of output
//! channels in registers), with xp and w rounded to bf16 and taken two input channels at a
//! time: the pair (2p, 2p + 1) of a pixel is one u32 (an odd c_in gets a zero channel), and
//! the weights are packed as the matching column pairs, `[tap][pair][c_out rounded up to 16]`.
//! One VDPBF16PS then adds a pair's two products to 16 outputs, where float32 needs two FMAs.
//! Every output is one chain of [`dot_pair`] from zero over the taps (row by row) and, within
//! a tap, the pairs in order (the family's chain, `Chain::Dot`), then + b (then ReLU): the
//! AVX512-BF16 kernel and the portable emulation give the same bits, those of
//! [`forward_direct_bf16_ref`].
//!
//! The padded rows are converted to pairs as they are padded: no rounded float32 copy of the
//! input is written, and the pairs take half its bytes.

use std::ops::Range;

use super::bf16::{interleave_rows, rows_to_pairs};
use super::conv_direct::{padded_height, DirectConv, WideRows};
use super::gemm_bf16::{chain_dot, dot_pair};
use super::simd::simd_dispatch;
use super::window::Geometry;

/// Output channels per vector: a packed weight row is padded to a multiple of them.
const LANES: usize = 16;

/// Pairs per pixel: the input channels, halved and rounded up.
fn pairs_of(c_in: usize) -> usize {
    c_in.div_ceil(2)
}

/// The weights of `s` (HWIO) as the kernel's right operand: `dst[(t * cp + p) * ldw + co]` =
/// the pair (w[t][2p][co], w[t][2p + 1][co]) rounded to bf16, with cp = c_in / 2 rounded up
/// (an odd c_in's last high half zero) and ldw = c_out rounded up to 16 (zeros past c_out).
pub fn pack_weights(s: &DirectConv, dst: &mut Vec<u32>) {
    let (taps, cp, ldw) = (s.g.kh * s.g.kw, pairs_of(s.c_in), s.c_out.next_multiple_of(LANES));
    assert_eq!(s.w.len(), taps * s.c_in * s.c_out, "conv_direct_bf16::pack_weights: w of another shape");
    dst.clear();
    dst.resize(taps * cp * ldw, 0);
    for (t, packed) in dst.chunks_exact_mut(cp * ldw).enumerate() {
        interleave_rows(&s.w[t * s.c_in * s.c_out..][..s.c_in * s.c_out], s.c_in, s.c_out, s.c_out, packed, ldw);
    }
}

/// Fills `buf` with the padded rows (`wp` wide, in pairs) of `x` (one image) that output rows
/// `rows` read: as `conv_direct`'s `fill_padded`, each pixel's channels converted to its
/// pairs. Every value is written once.
fn fill_padded_pairs(x: &[f32], g: &Geometry, c_in: usize, rows: &Range<usize>, wp: usize, buf: &mut Vec<u32>) {
    let cp = pairs_of(c_in);
    buf.resize(padded_height(g, rows.len(), wp) * wp * cp, 0);
    let left = g.pad_left.min(wp);
    let cols = g.iw.min(wp - left);
    for (pr, row) in buf.chunks_exact_mut(wp * cp).enumerate() {
        let image_row = (rows.start + pr).checked_sub(g.pad_top).filter(|&r| r < g.ih && pr < rows.len() + g.kh - 1);
        match image_row {
            Some(r) => {
                let (before, rest) = row.split_at_mut(left * cp);
                let (inside, after) = rest.split_at_mut(cols * cp);
                before.fill(0);
                let src = &x[r * g.iw * c_in..][..cols * c_in];
                if c_in.is_multiple_of(2) {
                    // Pairs never straddle two pixels: the row converts as one run.
                    rows_to_pairs(src, 1, cols * c_in, cols * c_in, inside, cols * cp);
                } else {
                    rows_to_pairs(src, cols, c_in, c_in, inside, cp);
                }
                after.fill(0);
            }
            None => row.fill(0),
        }
    }
}

/// The shape of one call as the kernels see it.
#[derive(Clone, Copy)]
struct Operands<'a> {
    g: &'a Geometry,
    /// Pairs per pixel, and the packed weights' row length.
    cp: usize,
    ldw: usize,
    c_out: usize,
    w: &'a [u32],
    b: &'a [f32],
    relu: bool,
}

impl Operands<'_> {
    /// Where tap t starts in the padded rows, relative to the pixel, in pairs.
    #[inline(always)]
    fn tap_offset(&self, wp: usize, t: usize) -> usize {
        ((t / self.g.kw) * wp + t % self.g.kw) * self.cp
    }
}

/// Output rows `rows` of one image: `y` ([rows.len(), ow, c_out]) = conv(`x` [ih, iw, c_in], w)
/// plus b, then ReLU if asked, with the weights `packed` by [`pack_weights`] from `s.w`. `buf`
/// is reused for the padded rows.
pub fn forward_direct_bf16_rows(x: &[f32], s: DirectConv, packed: &[u32], rows: Range<usize>, buf: &mut Vec<u32>, y: &mut [f32]) {
    let g = s.g;
    let (cp, ldw) = (pairs_of(s.c_in), s.c_out.next_multiple_of(LANES));
    assert_eq!((g.sh, g.sw), (1, 1), "forward_direct_bf16_rows: stride 1 only");
    assert!(x.len() >= g.ih * g.iw * s.c_in, "forward_direct_bf16_rows: x too short");
    assert_eq!(packed.len(), g.kh * g.kw * cp * ldw, "forward_direct_bf16_rows: weights packed for another shape");
    assert_eq!(s.b.len(), s.c_out, "forward_direct_bf16_rows: b of another length");
    assert!(rows.end <= g.oh, "forward_direct_bf16_rows: rows past the output");
    assert_eq!(y.len(), rows.len() * g.ow * s.c_out, "forward_direct_bf16_rows: y of another length");
    if rows.is_empty() {
        return;
    }
    let wp = g.ow + g.kw - 1;
    fill_padded_pairs(x, g, s.c_in, &rows, wp, buf);
    let wide = WideRows { wp, ow: g.ow, pixels: (rows.len() - 1) * wp + g.ow };
    let ops = Operands { g, cp, ldw, c_out: s.c_out, w: packed, b: s.b, relu: s.relu };
    #[cfg(target_arch = "x86_64")]
    if super::simd::avx512bf16_allowed() {
        // SAFETY: the level allows AVX512-BF16 (with F, BW and VL), so the CPU has them; `buf`
        // holds the padded rows the tiles read (`padded_height`), `y` the rows of `wide`, and
        // `packed` the weights of this shape (asserted above).
        return unsafe { x86::tiles(buf, ops, wide, y) };
    }
    tiles_emulated(buf, ops, wide, y)
}

simd_dispatch! {
    /// The portable copy (the emulation): one wide pixel and 16 output channels at a time, each
    /// output's chain pair by pair ([`dot_pair`]).
    fn tiles_emulated => tiles_emulated_plain(xp: &[u32], s: Operands, wide: WideRows, y: &mut [f32])
}

#[inline(always)]
fn tiles_emulated_plain(xp: &[u32], s: Operands, wide: WideRows, y: &mut [f32]) {
    let taps = s.g.kh * s.g.kw;
    for q in 0..wide.pixels {
        let Some(out) = wide.out_pixel(q) else { continue };
        for co0 in (0..s.c_out).step_by(LANES) {
            let mut acc = [0.0f32; LANES];
            for t in 0..taps {
                let pairs = &xp[q * s.cp + s.tap_offset(wide.wp, t)..][..s.cp];
                for (p, &a) in pairs.iter().enumerate() {
                    let w_row = &s.w[(t * s.cp + p) * s.ldw + co0..][..LANES];
                    for (v, &b) in acc.iter_mut().zip(w_row) {
                        *v = dot_pair(*v, a, b);
                    }
                }
            }
            let co = LANES.min(s.c_out - co0);
            let y_px = &mut y[out * s.c_out + co0..][..co];
            for ((v, a), &b) in y_px.iter_mut().zip(acc).zip(&s.b[co0..]) {
                let sum = a + b;
                *v = if s.relu && sum < 0.0 { 0.0 } else { sum };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX512-BF16 copy: a tile of P wide pixels x NV vectors of 16 output channels in
    //! registers (28 accumulators: 28 x 1, 14 x 2, 9 x 3, 7 x 4), per tap and pair one load of
    //! the weights per vector, one broadcast of the pair per pixel and P x NV VDPBF16PS.
    use std::arch::x86_64::*;

    use super::{Operands, WideRows};
    use crate::ops::bf16::lane_mask;

    /// The block `block::<NV, P, CP>` with the pairs per pixel as a constant where they are one
    /// of the counts the networks have (2: 3 channels, 8: 16, 16: 32), else read at run time.
    macro_rules! by_pairs {
        ($nv:literal, $p:literal, $cp:expr, ($($arg:expr),*)) => {
            match $cp {
                2 => block::<$nv, $p, 2>($($arg),*),
                8 => block::<$nv, $p, 8>($($arg),*),
                16 => block::<$nv, $p, 16>($($arg),*),
                _ => block::<$nv, $p, 0>($($arg),*),
            }
        };
    }

    /// # Safety
    /// The CPU must have AVX-512 F, BW, VL and BF16; `xp` must hold the padded rows
    /// (`padded_height`), `s.w` the packed weights and `y` the output rows of `wide`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn tiles(xp: &[u32], s: Operands, wide: WideRows, y: &mut [f32]) {
        let vectors = s.c_out.div_ceil(16);
        for v0 in (0..vectors).step_by(4) {
            // SAFETY: the caller's promises; the block is inside the packed rows.
            unsafe {
                match (vectors - v0).min(4) {
                    1 => by_pairs!(1, 28, s.cp, (xp, s, wide, 16 * v0, y)),
                    2 => by_pairs!(2, 14, s.cp, (xp, s, wide, 16 * v0, y)),
                    3 => by_pairs!(3, 9, s.cp, (xp, s, wide, 16 * v0, y)),
                    _ => by_pairs!(4, 7, s.cp, (xp, s, wide, 16 * v0, y)),
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn block<const NV: usize, const P: usize, const CP: usize>(xp: &[u32], s: Operands, wide: WideRows, co0: usize, y: &mut [f32]) {
        let (taps, cp) = (s.g.kh * s.g.kw, if CP == 0 { s.cp } else { CP });
        let masks: [__mmask16; NV] = std::array::from_fn(|v| lane_mask(s.c_out.saturating_sub(co0 + 16 * v)));
        // SAFETY: co0 + 16 v + lane < c_out for every lane a mask lets through.
        let bias: [__m512; NV] = std::array::from_fn(|v| unsafe { _mm512_maskz_loadu_ps(masks[v], s.b.as_ptr().add(co0 + 16 * v)) });
        for q0 in (0..wide.pixels).step_by(P) {
            let mut acc = [[_mm512_setzero_ps(); NV]; P];
            for t in 0..taps {
                // SAFETY (all pointer use in the loop): the tile's pixels, up to q0 + P, and
                // their taps are inside the padded rows (`padded_height` leaves room for the
                // last tile); the packed rows are ldw >= co0 + 16 NV long.
                unsafe {
                    let mut x_pair = xp.as_ptr().add(q0 * cp + s.tap_offset(wide.wp, t));
                    let mut w_row = s.w.as_ptr().add(t * cp * s.ldw + co0);
                    for _ in 0..cp {
                        let wv: [__m512bh; NV] = std::array::from_fn(|v| {
                            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(w_row.add(16 * v) as *const _))
                        });
                        for (p, a) in acc.iter_mut().enumerate() {
                            let xv: __m512bh = std::mem::transmute(_mm512_set1_epi32(*x_pair.add(p * cp) as i32));
                            for v in 0..NV {
                                a[v] = _mm512_dpbf16_ps(a[v], xv, wv[v]);
                            }
                        }
                        x_pair = x_pair.add(1);
                        w_row = w_row.add(s.ldw);
                    }
                }
            }
            let zero = _mm512_setzero_ps();
            for (p, a) in acc.iter().enumerate() {
                let Some(out) = wide.out_pixel(q0 + p) else { continue };
                for v in 0..NV {
                    let sum = _mm512_add_ps(a[v], bias[v]);
                    // max(0, sum) is sum when sum is NaN or a zero, as in the plain loops.
                    let value = if s.relu { _mm512_max_ps(zero, sum) } else { sum };
                    // SAFETY: pixel `out` of the output rows, channels under the mask.
                    unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(out * s.c_out + co0 + 16 * v), masks[v], value) };
                }
            }
        }
    }
}

/// The same sums in plain loops over one image, one output value at a time: each output's
/// pairs gathered over (tap, pair) and summed by `gemm_bf16::chain_dot` from zero (taps in the
/// padding pair zeros, as in the kernel). The tests' oracle.
pub fn forward_direct_bf16_ref(x: &[f32], s: DirectConv, y: &mut [f32]) {
    use super::bf16::pair;
    let (g, cp) = (s.g, pairs_of(s.c_in));
    let channel = |v: &[f32], c: usize| if c < s.c_in { v[c] } else { 0.0 };
    for i in 0..g.oh {
        for j in 0..g.ow {
            for co in 0..s.c_out {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        let tap = &s.w[(ki * g.kw + kj) * s.c_in * s.c_out..][..s.c_in * s.c_out];
                        let pixel = match (g.in_row(i, ki), g.in_col(j, kj)) {
                            (Some(r), Some(c)) => Some(&x[(r * g.iw + c) * s.c_in..][..s.c_in]),
                            _ => None,
                        };
                        for p in 0..cp {
                            let weight = |c: usize| if c < s.c_in { tap[c * s.c_out + co] } else { 0.0 };
                            b.push(pair(weight(2 * p), weight(2 * p + 1)));
                            a.push(pixel.map_or(0, |px| pair(channel(px, 2 * p), channel(px, 2 * p + 1))));
                        }
                    }
                }
                let sum = chain_dot(0.0, &a, &b) + s.b[co];
                y[(i * g.ow + j) * s.c_out + co] = if s.relu && sum < 0.0 { 0.0 } else { sum };
            }
        }
    }
}
