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
//! and measured slower than im2col, needed 9: see docs/performance.md), chunk by chunk of 8
//! images ([`weight_grad_into`]).
//!
//! 3x3 kernels with 64 channels or more on each side take F(3x3, 4x4) the same way on the
//! forward's 6x6 tiles (A3^T, and G4 from the forward's G), 4 times fewer multiplications, but
//! summed over the whole batch before one output transform ([`weight_grad_summed`]): their
//! small outputs (7x7: 4 tiles per image) give a chunk's products too short an inner dimension.
//! Narrower 3x3 layers take the direct kernel (`conv_dw_direct`) or im2col: there the
//! transforms cost more than the multiplications they save. The unit tests check the matrices
//! against the correlation in exact arithmetic; tests/ops_conv.rs checks dW against the
//! reference loops.

use rayon::prelude::*;

use super::column_sums::add_column_sums;
use super::conv_output_grad::OutputGrad;
use super::conv_shape::ConvShape;
use super::gemm::gemm;
use super::simd::simd_dispatch;
use super::window::Window;
use super::winograd::{combine, grow, input_transform_row, par_tile_rows, Planes, Shape, TileWork, Variant, G3, G5_TILE8, MIN_IN_CHANNELS};
use super::Precision;
use crate::dist::IMAGES_PER_SHARE_UNIT;
use crate::threads::{with_thread_scratch, PerThread};

/// The largest tile's side, and the dz block's side (4 in both variants).
const MAX_TILE: usize = 8;
const BLOCK: usize = 4;

/// A5^T: row i holds p^i at the finite points 0, 1, -1, 1/2, -1/2, 2, -2, and 1 at infinity in
/// the last row.
const AT5: [[f32; MAX_TILE]; 5] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 0.25, 0.25, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 0.125, -0.125, 8.0, -8.0, 0.0],
    [0.0, 1.0, 1.0, 0.0625, 0.0625, 16.0, 16.0, 1.0],
];

/// A3^T of the 6x6 tile: row i holds p^i at the finite points 0, 1, -1, 2, -2 (those of the
/// forward's F(4x4, 3x3)), and 1 at infinity in the last row (padded to 8 columns).
const AT3: [[f32; MAX_TILE]; 3] =
    [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 4.0, 4.0, 1.0, 0.0, 0.0]];

/// G4 of a 4x4 dz block on the 8x8 tile: the forward's G (`G5_TILE8`) cut to four taps (its
/// infinity row, all zero in those columns, then takes the fourth tap).
const G4_TILE8: [[f32; BLOCK]; MAX_TILE] = {
    let mut g = [[0.0; BLOCK]; MAX_TILE];
    let mut j = 0;
    while j < MAX_TILE {
        let mut k = 0;
        while k < BLOCK {
            g[j][k] = G5_TILE8[j][k];
            k += 1;
        }
        j += 1;
    }
    g[MAX_TILE - 1][BLOCK - 1] = 1.0;
    g
};

/// G4 of a 4x4 dz block on the 6x6 tile: row j is the forward's G (`G3`) row scale times
/// (1, p, p², p³) at its point p (0, 1, -1, 2, -2: G3's first column is the scale), and
/// infinity's row takes the fourth tap (padded to 8 rows).
const G4_TILE6: [[f32; BLOCK]; MAX_TILE] = {
    let points = [0.0f32, 1.0, -1.0, 2.0, -2.0];
    let mut g = [[0.0; BLOCK]; MAX_TILE];
    let mut j = 0;
    while j < points.len() {
        let mut power = 1.0;
        let mut k = 0;
        while k < BLOCK {
            g[j][k] = G3[j][0] * power;
            power *= points[j];
            k += 1;
        }
        j += 1;
    }
    g[5][BLOCK - 1] = 1.0;
    g
};

/// The matrices of dW's Winograd for a forward variant: G4 (tile x 4, for the dz block) and
/// A^T (kernel x tile, for the output), each padded to 8.
fn matrices(variant: Variant) -> (&'static [[f32; BLOCK]; MAX_TILE], &'static [[f32; MAX_TILE]]) {
    match variant {
        Variant::F4x4Kernel5x5 => (&G4_TILE8, &AT5),
        Variant::F4x4Kernel3x3 => (&G4_TILE6, &AT3),
        Variant::F2x2Kernel5x5 => unreachable!("`applies` takes 4x4 blocks only"),
    }
}

/// Whether dW of a convolution with `window` over `shape` goes by Winograd one chunk of images
/// at a time ([`weight_grad_into`]): a square 5x5 kernel at stride 1 whose forward pass takes
/// F(4x4, 5x5) (at least `MIN_IN_CHANNELS` input channels, as `conv2d::algorithm` asks, and an
/// output that suits the 8x8 tile). 3x3 kernels take [`weight_grad_summed`] where
/// [`summed_applies`] holds.
pub(crate) fn applies(window: &Window, shape: &ConvShape) -> bool {
    let g = &shape.geometry;
    (window.sh, window.sw) == (1, 1)
        && (g.kh, g.kw) == (5, 5)
        && shape.c_in >= MIN_IN_CHANNELS
        && Variant::for_output(5, g.oh, g.ow) == Some(Variant::F4x4Kernel5x5)
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
    /// bf16: the chunk's x and dz rounded (`bf16_operands`).
    rounded: (Vec<f32>, Vec<f32>),
}

impl WeightGradWork {
    /// The buffers for a chunk's x and dz rounded to bf16 (`bf16_operands`), also lent to the
    /// direct dW kernel (`conv2d`).
    pub(crate) fn rounded(&mut self) -> &mut (Vec<f32>, Vec<f32>) {
        &mut self.rounded
    }
}

/// dW of `images` images (x: [images, ih, iw, C_in], dz: [images, oh, ow, C_out]) of a
/// convolution of `shape` for which [`applies`] holds, written (not added) into `dw`
/// ([5, 5, C_in, C_out]); in bf16 `precision`, of x and dz rounded to bf16
/// ([`bf16_operands`]). The sums run in a fixed order (tiles in image order within each
/// product), whatever the threads.
pub(crate) fn weight_grad_into(
    x: &[f32],
    dz: &[f32],
    images: usize,
    shape: &ConvShape,
    precision: Precision,
    work: &mut WeightGradWork,
    dw: &mut [f32],
) {
    let (x, dz) = bf16_operands(precision, x, dz, &mut work.rounded);
    let g = &shape.geometry;
    let (c_in, c_out) = (shape.c_in, shape.c_out);
    let variant = Variant::F4x4Kernel5x5;
    let (t, kernel) = (variant.tile(), variant.kernel());
    let positions = t * t;
    let s = Shape::new(*g, c_in, c_out, variant);
    let tiles = s.tiles_h * s.tiles_w;
    let rows = images * tiles;
    let (in_size, out_size) = (g.ih * g.iw * c_in, g.oh * g.ow * c_out);
    let channels = c_in.max(c_out);
    let tile = TileWork::sized(&mut work.tile, channels);
    let v = Planes::new(&mut work.v, positions, rows, c_in);
    let u = Planes::new(&mut work.u, positions, rows, c_out);
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
    let (v, u) = (&work.v[..positions * rows * c_in], &work.u[..positions * rows * c_out]);
    let block = c_in * c_out;
    let m = grow(&mut work.m, positions * block);
    for (xi, m_plane) in m.chunks_exact_mut(block).enumerate() {
        let (v_plane, u_plane) = (&v[xi * rows * c_in..][..rows * c_in], &u[xi * rows * c_out..][..rows * c_out]);
        gemm(Precision::F32, c_in, rows, c_out, v_plane, true, u_plane, false, 0.0, m_plane);
    }
    let half = grow(&mut work.half, kernel * t * block);
    output_transform(m, block, variant, half, &mut dw[..kernel * kernel * block]);
}

/// dW's operands for `precision` (`Precision::rounded_operands`): x and dz as they are in
/// float32; in bf16, both rounded to bf16, the products still float32. The products of the
/// transformed values are then those of the bf16 inputs' transforms, computed as in float32:
/// rounding the transformed values instead (bf16 products, as Winograd's y and dX take them)
/// would let dW's output transform amplify bf16's rounding some 56 times (A5^T has a 16; see
/// tests/bf16_layers.rs), and on a CPU with AVX512-BF16 but no AMX, float32's Winograd dW
/// beat the bf16 products of im2col (airbench's 256 -> 256 at 7x7, batch 512: 80 against 141
/// ms; docs/performance.md).
fn bf16_operands<'a>(precision: Precision, x: &'a [f32], dz: &'a [f32], store: &'a mut (Vec<f32>, Vec<f32>)) -> (&'a [f32], &'a [f32]) {
    precision.rounded_operands(x, dz, store)
}

/// Whether dW of a convolution goes by Winograd F(3x3, 4x4) summed over the batch
/// ([`weight_grad_summed`]): a 3x3 kernel at stride 1 with at least `SUMMED_MIN_CHANNELS` on
/// each side.
pub(crate) fn summed_applies(window: &Window, shape: &ConvShape) -> bool {
    let g = &shape.geometry;
    (window.sh, window.sw) == (1, 1) && (g.kh, g.kw) == (3, 3) && shape.c_in >= SUMMED_MIN_CHANNELS && shape.c_out >= SUMMED_MIN_CHANNELS
}

/// Channels (each side) from which 3x3 dW pays for its transforms (airbench's 64 -> 256 at
/// 15x15 and 256 -> 256 at 7x7; the ResNet's 16 -> 32 and 32 -> 64 were slower,
/// docs/performance.md).
const SUMMED_MIN_CHANNELS: usize = 64;

/// Rows (tiles) per group's products in [`weight_grad_summed`], at most: the inner dimension of
/// its 36 products.
const GROUP_ROWS: usize = 256;

/// Images per group of [`weight_grad_summed`]: 32, 16 or 8, the most whose tiles fit in
/// `GROUP_ROWS`. Each divides a distributed share unit, so a rank holds whole groups and folds
/// them in the single-process order.
fn images_per_group(tiles_per_image: usize) -> usize {
    [32, 16, 8].into_iter().find(|&images| images * tiles_per_image <= GROUP_ROWS).unwrap_or(8)
}
const _: () = assert!(IMAGES_PER_SHARE_UNIT.is_multiple_of(32));

/// One worker's scratch in [`weight_grad_summed`]: one position's product, and a row of the
/// output transform.
#[derive(Default)]
pub(crate) struct SummedTaskWork {
    product: Vec<f32>,
    half: Vec<f32>,
    out: Vec<f32>,
}

/// A layer's buffers for [`weight_grad_summed`] (V, U and M are the calling thread's pair,
/// shared by all layers: `threads::with_thread_scratch`).
#[derive(Default)]
pub(crate) struct SummedWork {
    tasks: PerThread<SummedTaskWork>,
    /// Each worker's tile buffers for the transforms.
    tiles: PerThread<Option<TileWork>>,
    /// The output gradient masked by a fused ReLU, one group's.
    dz: Vec<f32>,
    /// bf16: the group's x and dz rounded (`bf16_operands`).
    rounded: (Vec<f32>, Vec<f32>),
    group_db: Vec<f32>,
    /// In a distributed step, each of the rank's groups' M and db, kept until the running sum
    /// of the ranks before arrives.
    partials: Vec<Vec<f32>>,
}

/// dW ([3, 3, C_in, C_out]) and db ([C_out]) of a 3x3 stride-1 convolution for which
/// [`summed_applies`] holds, over the whole batch (x: [N, ih, iw, C_in], the gradient at the
/// output `dy`), written (not added); in bf16 `precision`, of x and dz rounded to bf16
/// ([`bf16_operands`]; db sums dz itself). As in [`weight_grad_into`], but the 36 products
///
/// ```text
///   M[ξ] (C_in x C_out) = sum over groups g of V_g[ξ]^T U_g[ξ]   (tiles of g's images inside)
///   dW = A3^T M A3                                              (once per batch)
/// ```
///
/// are summed over the batch before the output transform: a group of 8 images of a 7x7 output
/// has only 32 tiles, too short an inner dimension for products of 256 x 256 (and 9.4 MB of
/// them per group, to transform and add). The groups run one after another, each group's
/// transforms parallel over its tile rows, its products parallel over the positions ξ (each
/// M[ξ] += the group's product, in group order): no sum depends on the threads. db is the
/// groups' sums of dz, added in group order. In a distributed step the rank computes its
/// groups' M and db first, then adds them, in order, to the running sum of the ranks before
/// (`crate::dist`): the same additions as in one process.
pub(crate) fn weight_grad_summed(
    x: &[f32],
    dy: OutputGrad,
    shape: &ConvShape,
    precision: Precision,
    work: &mut SummedWork,
    d_weight: &mut [f32],
    d_bias: &mut [f32],
) {
    let variant = Variant::F4x4Kernel3x3;
    let (n, c_in, c_out) = (shape.batch, shape.c_in, shape.c_out);
    let s = Shape::new(shape.geometry, c_in, c_out, variant);
    let (positions, block) = (variant.positions(), c_in * c_out);
    let group = images_per_group(s.tiles_h * s.tiles_w);
    let (in_size, out_size) = (shape.input_len(), shape.output_len());
    let SummedWork { tasks, tiles, dz, rounded, group_db, partials } = work;
    let (tasks, tiles) = (tasks.for_current_pool(), tiles.for_current_pool());
    with_thread_scratch(|vu, m| {
        let m = grow(m, positions * block);
        // Adds group `first..`'s products to acc_m and its dz sums to acc_db.
        let mut add_group = |first: usize, acc_m: &mut [f32], acc_db: &mut [f32]| {
            let images = group.min(n - first);
            let dz_group = dy.images(first, images, out_size, dz);
            group_db.clear();
            group_db.resize(c_out, 0.0);
            add_column_sums(dz_group, group_db);
            acc_db.iter_mut().zip(group_db.iter()).for_each(|(a, v)| *a += v);
            let (x_group, dz_group) = bf16_operands(precision, &x[first * in_size..][..images * in_size], dz_group, rounded);
            add_group_products(x_group, dz_group, images, &s, (tasks, tiles), vu, acc_m);
        };
        if crate::dist::in_group() {
            let count = n.div_ceil(group);
            if partials.len() < count {
                partials.resize_with(count, Vec::new);
            }
            for (k, partial) in partials[..count].iter_mut().enumerate() {
                partial.clear();
                partial.resize(positions * block + c_out, 0.0);
                let (pm, pdb) = partial.split_at_mut(positions * block);
                add_group(k * group, pm, pdb);
            }
            crate::dist::ordered_fold(&mut [&mut *m, &mut *d_bias], |acc| {
                let [acc_m, acc_db] = acc else { unreachable!("two buffers") };
                for partial in &partials[..count] {
                    let (pm, pdb) = partial.split_at(positions * block);
                    acc_m.par_chunks_mut(block).zip(pm.par_chunks(block)).for_each(|(a, p)| a.iter_mut().zip(p).for_each(|(a, v)| *a += v));
                    acc_db.iter_mut().zip(pdb).for_each(|(a, v)| *a += v);
                }
            });
        } else {
            m.fill(0.0);
            d_bias.fill(0.0);
            for first in (0..n).step_by(group) {
                add_group(first, m, d_bias);
            }
        }
        // dW = A3^T M A3, one input channel's row of C_out values of every plane at a time.
        let dw = Planes::over(d_weight, 9, c_in, c_out);
        let m = &*m;
        (0..c_in).into_par_iter().for_each(|ci| {
            let mut work = tasks.get();
            let SummedTaskWork { half, out, .. } = &mut *work;
            let (half, out) = (grow(half, 3 * variant.tile() * c_out), grow(out, 9 * c_out));
            output_transform(&m[ci * c_out..], block, variant, half, out);
            for (tap, values) in out.chunks_exact(c_out).enumerate() {
                // SAFETY: `d_weight` is borrowed for this call only, and row ci of every tap
                // belongs to this task alone.
                unsafe { dw.row(tap, ci) }.copy_from_slice(values);
            }
        });
    });
}

/// One group's products added to `acc` (M, [36][C_in][C_out]): the group's V and U (in `vu`)
/// by tile rows in parallel, then M[ξ] += V[ξ]^T U[ξ] by positions in parallel.
#[allow(clippy::too_many_arguments)]
fn add_group_products(
    x: &[f32],
    dz: &[f32],
    images: usize,
    s: &Shape,
    (tasks, tiles): (&PerThread<SummedTaskWork>, &PerThread<Option<TileWork>>),
    vu: &mut Vec<f32>,
    acc: &mut [f32],
) {
    let (c_in, c_out, positions) = (s.c_in, s.c_out, s.variant.positions());
    let tiles_per_image = s.tiles_h * s.tiles_w;
    let rows = images * tiles_per_image;
    let (in_size, out_size) = (s.g.ih * s.g.iw * c_in, s.g.oh * s.g.ow * c_out);
    let (v_buf, u_buf) = grow(vu, positions * rows * (c_in + c_out)).split_at_mut(positions * rows * c_in);
    let (v, u) = (Planes::over(v_buf, positions, rows, c_in), Planes::over(u_buf, positions, rows, c_out));
    par_tile_rows(images, s.tiles_h, tiles, c_in.max(c_out), |i, ti, tile| {
        let first_row = i * tiles_per_image + ti * s.tiles_w;
        // SAFETY: `vu` is borrowed for this call only, and each task writes its own tile rows.
        unsafe {
            input_transform_row(&x[i * in_size..][..in_size], s, ti, v, first_row, tile);
            grad_transform_row(&dz[i * out_size..][..out_size], s, ti, u, first_row, tile);
        }
    });
    let block = c_in * c_out;
    let (v, u) = (&*v_buf, &*u_buf);
    acc.par_chunks_mut(block).enumerate().for_each(|(xi, acc_plane)| {
        let mut work = tasks.get();
        let product = grow(&mut work.product, block);
        let (v_plane, u_plane) = (&v[xi * rows * c_in..][..rows * c_in], &u[xi * rows * c_out..][..rows * c_out]);
        gemm(Precision::F32, c_in, rows, c_out, v_plane, true, u_plane, false, 0.0, product);
        acc_plane.iter_mut().zip(product.iter()).for_each(|(a, p)| *a += p);
    });
}

simd_dispatch! {
    avx512:
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
    let (g, c, t) = (&s.g, s.c_out, s.variant.tile());
    let (g4, _) = matrices(s.variant);
    let half = &mut work.half[..t * BLOCK * c];
    let zeros = &work.zeros[..c];
    for tj in 0..s.tiles_w {
        // The 4x4 block at output (4 ti, 4 tj), read in place; beyond the output it is zero.
        let pixel = |kr: usize, kc: usize| {
            let (r, col) = (BLOCK * ti + kr, BLOCK * tj + kc);
            if r < g.oh && col < g.ow {
                &dz_img[(r * g.ow + col) * c..][..c]
            } else {
                zeros
            }
        };
        // half[a][col] = sum_k G4[a][k] d[k][col];  U[a][b] = sum_l half[a][l] G4[b][l].
        for a in 0..t {
            for col in 0..BLOCK {
                let out = &mut half[(a * BLOCK + col) * c..][..c];
                combine(out, (0..BLOCK).map(|k| (g4[a][k], pixel(k, col))));
            }
        }
        for a in 0..t {
            for (b, g_row) in g4[..t].iter().enumerate() {
                // SAFETY: the caller owns these rows (this function's contract).
                let out = unsafe { u.row(a * t + b, first_row + tj) };
                combine(out, g_row.iter().enumerate().map(|(l, &coef)| (coef, &half[(a * BLOCK + l) * c..][..c])));
            }
        }
    }
}

simd_dispatch! {
    avx512:
    /// dW[ki][kj] = sum over a, b of A^T[ki][a] M[a][b] A^T[kj][b], each a block of `len`
    /// values (`dw` holds kernel² of them, [ki][kj][len]); M[a][b] is the `len` values at
    /// (a * t + b) * `m_stride` of `m`, so that a caller may transform a column range of
    /// larger planes. `half` holds the [kernel][t] blocks of the first step.
    fn output_transform => output_transform_plain(m: &[f32], m_stride: usize, variant: Variant, half: &mut [f32], dw: &mut [f32])
}

#[inline(always)]
fn output_transform_plain(m: &[f32], m_stride: usize, variant: Variant, half: &mut [f32], dw: &mut [f32]) {
    let (t, kernel, (_, at)) = (variant.tile(), variant.kernel(), matrices(variant));
    let len = dw.len() / (kernel * kernel);
    for ki in 0..kernel {
        for b in 0..t {
            let out = &mut half[(ki * t + b) * len..][..len];
            combine(out, (0..t).map(|a| (at[ki][a], &m[(a * t + b) * m_stride..][..len])));
        }
    }
    for ki in 0..kernel {
        for kj in 0..kernel {
            let out = &mut dw[(ki * kernel + kj) * len..][..len];
            combine(out, (0..t).map(|b| (at[kj][b], &half[(ki * t + b) * len..][..len])));
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // indices as in the formulas
mod tests {
    use super::super::winograd::{BT, BT8};
    use super::*;

    /// In one dimension, for every unit input d (a tile of values) and unit dz block g (4
    /// values), A^T [(G4 g) ⊙ (B^T d)] = sum_k d[i + k] g[k] for each output i: the
    /// correlation that dW is, exactly (in f64, up to G's thirds, ninths and 45ths in f32), for
    /// the 8x8 tile's 5 outputs and the 6x6 tile's 3.
    #[test]
    fn matrices_compute_the_one_dimensional_correlation() {
        let bt6: Vec<Vec<f32>> = BT.iter().map(|r| r.to_vec()).collect();
        let bt8: Vec<Vec<f32>> = BT8.iter().map(|r| r.to_vec()).collect();
        for (variant, bt) in [(Variant::F4x4Kernel5x5, bt8), (Variant::F4x4Kernel3x3, bt6)] {
            let (t, kernel, (g4, at)) = (variant.tile(), variant.kernel(), matrices(variant));
            for da in 0..t {
                for gb in 0..BLOCK {
                    for i in 0..kernel {
                        let y: f64 = (0..t).map(|j| at[i][j] as f64 * g4[j][gb] as f64 * bt[j][da] as f64).sum();
                        let expected = if da == i + gb { 1.0 } else { 0.0 };
                        assert!((y - expected).abs() < 1e-6, "{variant:?} d{da} g{gb} out{i}: {y} != {expected}");
                    }
                }
            }
        }
    }

    /// Winograd dW chunk by chunk for 5x5 stride-1 kernels with 16 or more input channels and
    /// an output the 8x8 tile suits; summed over the batch for 3x3 stride-1 kernels with 64 or
    /// more channels on each side; everything else keeps the direct kernel or im2col.
    #[test]
    fn applies_to_five_by_five_and_summed_to_wide_three_by_three() {
        use crate::ops::window::Padding;
        let shape =
            |x: [usize; 4], c_out: usize, window: &Window| ConvShape::of(&x, &[window.kh, window.kw, x[3], c_out], None, window).unwrap();
        let applies_to = |x: [usize; 4], c_out: usize, window: Window| applies(&window, &shape(x, c_out, &window));
        let summed = |x: [usize; 4], c_out: usize, window: Window| summed_applies(&window, &shape(x, c_out, &window));
        let five = Window::new(5, 5, 1, 1, Padding::Same);
        let three = Window::new(3, 3, 1, 1, Padding::Same);
        assert!(applies_to([64, 16, 16, 64], 64, five), "the seed network's second convolution");
        assert!(applies_to([1, 6, 6, 16], 1, five), "16 input channels, any output channels");
        assert!(!applies_to([64, 16, 16, 15], 64, five), "15 input channels");
        assert!(!applies_to([64, 32, 32, 3], 64, five), "an RGB input");
        assert!(!applies_to([4, 2, 2, 16], 16, five), "a 2x2 output takes F(2x2, 5x5) forward");
        assert!(!applies_to([4, 16, 16, 16], 16, Window::new(5, 5, 2, 2, Padding::Same)), "stride 2");
        assert!(!applies_to([4, 16, 16, 64], 64, three), "3x3 chunk by chunk");
        assert!(!applies_to([4, 16, 16, 64], 64, Window::new(5, 3, 1, 1, Padding::Same)), "5x3");
        assert!(summed([4, 7, 7, 256], 256, three), "airbench's 256 -> 256 at 7x7");
        assert!(summed([4, 15, 15, 64], 256, three), "airbench's 64 -> 256 at 15x15");
        assert!(summed([4, 8, 8, 64], 64, Window::new(3, 3, 1, 1, Padding::Valid)), "64 -> 64");
        assert!(!summed([4, 16, 16, 63], 256, three), "63 input channels");
        assert!(!summed([4, 16, 16, 256], 63, three), "63 output channels");
        assert!(!summed([4, 31, 31, 24], 64, three), "airbench's 24 -> 64");
        assert!(!summed([4, 16, 16, 64], 64, Window::new(3, 3, 2, 2, Padding::Same)), "stride 2");
        assert!(!summed([4, 16, 16, 64], 64, Window::new(3, 3, 1, 2, Padding::Same)), "stride (1, 2)");
        assert!(!summed([4, 16, 16, 64], 64, five), "5x5");
        assert!(!summed([4, 16, 16, 64], 64, Window::new(3, 1, 1, 1, Padding::Same)), "3x1");
        assert!(!summed([4, 16, 16, 64], 64, Window::new(1, 3, 1, 1, Padding::Same)), "1x3");
    }

    /// 32 images per group while their tiles fit in 256 rows, then 16, then 8 (at least).
    #[test]
    fn groups_hold_up_to_256_tiles_of_32_16_or_8_images() {
        assert_eq!(images_per_group(1), 32, "a 3x3 output");
        assert_eq!(images_per_group(4), 32, "7x7: 128 rows");
        assert_eq!(images_per_group(8), 32, "256 rows");
        assert_eq!(images_per_group(9), 16);
        assert_eq!(images_per_group(16), 16, "15x15: 256 rows");
        assert_eq!(images_per_group(17), 8);
        assert_eq!(images_per_group(32), 8);
        assert_eq!(images_per_group(64), 8, "31x31: more than 256 rows, 8 images at least");
    }
}
