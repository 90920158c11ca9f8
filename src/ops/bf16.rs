//! bfloat16: the top half of a float32 (sign, the same 8-bit exponent, 7 of the 23 mantissa
//! bits), so the same range with about 3 significant decimal digits.
//!
//! Rounding, exactly as the hardware's VCVTNEPS2BF16 does it (checked bit for bit over
//! random and edge values in the tests):
//! ```text
//!   nearest, ties to even:   bits + 0x7fff + (bit 16 of bits), then the top 16 bits
//!   subnormal float32:       zero of the same sign (the instruction treats them as zero)
//!   NaN:                     NaN, the quiet bit set
//! ```
//! The GEMM takes its operands as *pairs*: two bfloat16 values of consecutive k in one u32,
//! the lower k in the low half, because the dot-product instruction (VDPBF16PS) multiplies and
//! adds two products per 32-bit lane. Two layouts of pairs serve every operand:
//!
//!   row pairs     `dst[r * ld + p] = (a[r][2p], a[r][2p + 1])`: a row-major matrix's rows,
//!                 converted in place order (`rows_to_pairs`)
//!   column pairs  `dst[p * ld + j] = (b[2p][j], b[2p + 1][j])`: two rows interleaved, so that
//!                 16 columns of one pair are one vector (`interleave_rows`)
//!
//! An odd k is padded with a zero. Each converter has a portable body and an AVX512-BF16 one
//! (`simd::avx512bf16_allowed`); both give the same bits.

use super::simd::simd_dispatch;

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    // A subnormal becomes a zero of its sign, as the hardware treats it.
    let bits = if x.is_subnormal() { bits & 0x8000_0000 } else { bits };
    // Cannot overflow: the largest finite magnitude 0x7f7f_ffff (+ 0x8000) stays below 2^32
    // with the sign bit too (0xff80_7fff), and it rounds up to infinity, as it should.
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The float32 value of a bfloat16 (exact).
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to bfloat16 and back: the value a bf16 product sees.
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// `dst` = `src` with every value rounded to bf16 and back ([`round_bf16`]), resized to
/// `src`'s length; blocks of values in parallel (each value is rounded on its own, so the
/// threads change no bit).
pub fn round_to_bf16_into(src: &[f32], dst: &mut Vec<f32>) {
    use rayon::prelude::*;
    /// Values per task: 64 KB of each side, enough to pay for the task.
    const BLOCK: usize = 16 * 1024;
    dst.resize(src.len(), 0.0);
    dst.par_chunks_mut(BLOCK).zip(src.par_chunks(BLOCK)).for_each(|(d, s)| round_slice_to_bf16(s, d));
}

simd_dispatch! {
    /// `dst[i]` = `src[i]` rounded to bf16 and back, for equal lengths: written without
    /// branches, so that it compiles to vector code.
    fn round_slice_to_bf16 => round_slice_to_bf16_plain(src: &[f32], dst: &mut [f32])
}

#[inline(always)]
fn round_slice_to_bf16_plain(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        let bits = x.to_bits();
        let sign_only = bits & 0x8000_0000;
        // A subnormal is the zero of its sign; rounding then leaves it there.
        let normal = if x.is_subnormal() { sign_only } else { bits };
        let rounded = normal.wrapping_add(0x7fff + ((normal >> 16) & 1)) & 0xffff_0000;
        let quiet_nan = (bits | 0x0040_0000) & 0xffff_0000;
        *d = f32::from_bits(if x.is_nan() { quiet_nan } else { rounded });
    }
}

/// One pair: `lo` at the lower k (the low half), `hi` at the next.
#[inline(always)]
pub fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// The two values of a pair, as float32: (lower k, next k).
#[inline(always)]
pub fn unpair(p: u32) -> (f32, f32) {
    (from_bf16(p as u16), from_bf16((p >> 16) as u16))
}

/// Row pairs of `rows` rows of `k` values (row `r` at `src[r * src_ld..]`):
/// `dst[r * dst_ld + p] = pair(src[r][2p], src[r][2p + 1])` for p < k.div_ceil(2), the last
/// high half zero when k is odd. `dst_ld >= k.div_ceil(2)`; the rest of each dst row is left.
pub fn rows_to_pairs(src: &[f32], rows: usize, k: usize, src_ld: usize, dst: &mut [u32], dst_ld: usize) {
    let kp = k.div_ceil(2);
    assert!(dst_ld >= kp && (rows == 0 || (src.len() >= (rows - 1) * src_ld + k && dst.len() >= (rows - 1) * dst_ld + kp)));
    #[cfg(target_arch = "x86_64")]
    if crate::ops::simd::avx512bf16_allowed() {
        // SAFETY: the level allows AVX512-BF16; the assert above bounds every row read/written.
        unsafe { hw::rows_to_pairs(src, rows, k, src_ld, dst, dst_ld) };
        return;
    }
    for r in 0..rows {
        let (s, d) = (&src[r * src_ld..][..k], &mut dst[r * dst_ld..][..kp]);
        for (p, out) in d.iter_mut().enumerate() {
            *out = pair(s[2 * p], s.get(2 * p + 1).copied().unwrap_or(0.0));
        }
    }
}

/// Column pairs of a `k x cols` block (row `i` at `src[i * src_ld..]`):
/// `dst[p * dst_ld + j] = pair(src[2p][j], src[2p + 1][j])` for j < cols, and zero for
/// cols <= j < dst_ld (the GEMM's padding); the row 2p + 1 of an odd k reads as zeros.
pub fn interleave_rows(src: &[f32], k: usize, cols: usize, src_ld: usize, dst: &mut [u32], dst_ld: usize) {
    let kp = k.div_ceil(2);
    assert!(dst_ld >= cols && dst.len() >= kp * dst_ld && (k == 0 || src.len() >= (k - 1) * src_ld + cols));
    #[cfg(target_arch = "x86_64")]
    if crate::ops::simd::avx512bf16_allowed() {
        // SAFETY: the level allows AVX512-BF16; the assert above bounds every row read/written.
        unsafe { hw::interleave_rows(src, k, cols, src_ld, dst, dst_ld) };
        return;
    }
    for p in 0..kp {
        let lo = &src[2 * p * src_ld..][..cols];
        let hi = (2 * p + 1 < k).then(|| &src[(2 * p + 1) * src_ld..][..cols]);
        let d = &mut dst[p * dst_ld..][..dst_ld];
        for (j, out) in d[..cols].iter_mut().enumerate() {
            *out = pair(lo[j], hi.map_or(0.0, |h| h[j]));
        }
        d[cols..].fill(0);
    }
}

/// An AVX-512 mask of the first `n` of 16 lanes (all 16 when `n` >= 16).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn lane_mask(n: usize) -> u16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
    }
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use super::lane_mask as lanes;
    use std::arch::x86_64::*;

    /// 16 floats (the first `n`, zeros after) rounded to bf16, each in the low half of a u32.
    #[inline(always)]
    unsafe fn widened(p: *const f32, n: usize) -> __m512i {
        // SAFETY (caller): p..p + n readable; masked lanes are not read.
        let x = _mm512_maskz_loadu_ps(lanes(n), p);
        _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(x)))
    }

    /// SAFETY: the CPU has AVX-512 F, BW and BF16, and the caller's bounds hold (see
    /// `super::rows_to_pairs`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn rows_to_pairs(src: &[f32], rows: usize, k: usize, src_ld: usize, dst: &mut [u32], dst_ld: usize) {
        for r in 0..rows {
            let (s, d) = (src.as_ptr().add(r * src_ld), dst.as_mut_ptr().add(r * dst_ld));
            let mut i = 0;
            while i < k {
                // 16 floats -> 8 pairs: the 16 bf16 in order are the pairs' halves in order.
                let n = (k - i).min(16);
                let h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes(n), s.add(i)));
                let pairs = n.div_ceil(2);
                _mm256_mask_storeu_epi32(
                    d.add(i / 2) as *mut i32,
                    ((1u32 << pairs) - 1) as __mmask8,
                    std::mem::transmute::<__m256bh, __m256i>(h),
                );
                i += 16;
            }
        }
    }

    /// SAFETY: as for `rows_to_pairs`, with `super::interleave_rows`' bounds.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn interleave_rows(src: &[f32], k: usize, cols: usize, src_ld: usize, dst: &mut [u32], dst_ld: usize) {
        for p in 0..k.div_ceil(2) {
            let lo = src.as_ptr().add(2 * p * src_ld);
            let hi = (2 * p + 1 < k).then(|| src.as_ptr().add((2 * p + 1) * src_ld));
            let d = dst.as_mut_ptr().add(p * dst_ld);
            let mut j = 0;
            while j < dst_ld {
                let n = cols.saturating_sub(j).min(16);
                let low = widened(lo.add(j), n);
                let high = match hi {
                    Some(h) => _mm512_slli_epi32::<16>(widened(h.add(j), n)),
                    None => _mm512_setzero_si512(),
                };
                _mm512_mask_storeu_epi32(d.add(j) as *mut i32, lanes(dst_ld - j), _mm512_or_si512(low, high));
                j += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_by_hand() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        // Just above halfway rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(to_bf16(-2.0), 0xc000);
        assert_eq!(to_bf16(f32::MAX), 0x7f80); // rounds up to infinity
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(to_bf16(-f32::from_bits(1)), 0x8000); // subnormal -> -0
        assert_eq!(to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0); // signalling NaN -> quiet
        assert_eq!(from_bf16(0x4049), 3.140625);
        assert_eq!(round_bf16(1.2345), 1.234375);
        assert_eq!(unpair(pair(1.0, -2.0)), (1.0, -2.0));
    }

    #[test]
    fn rounding_a_slice_gives_the_bits_of_rounding_each_value() {
        let mut values = vec![1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -2.0, f32::MAX, f32::INFINITY, -0.0, 0.0];
        values.extend([f32::from_bits(1), -f32::from_bits(0x007f_ffff), f32::from_bits(0x7f80_0001), f32::NAN, -f32::NAN]);
        // And a spread of bit patterns (an LCG over all 32 bits).
        let mut state = 12345u32;
        values.extend((0..40_000).map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f32::from_bits(state)
        }));
        let mut rounded = vec![7.0; 3];
        round_to_bf16_into(&values, &mut rounded);
        assert_eq!(rounded.len(), values.len());
        for (x, r) in values.iter().zip(&rounded) {
            assert_eq!(r.to_bits(), round_bf16(*x).to_bits(), "{x:e} ({:#x})", x.to_bits());
        }
    }
}
