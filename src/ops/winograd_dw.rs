//! The weight gradient of a 3x3 or 5x5 stride-1 convolution by Winograd, with the output
//! gradient playing the kernel:
//!
//! ```text
//!   dW[ki, kj, ci, co] = sum over n, i, j of x_pad[n, i + ki, j + kj, ci] dz[n, i, j, co]
//! ```
//!
//! is, for each m x m block of dz, an r x r correlation of a 6x6 input tile with an m x m
//! "kernel" (r = 3, m = 4 or r = 5, m = 2: the forward variant's roles swapped, F(r x r, m x m)).
//! With the same interpolation points as the forward pass (0, 1, -1, 2, -2, infinity), the
//! input tile's transform is the forward's own (B^T d B, `winograd::input_transform_row`); the
//! dz block is transformed by G_m (6 x m) on both sides, and the r x r result comes out through
//! A_r^T (r x 6). Summed over the tiles, the elementwise products become 36 matrix products
//!
//! ```text
//!   M[ξ] (C_in x C_out) = V[ξ]^T (C_in x tiles) · U[ξ] (tiles x C_out),
//!   dW[ki][kj] = sum over a, b of A_r^T[ki][a] M[a][b] A_r^T[kj][b]
//! ```
//!
//! with the tiles as the inner dimension: long products, 4 (3x3) or 2.8 (5x5) times fewer
//! multiplications than im2col + GEMM. The unit tests check the matrices against the
//! correlation in exact arithmetic; tests/ops_conv.rs checks dW against the reference loops.

use super::conv_shape::ConvShape;
use super::gemm::gemm;
use super::simd::simd_dispatch;
use super::winograd::{combine, grow, input_transform_row, Planes, Shape, TileWork, Variant, POSITIONS, TILE};

/// A_r^T of F(3x3, 4x4): row i holds p^i at the finite points, and 1 at infinity in the last.
const AT3: [[f32; TILE]; 3] = [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 0.0], [0.0, 1.0, 1.0, 4.0, 4.0, 1.0]];

/// A_r^T of F(5x5, 2x2).
const AT5: [[f32; TILE]; 5] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 0.0],
    [0.0, 1.0, 1.0, 16.0, 16.0, 1.0],
];

/// G_m of a 4x4 dz block: row j holds p_j^k / prod over l != j of (p_j - p_l), and the last
/// tap at infinity.
const G4: [[f32; 4]; TILE] = [
    [1.0 / 4.0, 0.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0, 1.0 / 3.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, -1.0 / 3.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// G_m of a 2x2 dz block (in the first two columns).
const G2: [[f32; 4]; TILE] = [
    [1.0 / 4.0, 0.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, 0.0, 0.0],
    [-1.0 / 6.0, 1.0 / 6.0, 0.0, 0.0],
    [1.0 / 24.0, 1.0 / 12.0, 0.0, 0.0],
    [1.0 / 24.0, -1.0 / 12.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
];

/// A_r^T (r rows) and G_m (m columns used) of a variant's weight gradient.
fn matrices(variant: Variant) -> (&'static [[f32; TILE]], &'static [[f32; 4]; TILE]) {
    match variant {
        Variant::F4x4Kernel3x3 => (&AT3, &G4),
        Variant::F2x2Kernel5x5 => (&AT5, &G2),
    }
}

/// Reusable buffers of one chunk of images: the transformed inputs V and output gradients U
/// ([36][tiles][c] each), the products M ([36][C_in][C_out]), and the transforms' scratch.
#[derive(Default)]
pub(crate) struct WeightGradWork {
    v: Vec<f32>,
    u: Vec<f32>,
    m: Vec<f32>,
    half: Vec<f32>,
    tile: Option<TileWork>,
}

/// dW of `images` images (x: [images, ih, iw, C_in], dz: [images, oh, ow, C_out]) of a stride-1
/// convolution of `shape` with a square 3x3 or 5x5 kernel, written (not added) into `dw`
/// ([kh, kw, C_in, C_out]).
pub(crate) fn weight_grad_into(x: &[f32], dz: &[f32], images: usize, shape: &ConvShape, work: &mut WeightGradWork, dw: &mut [f32]) {
    let g = &shape.geometry;
    let (c_in, c_out) = (shape.c_in, shape.c_out);
    let variant = match Variant::for_kernel(g.kh) {
        Some(v) if g.kw == g.kh => v,
        _ => unreachable!("conv2d::algorithm picks Winograd for 3x3 and 5x5 kernels only"),
    };
    let out = variant.out();
    let s = Shape { g: *g, c_in, c_out, variant, tiles_h: g.oh.div_ceil(out), tiles_w: g.ow.div_ceil(out) };
    let tiles = s.tiles_h * s.tiles_w;
    let rows = images * tiles;
    let (in_size, out_size) = (g.ih * g.iw * c_in, g.oh * g.ow * c_out);
    let channels = c_in.max(c_out);
    let tile = match &mut work.tile {
        Some(t) if t.patch.len() >= POSITIONS * channels => t,
        slot => slot.insert(TileWork::new(channels)),
    };
    let v = Planes::new(&mut work.v, rows, c_in);
    let u = Planes::new(&mut work.u, rows, c_out);
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
        gemm(c_in, rows, c_out, &v[xi * rows * c_in..][..rows * c_in], true, &u[xi * rows * c_out..][..rows * c_out], false, 0.0, m_plane);
    }
    let half = grow(&mut work.half, variant.kernel() * TILE * block);
    output_transform(m, variant, block, half, dw);
}

simd_dispatch! {
    /// U = G_m d G_m^T for the m x m blocks of tile row `ti` of one image's output gradient
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
    let (_, gm) = matrices(s.variant);
    let m = s.variant.out();
    let patch = &mut work.patch[..m * m * c];
    let half = &mut work.half[..TILE * m * c];
    for tj in 0..s.tiles_w {
        // Gather the m x m block at output (m ti, m tj); beyond the output it is zero.
        for kr in 0..m {
            let row = &mut patch[kr * m * c..][..m * c];
            let r = m * ti + kr;
            for kc in 0..m {
                let col = m * tj + kc;
                let dst = &mut row[kc * c..][..c];
                if r < g.oh && col < g.ow {
                    dst.copy_from_slice(&dz_img[(r * g.ow + col) * c..][..c]);
                } else {
                    dst.fill(0.0);
                }
            }
        }
        // half[a][col] = sum_k G[a][k] d[k][col];  U[a][b] = sum_l half[a][l] G[b][l].
        for a in 0..TILE {
            for col in 0..m {
                let out = &mut half[(a * m + col) * c..][..c];
                combine(out, (0..m).map(|k| (gm[a][k], &patch[(k * m + col) * c..][..c])));
            }
        }
        for a in 0..TILE {
            for b in 0..TILE {
                // SAFETY: the caller owns these rows (this function's contract).
                let out = unsafe { u.row(a * TILE + b, first_row + tj) };
                combine(out, (0..m).map(|l| (gm[b][l], &half[(a * m + l) * c..][..c])));
            }
        }
    }
}

simd_dispatch! {
    /// dW[ki][kj] = sum over a, b of A^T[ki][a] M[a][b] A^T[kj][b], each a block of
    /// C_in x C_out values; `half` holds the [r][6] blocks of the first step.
    fn output_transform => output_transform_plain(m: &[f32], variant: Variant, block: usize, half: &mut [f32], dw: &mut [f32])
}

#[inline(always)]
fn output_transform_plain(m: &[f32], variant: Variant, block: usize, half: &mut [f32], dw: &mut [f32]) {
    let (at, _) = matrices(variant);
    let r = variant.kernel();
    for ki in 0..r {
        for b in 0..TILE {
            let out = &mut half[(ki * TILE + b) * block..][..block];
            combine(out, (0..TILE).map(|a| (at[ki][a], &m[(a * TILE + b) * block..][..block])));
        }
    }
    for ki in 0..r {
        for kj in 0..r {
            let out = &mut dw[(ki * r + kj) * block..][..block];
            combine(out, (0..TILE).map(|b| (at[kj][b], &half[(ki * TILE + b) * block..][..block])));
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // indices as in the formulas
mod tests {
    use super::super::winograd::BT;
    use super::*;

    /// In one dimension, for every unit input d (6 values) and unit dz block g (m values),
    /// A_r^T [(G_m g) ⊙ (B^T d)] = sum_k d[i + k] g[k] for each of the r outputs i: the
    /// correlation that dW is, exactly (in f64).
    #[test]
    fn matrices_compute_the_one_dimensional_correlation() {
        for variant in [Variant::F4x4Kernel3x3, Variant::F2x2Kernel5x5] {
            let (at, gm) = matrices(variant);
            let (r, m) = (variant.kernel(), variant.out());
            assert_eq!(at.len(), r);
            for da in 0..TILE {
                for gb in 0..m {
                    for i in 0..r {
                        let y: f64 = (0..TILE).map(|j| at[i][j] as f64 * gm[j][gb] as f64 * BT[j][da] as f64).sum();
                        let expected = if da == i + gb { 1.0 } else { 0.0 };
                        assert!((y - expected).abs() < 1e-6, "{variant:?}: d{da} g{gb} out{i}: {y} != {expected}");
                    }
                }
            }
            assert!(gm.iter().all(|row| row[m..].iter().all(|&v| v == 0.0)), "{variant:?}: unused columns of G are zero");
        }
    }
}
