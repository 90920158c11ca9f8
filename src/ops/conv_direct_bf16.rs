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
//! Every output is one chain of `gemm_bf16::dot_pair` from zero over the kernel's rows, within a row
//! over the pairs, and within a pair over the row's taps (so that the kernel broadcasts each
//! pixel's pair once for all the taps that read it), then + b (then ReLU): the family's chain
//! (`Chain::Dot`) in this order. The AVX512-BF16 kernel and the portable emulation give the
//! same bits, those of [`forward_direct_bf16_ref`].
//!
//! The padded rows are converted to pairs as they are padded: no rounded float32 copy of the
//! input is written, and the pairs take half its bytes.

use std::ops::Range;

use super::bf16::{interleave_rows, rows_to_pairs};
use super::conv_direct::{fill_padded_with, finish_pixel, DirectConv, WideRows};
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
/// the pair `(w[t][2p][co], w[t][2p + 1][co])` rounded to bf16, with cp = c_in / 2 rounded up
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
/// `rows` read: `conv_direct`'s padding, each pixel's channels converted to its pairs.
fn fill_padded_pairs(x: &[f32], g: &Geometry, c_in: usize, rows: &Range<usize>, wp: usize, buf: &mut Vec<u32>) {
    let cp = pairs_of(c_in);
    fill_padded_with(x, g, (c_in, cp), rows, wp, buf, |image, pairs| {
        let cols = pairs.len() / cp;
        if c_in.is_multiple_of(2) {
            // Pairs never straddle two pixels: the row converts as one run.
            rows_to_pairs(image, 1, cols * c_in, cols * c_in, pairs, cols * cp);
        } else {
            rows_to_pairs(image, cols, c_in, c_in, pairs, cp);
        }
    });
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
    /// output's chain pair by pair ([`dot_pair`]) in the kernel's order.
    fn tiles_emulated => tiles_emulated_plain(xp: &[u32], s: Operands, wide: WideRows, y: &mut [f32])
}

#[inline(always)]
fn tiles_emulated_plain(xp: &[u32], s: Operands, wide: WideRows, y: &mut [f32]) {
    let (kh, kw) = (s.g.kh, s.g.kw);
    for q in 0..wide.pixels {
        let Some(out) = wide.out_pixel(q) else { continue };
        for co0 in (0..s.c_out).step_by(LANES) {
            let mut acc = [0.0f32; LANES];
            for ki in 0..kh {
                for p in 0..s.cp {
                    for kj in 0..kw {
                        let a = xp[(q + ki * wide.wp + kj) * s.cp + p];
                        let w_row = &s.w[((ki * kw + kj) * s.cp + p) * s.ldw + co0..][..LANES];
                        for (v, &b) in acc.iter_mut().zip(w_row) {
                            *v = dot_pair(*v, a, b);
                        }
                    }
                }
            }
            let co = LANES.min(s.c_out - co0);
            finish_pixel(&mut y[out * s.c_out + co0..][..co], &acc, &s.b[co0..], s.relu);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX512-BF16 copy: a tile of P wide pixels x NV vectors of 16 output channels in
    //! registers. For each kernel row and pair, the KW taps' weights are loaded (KW x NV
    //! vectors) and each of the P + KW - 1 pixels of the padded row under the tile is broadcast
    //! once, into a window of the KW pixels the current output reads, slid along the tile
    //! (P x KW x NV VDPBF16PS for P + KW - 1 broadcasts: a third of one a product at 3x3, where
    //! a broadcast per product left the 16-channel outputs of the ResNet's dX at 61% of the
    //! instruction's peak). P x NV + KW x NV + KW registers of 32; kernel widths other than 1,
    //! 2 and 3 take one broadcast per product (`block_any_width`), in the same order.
    use std::arch::x86_64::*;

    use super::{Operands, WideRows};
    use crate::ops::bf16::lane_mask;
    use crate::ops::conv_direct::MAX_TILE_PIXELS;

    /// `$block::<NV, P, KW, CP>` with the pairs per pixel as a constant where they are one of
    /// the counts the networks have (2: 3 channels, 8: 16, 16: 32), else read at run time.
    macro_rules! by_pairs {
        ($block:ident, $nv:literal, $p:literal, $kw:literal, $cp:expr, ($($arg:expr),*)) => {
            match $cp {
                2 => $block::<$nv, $p, $kw, 2>($($arg),*),
                8 => $block::<$nv, $p, $kw, 8>($($arg),*),
                16 => $block::<$nv, $p, $kw, 16>($($arg),*),
                _ => $block::<$nv, $p, $kw, 0>($($arg),*),
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
            let co0 = 16 * v0;
            // SAFETY: the caller's promises; the block is inside the packed rows. Tiles of P
            // pixels for P x NV + KW x NV + KW <= 32 registers (at most `MAX_TILE_PIXELS`).
            unsafe {
                match ((vectors - v0).min(4), s.g.kw) {
                    (1, 1) => by_pairs!(block, 1, 28, 1, s.cp, (xp, s, wide, co0, y)),
                    (2, 1) => by_pairs!(block, 2, 14, 1, s.cp, (xp, s, wide, co0, y)),
                    (3, 1) => by_pairs!(block, 3, 9, 1, s.cp, (xp, s, wide, co0, y)),
                    (_, 1) => by_pairs!(block, 4, 7, 1, s.cp, (xp, s, wide, co0, y)),
                    (1, 2) => by_pairs!(block, 1, 26, 2, s.cp, (xp, s, wide, co0, y)),
                    (2, 2) => by_pairs!(block, 2, 12, 2, s.cp, (xp, s, wide, co0, y)),
                    (3, 2) => by_pairs!(block, 3, 7, 2, s.cp, (xp, s, wide, co0, y)),
                    (_, 2) => by_pairs!(block, 4, 5, 2, s.cp, (xp, s, wide, co0, y)),
                    (1, 3) => by_pairs!(block, 1, 26, 3, s.cp, (xp, s, wide, co0, y)),
                    (2, 3) => by_pairs!(block, 2, 10, 3, s.cp, (xp, s, wide, co0, y)),
                    (3, 3) => by_pairs!(block, 3, 6, 3, s.cp, (xp, s, wide, co0, y)),
                    (_, 3) => by_pairs!(block, 4, 3, 3, s.cp, (xp, s, wide, co0, y)),
                    (1, _) => block_any_width::<1, 28>(xp, s, wide, co0, y),
                    (2, _) => block_any_width::<2, 14>(xp, s, wide, co0, y),
                    (3, _) => block_any_width::<3, 9>(xp, s, wide, co0, y),
                    _ => block_any_width::<4, 7>(xp, s, wide, co0, y),
                }
            }
        }
    }

    /// The bias of the block's channels and the masks of its vectors.
    #[inline(always)]
    unsafe fn bias_and_masks<const NV: usize>(s: &Operands, co0: usize) -> ([__m512; NV], [__mmask16; NV]) {
        let masks: [__mmask16; NV] = std::array::from_fn(|v| lane_mask(s.c_out.saturating_sub(co0 + 16 * v)));
        // SAFETY: co0 + 16 v + lane < c_out for every lane a mask lets through.
        let bias = std::array::from_fn(|v| unsafe { _mm512_maskz_loadu_ps(masks[v], s.b.as_ptr().add(co0 + 16 * v)) });
        (bias, masks)
    }

    /// The tile's outputs + b (then ReLU), the stored pixels only, channels under the masks.
    #[inline(always)]
    unsafe fn store<const NV: usize, const P: usize>(
        acc: &[[__m512; NV]; P],
        (bias, masks): &([__m512; NV], [__mmask16; NV]),
        s: &Operands,
        wide: &WideRows,
        (q0, co0): (usize, usize),
        y: &mut [f32],
    ) {
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

    #[inline(always)]
    unsafe fn weights<const NV: usize>(row: *const u32) -> [__m512bh; NV] {
        // SAFETY (the caller's): the packed row holds 16 NV pairs from `row`.
        std::array::from_fn(|v| unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(row.add(16 * v) as *const _)) })
    }

    #[inline(always)]
    unsafe fn broadcast(pair: *const u32) -> __m512bh {
        // SAFETY (the caller's): `pair` is inside the padded rows.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*pair as i32)) }
    }

    // The unrolled code has literal indices: `0 + 1 < P`, `window[1 - 1]`.
    #[allow(clippy::identity_op, clippy::eq_op)]
    #[inline(always)]
    unsafe fn block<const NV: usize, const P: usize, const KW: usize, const CP: usize>(
        xp: &[u32],
        s: Operands,
        wide: WideRows,
        co0: usize,
        y: &mut [f32],
    ) {
        // The unrolled loops below cover I < 28, K < 3 and V < 4; the padded rows, a tile of
        // `MAX_TILE_PIXELS`.
        const { assert!(P <= 28 && P <= MAX_TILE_PIXELS && KW <= 3 && NV <= 4) };
        let cp = if CP == 0 { s.cp } else { CP };
        let ends = bias_and_masks::<NV>(&s, co0);
        for q0 in (0..wide.pixels).step_by(P) {
            let mut acc = [[_mm512_setzero_ps(); NV]; P];
            for ki in 0..s.g.kh {
                // SAFETY (all pointer use in the loop): the tile's pixels and the KW - 1 after
                // them, in each of the kernel's rows, are inside the padded rows
                // (`padded_height` leaves room for the last tile); the packed rows are
                // ldw >= co0 + 16 NV long.
                unsafe {
                    let mut x_pair = xp.as_ptr().add((q0 + ki * wide.wp) * cp);
                    let mut w_row = s.w.as_ptr().add(ki * KW * cp * s.ldw + co0);
                    for _ in 0..cp {
                        let w: [[__m512bh; NV]; KW] = std::array::from_fn(|kj| weights::<NV>(w_row.add(kj * cp * s.ldw)));
                        // The pairs of the KW pixels output p reads, slid one pixel on after
                        // each output: one broadcast per pixel.
                        let mut window: [__m512bh; KW] = std::array::from_fn(|kj| broadcast(x_pair.add(kj * cp)));
                        // Unrolled by hand, every index a constant (a loop this long is not
                        // unrolled, and its accumulators would live on the stack): output I
                        // of the tile for I < P, tap K < KW, vector V < NV.
                        seq_macro::seq!(I in 0..28 {
                            if I < P {
                                seq_macro::seq!(K in 0..3 {
                                    if K < KW {
                                        seq_macro::seq!(V in 0..4 {
                                            if V < NV {
                                                acc[I][V] = _mm512_dpbf16_ps(acc[I][V], window[K], w[K][V]);
                                            }
                                        });
                                    }
                                });
                                if I + 1 < P {
                                    seq_macro::seq!(K in 1..3 {
                                        if K < KW {
                                            window[K - 1] = window[K];
                                        }
                                    });
                                    window[KW - 1] = broadcast(x_pair.add((I + KW) * cp));
                                }
                            }
                        });
                        x_pair = x_pair.add(1);
                        w_row = w_row.add(s.ldw);
                    }
                }
            }
            store(&acc, &ends, &s, &wide, (q0, co0), y);
        }
    }

    /// Any kernel width, one broadcast per product, the same order: kernel row, pair, tap.
    #[inline(always)]
    unsafe fn block_any_width<const NV: usize, const P: usize>(xp: &[u32], s: Operands, wide: WideRows, co0: usize, y: &mut [f32]) {
        const { assert!(P <= MAX_TILE_PIXELS) };
        let (cp, kw) = (s.cp, s.g.kw);
        let ends = bias_and_masks::<NV>(&s, co0);
        for q0 in (0..wide.pixels).step_by(P) {
            let mut acc = [[_mm512_setzero_ps(); NV]; P];
            for ki in 0..s.g.kh {
                for p in 0..cp {
                    for kj in 0..kw {
                        // SAFETY: as in `block`.
                        unsafe {
                            let x_pair = xp.as_ptr().add((q0 + ki * wide.wp + kj) * cp + p);
                            let w = weights::<NV>(s.w.as_ptr().add(((ki * kw + kj) * cp + p) * s.ldw + co0));
                            for (pixel, a) in acc.iter_mut().enumerate() {
                                let xv = broadcast(x_pair.add(pixel * cp));
                                for v in 0..NV {
                                    a[v] = _mm512_dpbf16_ps(a[v], xv, w[v]);
                                }
                            }
                        }
                    }
                }
            }
            store(&acc, &ends, &s, &wide, (q0, co0), y);
        }
    }
}

/// The same sums in plain loops over one image, one output value at a time: each output's
/// pairs gathered over (kernel row, pair, tap) and summed by `gemm_bf16::chain_dot` from zero (taps in the
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
                    for p in 0..cp {
                        for kj in 0..g.kw {
                            let tap = &s.w[(ki * g.kw + kj) * s.c_in * s.c_out..][..s.c_in * s.c_out];
                            let pixel = match (g.in_row(i, ki), g.in_col(j, kj)) {
                                (Some(r), Some(c)) => Some(&x[(r * g.iw + c) * s.c_in..][..s.c_in]),
                                _ => None,
                            };
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
