//! A convolution's weight gradient computed directly on the NHWC images, without a column
//! matrix:
//! ```text
//!   dW[ki, kj, ci, co] = sum over images, output pixels (i, j) of
//!                        x[i*sh + ki - pad_top, j*sw + kj - pad_left, ci] * dz[i, j, co]
//! ```
//! (pixels whose tap falls in the padding add nothing). im2col + GEMM writes the column matrix,
//! kh*kw times the input, and the GEMM's narrow output (kh*kw*c_in x c_out) leaves much of its
//! kernel's registers idle; here a block of CI input channels x CO output channels of one tap
//! is held in registers while the pixels stream past: each pixel loads CO values of dz and
//! CI of x (contiguous in NHWC) for CI x CO multiply-adds.
//!
//! Every dW value is one chain of fused multiply-adds over the pixels in order (image, row,
//! column), whatever the block sizes, so every copy of the kernel (portable, AVX2, AVX-512,
//! each with its own block sizes) gives the same bits. The portable copy's `f32::mul_add` is one
//! instruction where the target has FMA (aarch64 always); on an x86 CPU without it (none since
//! 2013, or `CONVNET_SIMD=portable`) it is libm's exact software FMA: the same bits, slowly.

use super::window::Geometry;

/// Where the tap (ki, kj) reads: the output columns j0..j1 whose input column j*sw + kj -
/// pad_left is inside the image (the first of them being `first_in_col`); the rows are checked
/// one by one (`Geometry::in_row`).
struct TapRuns {
    ki: usize,
    cols: std::ops::Range<usize>,
    first_in_col: usize,
}

impl TapRuns {
    fn new(g: &Geometry, ki: usize, kj: usize) -> TapRuns {
        let inside = |j: &usize| g.in_col(*j, kj).is_some();
        let cols = match ((0..g.ow).find(inside), (0..g.ow).rev().find(inside)) {
            (Some(a), Some(b)) => a..b + 1,
            _ => 0..0,
        };
        let first_in_col = g.in_col(cols.start, kj).unwrap_or(0);
        TapRuns { ki, cols, first_in_col }
    }
}

/// Whether the direct kernel beats im2col + GEMM for a layer (measured on the Fashion-MNIST,
/// ResNet, seed and airbench networks, docs/performance.md): with few input channels (1, 3) a
/// block is too thin to fill the registers, and rows shorter than 4 pixels are untried.
pub fn applies(g: &Geometry, c_in: usize) -> bool {
    c_in >= 8 && g.ow >= 4
}

/// The shape of one weight-gradient computation: `images` NHWC images of `g`'s input size with
/// `c_in` channels, the output gradient with `c_out`.
#[derive(Clone, Copy)]
pub struct DirectShape<'a> {
    pub g: &'a Geometry,
    pub images: usize,
    pub c_in: usize,
    pub c_out: usize,
}

/// dW ([kh, kw, c_in, c_out], overwritten) of `images` images `x` ([images, ih, iw, c_in]) and
/// output gradients `dz` ([images, oh, ow, c_out]).
pub fn weight_grad_direct(x: &[f32], dz: &[f32], s: DirectShape, dw: &mut [f32]) {
    let g = s.g;
    assert!(x.len() >= s.images * g.ih * g.iw * s.c_in, "weight_grad_direct: x too short");
    assert!(dz.len() >= s.images * g.oh * g.ow * s.c_out, "weight_grad_direct: dz too short");
    assert_eq!(dw.len(), g.kh * g.kw * s.c_in * s.c_out, "weight_grad_direct: dw of another shape");
    dw.fill(0.0);
    // A tile of output rows at a time (rows of consecutive images for small images; with their
    // input rows about 16 KB of each, and 64 pixels at least), every tap and block over it, so
    // that its pixels are read from L1; each block's sums go on from where the tile before left
    // them, so the order of the additions, and the bits, are the same as over whole images.
    let tile_rows = (4096 / (g.ow * s.c_in.max(s.c_out)).max(1)).max(64_usize.div_ceil(g.ow));
    RUN_STARTS.with_borrow_mut(|starts| {
        for q0 in (0..s.images * g.oh).step_by(tile_rows) {
            for t in 0..g.kh * g.kw {
                let runs = TapRuns::new(g, t / g.kw, t % g.kw);
                if runs.cols.is_empty() {
                    continue;
                }
                starts.clear();
                for q in q0..(q0 + tile_rows).min(s.images * g.oh) {
                    let (img, i) = (q / g.oh, q % g.oh);
                    if let Some(r) = g.in_row(i, runs.ki) {
                        let x_start = ((img * g.ih + r) * g.iw + runs.first_in_col) * s.c_in;
                        starts.push((x_start, ((img * g.oh + i) * g.ow + runs.cols.start) * s.c_out));
                    }
                }
                if starts.is_empty() {
                    continue;
                }
                let pixels = Pixels { starts, per_run: runs.cols.len() };
                tap_grad(x, dz, s, pixels, &mut dw[t * s.c_in * s.c_out..][..s.c_in * s.c_out]);
            }
        }
    });
}

thread_local! {
    /// Where a tile's runs start (`Pixels::starts`), reused from call to call so that a training
    /// step allocates nothing.
    static RUN_STARTS: std::cell::RefCell<Vec<(usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The pixels one call adds: runs of `per_run` pixels along a row, each starting at an offset
/// of x (its first input pixel) and of dz (its first output pixel).
#[derive(Clone, Copy)]
struct Pixels<'a> {
    starts: &'a [(usize, usize)],
    per_run: usize,
}

#[cfg(target_arch = "x86_64")]
fn tap_grad(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, tap: &mut [f32]) {
    use crate::ops::simd::{avx2_allowed, avx512bf16_allowed};
    if avx512bf16_allowed() {
        // SAFETY: the level allows AVX-512 (F, VL, BW) with AVX2 and FMA, so the CPU has them.
        return unsafe { x86::tap_grad_avx512(x, dz, s, p, tap) };
    }
    if avx2_allowed() {
        // SAFETY: the level allows AVX2, so the CPU has AVX2 and FMA.
        return unsafe { x86::tap_grad_avx2(x, dz, s, p, tap) };
    }
    tap_grad_blocks::<4, 8>(x, dz, s, p, tap)
}

#[cfg(not(target_arch = "x86_64"))]
fn tap_grad(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, tap: &mut [f32]) {
    tap_grad_blocks::<4, 8>(x, dz, s, p, tap)
}

/// The input-channel blocks of a tap: `ci_max` channels at a time, then 8, 4, 2, 1 for the rest
/// (each under `ci_max`, as the rest is).
fn ci_blocks(c_in: usize, ci_max: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut ci0 = 0;
    std::iter::from_fn(move || {
        let left = c_in - ci0;
        let ci = if left >= ci_max { ci_max } else { [8, 4, 2, 1].into_iter().find(|&b| b <= left)? };
        ci0 += ci;
        Some((ci0 - ci, ci))
    })
}

/// One tap's [c_in, c_out] gradient in plain loops (the portable copy), block by block.
fn tap_grad_blocks<const CI_MAX: usize, const CO: usize>(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, tap: &mut [f32]) {
    for (ci0, ci) in ci_blocks(s.c_in, CI_MAX) {
        for co0 in (0..s.c_out).step_by(CO) {
            let block = Block { ci0, co0, co: CO.min(s.c_out - co0) };
            match ci {
                4 => block_grad::<4, CO>(x, dz, s, p, block, tap),
                2 => block_grad::<2, CO>(x, dz, s, p, block, tap),
                _ => block_grad::<1, CO>(x, dz, s, p, block, tap),
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Block {
    ci0: usize,
    co0: usize,
    /// Output channels in the block (CO, or fewer for the last block).
    co: usize,
}

/// The CI x CO block of one tap's gradient, over all the pixels (plain loops).
fn block_grad<const CI: usize, const CO: usize>(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, b: Block, tap: &mut [f32]) {
    let g = s.g;
    let mut acc = [[0.0f32; CO]; CI];
    for (c, row) in acc.iter_mut().enumerate() {
        row[..b.co].copy_from_slice(&tap[(b.ci0 + c) * s.c_out + b.co0..][..b.co]);
    }
    for &(x_start, dz_start) in p.starts {
        let (x_row, dz_row) = (&x[x_start + b.ci0..], &dz[dz_start + b.co0..]);
        for n in 0..p.per_run {
            let xs = &x_row[n * g.sw * s.c_in..][..CI];
            let d = &dz_row[n * s.c_out..][..b.co];
            for (acc_row, &xv) in acc.iter_mut().zip(xs) {
                for (a, &dv) in acc_row.iter_mut().zip(d) {
                    *a = xv.mul_add(dv, *a);
                }
            }
        }
    }
    for (c, row) in acc.iter().enumerate() {
        tap[(b.ci0 + c) * s.c_out + b.co0..][..b.co].copy_from_slice(&row[..b.co]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The vector copies: a block of CI input channels x 32 (AVX-512) or 16 (AVX2) output
    //! channels in registers, one broadcast of x and one fused multiply-add per register and
    //! pixel; masked loads and stores for the last, narrower block of output channels.
    use std::arch::x86_64::*;

    use super::{ci_blocks, Block, DirectShape, Pixels};

    /// # Safety
    /// The CPU must have AVX-512 F, VL and BW, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx2,fma")]
    pub(super) unsafe fn tap_grad_avx512(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, tap: &mut [f32]) {
        for (ci0, ci) in ci_blocks(s.c_in, 12) {
            for co0 in (0..s.c_out).step_by(32) {
                let b = Block { ci0, co0, co: 32.min(s.c_out - co0) };
                // SAFETY: `weight_grad_direct` checked that x and dz hold `s`'s images and cut
                // `tap` to c_in x c_out; the runs are inside the images by construction; the
                // CPU features are the caller's promise.
                unsafe {
                    match ci {
                        12 => block_avx512::<12>(x, dz, s, p, b, tap),
                        8 => block_avx512::<8>(x, dz, s, p, b, tap),
                        4 => block_avx512::<4>(x, dz, s, p, b, tap),
                        2 => block_avx512::<2>(x, dz, s, p, b, tap),
                        _ => block_avx512::<1>(x, dz, s, p, b, tap),
                    }
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn block_avx512<const CI: usize>(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, b: Block, tap: &mut [f32]) {
        let g = s.g;
        let lanes = |n: usize| -> __mmask16 {
            if n >= 16 {
                0xffff
            } else {
                (1u16 << n) - 1
            }
        };
        let (m0, m1) = (lanes(b.co), lanes(b.co.saturating_sub(16)));
        let mut acc = [[_mm512_setzero_ps(); 2]; CI];
        for (c, a) in acc.iter_mut().enumerate() {
            // SAFETY: row ci0 + c of the tap, columns co0..co0 + co (the masks' lanes).
            unsafe {
                let sums = tap.as_ptr().add((b.ci0 + c) * s.c_out + b.co0);
                *a = [_mm512_maskz_loadu_ps(m0, sums), _mm512_maskz_loadu_ps(m1, sums.add(16))];
            }
        }
        let step = g.sw * s.c_in;
        for &(x_start, dz_start) in p.starts {
            // SAFETY (all pointer use below): the run's pixels are inside the image, the
            // blocks inside the channels (`tap_grad_avx512`); masked-off lanes are never touched.
            unsafe {
                let mut xp = x.as_ptr().add(x_start + b.ci0);
                let mut dp = dz.as_ptr().add(dz_start + b.co0);
                for _ in 0..p.per_run {
                    let d0 = _mm512_maskz_loadu_ps(m0, dp);
                    let d1 = _mm512_maskz_loadu_ps(m1, dp.add(16));
                    for (c, a) in acc.iter_mut().enumerate() {
                        let xv = _mm512_set1_ps(*xp.add(c));
                        a[0] = _mm512_fmadd_ps(xv, d0, a[0]);
                        a[1] = _mm512_fmadd_ps(xv, d1, a[1]);
                    }
                    xp = xp.add(step);
                    dp = dp.add(s.c_out);
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            // SAFETY: row ci0 + c of the tap, columns co0.. co0 + co (the masks' lanes).
            unsafe {
                let out = tap.as_mut_ptr().add((b.ci0 + c) * s.c_out + b.co0);
                _mm512_mask_storeu_ps(out, m0, a[0]);
                _mm512_mask_storeu_ps(out.add(16), m1, a[1]);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tap_grad_avx2(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, tap: &mut [f32]) {
        for (ci0, ci) in ci_blocks(s.c_in, 6) {
            for co0 in (0..s.c_out).step_by(16) {
                let b = Block { ci0, co0, co: 16.min(s.c_out - co0) };
                // SAFETY: as in `tap_grad_avx512`.
                unsafe {
                    match ci {
                        6 => block_avx2::<6>(x, dz, s, p, b, tap),
                        4 => block_avx2::<4>(x, dz, s, p, b, tap),
                        2 => block_avx2::<2>(x, dz, s, p, b, tap),
                        _ => block_avx2::<1>(x, dz, s, p, b, tap),
                    }
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn block_avx2<const CI: usize>(x: &[f32], dz: &[f32], s: DirectShape, p: Pixels, b: Block, tap: &mut [f32]) {
        let g = s.g;
        // Lane l of a mask is on (all ones) when l < n.
        let lanes = |n: usize| -> __m256i {
            let on: [i32; 8] = std::array::from_fn(|l| if l < n { -1 } else { 0 });
            // SAFETY: an unaligned load of eight i32 from a local array.
            unsafe { _mm256_loadu_si256(on.as_ptr().cast()) }
        };
        let (m0, m1) = (lanes(b.co), lanes(b.co.saturating_sub(8)));
        let mut acc = [[_mm256_setzero_ps(); 2]; CI];
        for (c, a) in acc.iter_mut().enumerate() {
            // SAFETY: row ci0 + c of the tap, columns co0..co0 + co (the masks' lanes).
            unsafe {
                let sums = tap.as_ptr().add((b.ci0 + c) * s.c_out + b.co0);
                *a = [_mm256_maskload_ps(sums, m0), _mm256_maskload_ps(sums.add(8), m1)];
            }
        }
        let step = g.sw * s.c_in;
        for &(x_start, dz_start) in p.starts {
            // SAFETY: as in `block_avx512` (masked-off lanes of a maskload are not read).
            unsafe {
                let mut xp = x.as_ptr().add(x_start + b.ci0);
                let mut dp = dz.as_ptr().add(dz_start + b.co0);
                for _ in 0..p.per_run {
                    let d0 = _mm256_maskload_ps(dp, m0);
                    let d1 = _mm256_maskload_ps(dp.add(8), m1);
                    for (c, a) in acc.iter_mut().enumerate() {
                        let xv = _mm256_broadcast_ss(&*xp.add(c));
                        a[0] = _mm256_fmadd_ps(xv, d0, a[0]);
                        a[1] = _mm256_fmadd_ps(xv, d1, a[1]);
                    }
                    xp = xp.add(step);
                    dp = dp.add(s.c_out);
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            // SAFETY: row ci0 + c of the tap, columns co0..co0 + co (the masks' lanes).
            unsafe {
                let out = tap.as_mut_ptr().add((b.ci0 + c) * s.c_out + b.co0);
                _mm256_maskstore_ps(out, m0, a[0]);
                _mm256_maskstore_ps(out.add(8), m1, a[1]);
            }
        }
    }
}

/// The same sums in plain loops, one dW value at a time: the tests' oracle.
pub fn weight_grad_direct_ref(x: &[f32], dz: &[f32], s: DirectShape, dw: &mut [f32]) {
    let g = s.g;
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            for ci in 0..s.c_in {
                for co in 0..s.c_out {
                    let mut sum = 0.0f32;
                    for img in 0..s.images {
                        for i in 0..g.oh {
                            for j in 0..g.ow {
                                if let (Some(r), Some(c)) = (g.in_row(i, ki), g.in_col(j, kj)) {
                                    let xv = x[((img * g.ih + r) * g.iw + c) * s.c_in + ci];
                                    sum = xv.mul_add(dz[((img * g.oh + i) * g.ow + j) * s.c_out + co], sum);
                                }
                            }
                        }
                    }
                    dw[((ki * g.kw + kj) * s.c_in + ci) * s.c_out + co] = sum;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::{Padding, Window};

    /// The direct kernel for the layers it was measured faster on (8 input channels or more,
    /// rows of 4 pixels or more); im2col for the first layers (1 or 3 channels) and rows of 1-3.
    #[test]
    fn applies_from_eight_input_channels_and_rows_of_four() {
        let g = |size: usize| Geometry::new("test", size, size, &Window::new(3, 3, 1, 1, Padding::Same)).unwrap();
        assert!(applies(&g(32), 16), "the ResNet's 16 -> 32 at 32x32");
        assert!(applies(&g(4), 128), "the ResNet's 4x4 residual block");
        assert!(applies(&g(28), 8));
        assert!(!applies(&g(28), 1), "Fashion-MNIST's first layer");
        assert!(!applies(&g(32), 3), "an RGB input");
        assert!(!applies(&g(32), 7));
        assert!(!applies(&g(3), 64), "rows of 3 pixels");
    }

    /// Blocks of `ci_max`, then of 8, 4, 2 and 1, covering the channels once, in order.
    #[test]
    fn channel_blocks_cover_the_channels_in_order() {
        assert_eq!(ci_blocks(32, 12).collect::<Vec<_>>(), [(0, 12), (12, 12), (24, 8)]);
        assert_eq!(ci_blocks(27, 6).collect::<Vec<_>>(), [(0, 6), (6, 6), (12, 6), (18, 6), (24, 2), (26, 1)]);
        assert_eq!(ci_blocks(3, 4).collect::<Vec<_>>(), [(0, 2), (2, 1)]);
    }
}
