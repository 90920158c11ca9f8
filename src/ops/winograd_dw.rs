//! The weight gradient of a 5x5 stride-1 convolution by Winograd F(5x5, 4x4), with the output
//! gradient playing the kernel:
//!
//! ```text
//!   dW[ki, kj, ci, co] = sum over n, i, j of x_pad[n, i + ki, j + kj, ci] dz[n, i, j, co]
//! ```
//!
//! is, for each 4x4 block of dz, a 5x5 correlation of an 8x8 input tile with a 4x4 "kernel":
//! the forward pass's F(4x4, 5x5) with the roles of kernel and output swapped. With the same
//! interpolation points (0, 1, -1, 1/2, -1/2, 2, -2, infinity), the input tile's transform is
//! the forward's own (B^T d B on the same 8x8 tiles, `winograd::input_transform_row`); the dz
//! block is transformed by G4 (8 x 4) on both sides, and the 5x5 result comes out through
//! A5^T (5 x 8). Summed over the tiles, the elementwise products become 64 matrix products
//!
//! ```text
//!   M[ξ] (C_in x C_out) = V[ξ]^T (C_in x tiles) · U[ξ] (tiles x C_out),
//!   dW[ki][kj] = sum over a, b of A5^T[ki][a] M[a][b] A5^T[kj][b]
//! ```
//!
//! with the tiles as the inner dimension: 6.25 times fewer multiplications than im2col + GEMM,
//! and per dz value 4 transformed values of each operand (the 6x6 tile's F(5x5, 2x2), tried
//! and measured slower than im2col, needed 9: see docs/performance.md). The 3x3 convolutions
//! take the direct kernel (`conv_dw_direct`) or im2col for dW. The unit tests check the matrices against the correlation in exact
//! arithmetic; tests/ops_conv.rs checks dW against the reference loops.

use super::conv_shape::ConvShape;
use super::gemm::gemm;
use super::simd::simd_dispatch;
use super::window::Window;
use super::winograd::{combine, grow, input_transform_row, Planes, Shape, TileWork, Variant, G5_TILE8, MIN_IN_CHANNELS};
use super::Precision;

/// The tile's side and its positions ξ.
const TILE: usize = 8;
const POSITIONS: usize = TILE * TILE;
/// The kernel's side (dW's output) and the dz block's.
const KERNEL: usize = 5;
const BLOCK: usize = 4;

/// A5^T: row i holds p^i at the finite points 0, 1, -1, 1/2, -1/2, 2, -2, and 1 at infinity in
/// the last row.
const AT5: [[f32; TILE]; KERNEL] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 0.25, 0.25, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 0.125, -0.125, 8.0, -8.0, 0.0],
    [0.0, 1.0, 1.0, 0.0625, 0.0625, 16.0, 16.0, 1.0],
];

/// G4 of a 4x4 dz block: the forward's G (`G5_TILE8`) cut to four taps (its infinity row, all
/// zero in those columns, then takes the fourth tap).
const G4: [[f32; BLOCK]; TILE] = {
    let mut g = [[0.0; BLOCK]; TILE];
    let mut j = 0;
    while j < TILE {
        let mut k = 0;
        while k < BLOCK {
            g[j][k] = G5_TILE8[j][k];
            k += 1;
        }
        j += 1;
    }
    g[TILE - 1][BLOCK - 1] = 1.0;
    g
};

/// Whether dW of a convolution with `window` over `shape` goes by Winograd: a square 5x5 kernel
/// at stride 1 whose forward pass takes F(4x4, 5x5) (at least `MIN_IN_CHANNELS` input
/// channels, as `conv2d::algorithm` asks, and an output that suits the 8x8 tile).
pub(crate) fn applies(window: &Window, shape: &ConvShape) -> bool {
    let g = &shape.geometry;
    (window.sh, window.sw) == (1, 1)
        && (g.kh, g.kw) == (KERNEL, KERNEL)
        && shape.c_in >= MIN_IN_CHANNELS
        && Variant::for_output(KERNEL, g.oh, g.ow) == Some(Variant::F4x4Kernel5x5)
}

/// Reusable buffers of one chunk of images: the transformed inputs V ([64][tiles][C_in]) and
/// output gradients U ([64][tiles][C_out]), the products M ([64][C_in][C_out]), the first half
/// of the output transform, and the tiles' scratch.
#[derive(Default)]
pub(crate) struct WeightGradWork {
    v: Vec<f32>,
    u: Vec<f32>,
    m: Vec<f32>,
    half: Vec<f32>,
    tile: Option<TileWork>,
}

/// dW of `images` images (x: [images, ih, iw, C_in], dz: [images, oh, ow, C_out]) of a
/// convolution of `shape` for which [`applies`] holds, its products in `precision`, written
/// (not added) into `dw` ([5, 5, C_in, C_out]). The sums run in a fixed order (tiles in image
/// order within each product), whatever the threads.
pub(crate) fn weight_grad_into(
    x: &[f32],
    dz: &[f32],
    images: usize,
    shape: &ConvShape,
    precision: Precision,
    work: &mut WeightGradWork,
    dw: &mut [f32],
) {
    let g = &shape.geometry;
    let (c_in, c_out) = (shape.c_in, shape.c_out);
    let s = Shape::new(*g, c_in, c_out, Variant::F4x4Kernel5x5);
    let tiles = s.tiles_h * s.tiles_w;
    let rows = images * tiles;
    let (in_size, out_size) = (g.ih * g.iw * c_in, g.oh * g.ow * c_out);
    let channels = c_in.max(c_out);
    let tile = match &mut work.tile {
        Some(t) if t.patch.len() >= POSITIONS * channels => t,
        slot => slot.insert(TileWork::new(channels)),
    };
    let v = Planes::new(&mut work.v, POSITIONS, rows, c_in);
    let u = Planes::new(&mut work.u, POSITIONS, rows, c_out);
    for i in 0..images {
        let (x_img, dz_img) = (&x[i * in_size..][..in_size], &dz[i * out_size..][..out_size]);
        for ti in 0..s.tiles_h {
            let first_row = i * tiles + ti * s.tiles_w;
            // SAFETY: this call alone uses the buffers behind `v` and `u` (borrowed from `work`).
            unsafe {
                input_transform_row(x_img, &s, ti, v, first_row, tile);
                grad_transform_row(dz_img, &s, ti, u, first_row, tile);
            }
        }
    }
    let (v, u) = (&work.v[..POSITIONS * rows * c_in], &work.u[..POSITIONS * rows * c_out]);
    let block = c_in * c_out;
    let m = grow(&mut work.m, POSITIONS * block);
    for (xi, m_plane) in m.chunks_exact_mut(block).enumerate() {
        let (v_plane, u_plane) = (&v[xi * rows * c_in..][..rows * c_in], &u[xi * rows * c_out..][..rows * c_out]);
        gemm(precision, c_in, rows, c_out, v_plane, true, u_plane, false, 0.0, m_plane);
    }
    let half = grow(&mut work.half, KERNEL * TILE * block);
    output_transform(m, block, half, &mut dw[..KERNEL * KERNEL * block]);
}

simd_dispatch! {
    /// U = G4 d G4^T for the 4x4 blocks of tile row `ti` of one image's output gradient
    /// `dz_img` ([oh, ow, C_out]; zero beyond its edges), block tj going to row `first_row + tj`
    /// of every U[ξ].
    ///
    /// # Safety
    /// As `Planes::row`, for those rows.
    unsafe fn grad_transform_row => grad_transform_row_plain(dz_img: &[f32], s: &Shape, ti: usize, u: Planes, first_row: usize, work: &mut TileWork)
}

#[inline(always)]
fn grad_transform_row_plain(dz_img: &[f32], s: &Shape, ti: usize, u: Planes, first_row: usize, work: &mut TileWork) {
    let (g, c) = (&s.g, s.c_out);
    let patch = &mut work.patch[..BLOCK * BLOCK * c];
    let half = &mut work.half[..TILE * BLOCK * c];
    for tj in 0..s.tiles_w {
        // Gather the 4x4 block at output (4 ti, 4 tj); beyond the output it is zero.
        for kr in 0..BLOCK {
            let r = BLOCK * ti + kr;
            for kc in 0..BLOCK {
                let col = BLOCK * tj + kc;
                let dst = &mut patch[(kr * BLOCK + kc) * c..][..c];
                if r < g.oh && col < g.ow {
                    dst.copy_from_slice(&dz_img[(r * g.ow + col) * c..][..c]);
                } else {
                    dst.fill(0.0);
                }
            }
        }
        // half[a][col] = sum_k G4[a][k] d[k][col];  U[a][b] = sum_l half[a][l] G4[b][l].
        for a in 0..TILE {
            for col in 0..BLOCK {
                let out = &mut half[(a * BLOCK + col) * c..][..c];
                combine(out, (0..BLOCK).map(|k| (G4[a][k], &patch[(k * BLOCK + col) * c..][..c])));
            }
        }
        for a in 0..TILE {
            for (b, g_row) in G4.iter().enumerate() {
                // SAFETY: the caller owns these rows (this function's contract).
                let out = unsafe { u.row(a * TILE + b, first_row + tj) };
                combine(out, g_row.iter().enumerate().map(|(l, &coef)| (coef, &half[(a * BLOCK + l) * c..][..c])));
            }
        }
    }
}

simd_dispatch! {
    /// dW[ki][kj] = sum over a, b of A5^T[ki][a] M[a][b] A5^T[kj][b], each a block of
    /// C_in x C_out values; `half` holds the [5][8] blocks of the first step.
    fn output_transform => output_transform_plain(m: &[f32], block: usize, half: &mut [f32], dw: &mut [f32])
}

#[inline(always)]
fn output_transform_plain(m: &[f32], block: usize, half: &mut [f32], dw: &mut [f32]) {
    for ki in 0..KERNEL {
        for b in 0..TILE {
            let out = &mut half[(ki * TILE + b) * block..][..block];
            combine(out, (0..TILE).map(|a| (AT5[ki][a], &m[(a * TILE + b) * block..][..block])));
        }
    }
    for ki in 0..KERNEL {
        for kj in 0..KERNEL {
            let out = &mut dw[(ki * KERNEL + kj) * block..][..block];
            combine(out, (0..TILE).map(|b| (AT5[kj][b], &half[(ki * TILE + b) * block..][..block])));
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // indices as in the formulas
mod tests {
    use super::super::winograd::BT8;
    use super::*;

    /// In one dimension, for every unit input d (8 values) and unit dz block g (4 values),
    /// A5^T [(G4 g) ⊙ (B^T d)] = sum_k d[i + k] g[k] for each of the 5 outputs i: the
    /// correlation that dW is, exactly (in f64, up to G's ninths and 45ths in f32).
    #[test]
    fn matrices_compute_the_one_dimensional_correlation() {
        for da in 0..TILE {
            for gb in 0..BLOCK {
                for i in 0..KERNEL {
                    let y: f64 = (0..TILE).map(|j| AT5[i][j] as f64 * G4[j][gb] as f64 * BT8[j][da] as f64).sum();
                    let expected = if da == i + gb { 1.0 } else { 0.0 };
                    assert!((y - expected).abs() < 1e-6, "d{da} g{gb} out{i}: {y} != {expected}");
                }
            }
        }
    }

    /// Winograd dW for 5x5 stride-1 kernels with 16 or more input channels and an output the
    /// 8x8 tile suits; everything else keeps im2col.
    #[test]
    fn applies_to_five_by_five_with_enough_channels_and_room_for_the_tile() {
        use crate::ops::window::Padding;
        let applies_to = |x: [usize; 4], c_out: usize, window: Window| {
            let shape = ConvShape::of(&x, &[window.kh, window.kw, x[3], c_out], None, &window).unwrap();
            applies(&window, &shape)
        };
        let five = Window::new(5, 5, 1, 1, Padding::Same);
        assert!(applies_to([64, 16, 16, 64], 64, five), "the seed network's second convolution");
        assert!(applies_to([1, 6, 6, 16], 1, five), "16 input channels, any output channels");
        assert!(!applies_to([64, 16, 16, 15], 64, five), "15 input channels");
        assert!(!applies_to([64, 32, 32, 3], 64, five), "an RGB input");
        assert!(!applies_to([4, 2, 2, 16], 16, five), "a 2x2 output takes F(2x2, 5x5) forward");
        assert!(!applies_to([4, 16, 16, 16], 16, Window::new(5, 5, 2, 2, Padding::Same)), "stride 2");
        assert!(!applies_to([4, 16, 16, 64], 64, Window::new(3, 3, 1, 1, Padding::Same)), "3x3");
        assert!(!applies_to([4, 16, 16, 64], 64, Window::new(5, 3, 1, 1, Padding::Same)), "5x3");
    }
}
