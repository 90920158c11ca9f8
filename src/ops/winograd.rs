//! Stride-1 convolution by Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016), in two variants that share a 6x6 input tile:
//!   F(2x2, 5x5): each 2x2 block of output from 36 multiplications per channel pair instead of
//!                2 x 2 x 25 = 100 (the seed network's second convolution), and
//!   F(4x4, 3x3): each 4x4 block from 36 instead of 4 x 4 x 9 = 144 (the 3x3 convolutions of
//!                the modern networks).
//!
//! Each block of output comes from a 6x6 tile d of the (zero-padded) input:
//!   Y = A^T [ U ⊙ V ] A,   U = G g G^T (the kernel g, transformed to 6x6),
//!                          V = B^T d B (the input tile, transformed to 6x6)
//! Summed over the input channels, the elementwise product becomes 36 matrix products, one per
//! position ξ of the 6x6 tile:  M[ξ] (tiles x C_out) = V[ξ] (tiles x C_in) · U[ξ] (C_in x C_out).
//! Both variants use the interpolation points 0, 1, -1, 2, -2 and infinity, so they have the
//! same B^T; G has one column per kernel tap and A^T one row per output. The unit tests below
//! check the matrices against the direct correlation in exact arithmetic.
//!
//! Same shapes and results as `conv2d` (within rounding: the transforms scale values by up to
//! 8 and 1/24, so outputs differ from im2col's in the last bits; the tests bound it). Used for
//! the forward pass and for the input gradient, which for stride 1 is such a convolution too
//! (`conv2d::conv2d_backward_into`); `conv2d::algorithm` decides where it applies. dW and db stay
//! with im2col.

use rayon::prelude::*;

use super::conv_shape::ConvShape;
use super::gemm::{gemm_prepared, RightOperand};
use super::gemm_bf16::PackedB;
use super::simd::simd_dispatch;
use super::window::Geometry;
use super::Precision;
use crate::chunks::IMAGES_PER_CHUNK as CHUNK;
use crate::tensor::Tensor;
use crate::threads::PerThread;

/// The tile's size in the input (both variants).
const TILE: usize = 6;
const POSITIONS: usize = TILE * TILE;

/// The stage-by-stage path for small batches keeps V and M for the whole batch: at most this
/// many tiles (37 MB for V at 64 channels); beyond it, the chunked path.
const SMALL_BATCH_MAX_TILES: usize = 4096;
/// Tiles per group in the chunked path: 8 images of the seed network's 16x16 output.
const GROUP_TILES: usize = 512;

/// Below this many input channels the 36 products are too thin to pay for the transforms (the
/// first layer of an RGB network has 3).
pub(crate) const MIN_IN_CHANNELS: usize = 16;

/// F(4x4, 3x3) saves less per transformed value than F(2x2, 5x5) (a 6x6 tile for 9 taps, not
/// 25): it needs this many channels on both sides to beat im2col.
pub(crate) const MIN_CHANNELS_3X3: usize = 32;

/// Which minimal filtering algorithm: the kernel size fixes it (stride 1 always).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// F(2x2, 5x5): 2x2 outputs per tile, 2.8 times fewer multiplications than direct.
    F2x2Kernel5x5,
    /// F(4x4, 3x3): 4x4 outputs per tile, 4 times fewer multiplications than direct.
    F4x4Kernel3x3,
}

impl Variant {
    /// The variant for a square kernel of side `kernel`, if there is one.
    pub fn for_kernel(kernel: usize) -> Option<Variant> {
        match kernel {
            5 => Some(Variant::F2x2Kernel5x5),
            3 => Some(Variant::F4x4Kernel3x3),
            _ => None,
        }
    }

    /// Output rows (and columns) per tile: TILE - kernel + 1.
    pub fn out(self) -> usize {
        TILE + 1 - self.kernel()
    }

    /// The kernel's side.
    pub fn kernel(self) -> usize {
        match self {
            Variant::F2x2Kernel5x5 => 5,
            Variant::F4x4Kernel3x3 => 3,
        }
    }

    /// The weight transform G ([6][kernel], padded with zero columns to 5).
    fn g(self) -> &'static [[f32; 5]; TILE] {
        match self {
            Variant::F2x2Kernel5x5 => &G5,
            Variant::F4x4Kernel3x3 => &G3,
        }
    }
}

// A^T and B^T as matrices, for readers and the tests; `at6`, `at6x4` and `bt6` compute them
// with shared terms.
#[cfg_attr(not(test), allow(dead_code))]
const AT2: [[f32; TILE]; 2] = [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 1.0]];
#[cfg_attr(not(test), allow(dead_code))]
const AT4: [[f32; TILE]; 4] =
    [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 0.0], [0.0, 1.0, 1.0, 4.0, 4.0, 0.0], [0.0, 1.0, -1.0, 8.0, -8.0, 1.0]];

/// G of F(4x4, 3x3), in the first three columns.
const G3: [[f32; 5]; TILE] = [
    [1.0 / 4.0, 0.0, 0.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, 0.0, 0.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 0.0, 0.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0, 0.0, 0.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0, 0.0],
];

/// G of F(2x2, 5x5).
const G5: [[f32; 5]; TILE] = [
    [1.0 / 4.0, 0.0, 0.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, -1.0 / 3.0, 2.0 / 3.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
];

#[cfg_attr(not(test), allow(dead_code))]
const BT: [[f32; TILE]; TILE] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// Reusable buffers: the transformed weights (with the version of the weight tensor they came
/// from, so that inference with unchanged weights transforms them once), and the transformed
/// inputs V and products M, shared by the whole batch (small batches) or one pair per worker
/// thread (large ones).
#[derive(Default)]
pub struct WinogradScratch {
    u: Vec<f32>,
    u_version: Option<(u64, Variant)>,
    /// The 36 planes of U packed for bf16 products, and the version of the weights they came
    /// from.
    u_packed: Vec<PackedB>,
    u_packed_version: Option<(u64, Variant)>,
    v: Vec<f32>,
    m: Vec<f32>,
    thread_vm: PerThread<(Vec<f32>, Vec<f32>)>,
}

/// y = conv(x, w) + b (then ReLU if `relu`) for a stride-1 convolution of `shape` whose kernel
/// has a [`Variant`] (3x3 or 5x5); `y` already has its shape [n, oh, ow, c_out].
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    shape: &ConvShape,
    relu: bool,
    precision: Precision,
    y: &mut Tensor,
    scratch: &mut WinogradScratch,
) {
    let ConvShape { geometry: ref g, c_in, c_out, .. } = *shape;
    let n = shape.batch;
    let variant = match Variant::for_kernel(g.kh) {
        Some(v) if g.kw == g.kh => v,
        _ => unreachable!("conv2d::algorithm picks Winograd for 3x3 and 5x5 kernels only"),
    };
    let out = variant.out();
    let s = Shape { g: *g, c_in, c_out, variant, tiles_h: g.oh.div_ceil(out), tiles_w: g.ow.div_ceil(out) };
    if scratch.u_version != Some((w.version(), variant)) {
        transform_weights(w.data(), variant, c_in, c_out, &mut scratch.u);
        scratch.u_version = Some((w.version(), variant));
    }
    if precision == Precision::Bf16 && scratch.u_packed_version != Some((w.version(), variant)) {
        scratch.u_packed.resize_with(POSITIONS, PackedB::default);
        for (xi, packed) in scratch.u_packed.iter_mut().enumerate() {
            packed.pack(c_in, c_out, &scratch.u[xi * c_in * c_out..][..c_in * c_out], false);
        }
        scratch.u_packed_version = Some((w.version(), variant));
    }
    let u = &scratch.u;
    let u_packed = &scratch.u_packed;
    // Plane xi of U, as the right operand of the products in `precision`.
    let u_plane = |xi: usize| match precision {
        Precision::F32 => RightOperand::Plain { b: &u[xi * c_in * c_out..][..c_in * c_out], b_t: false },
        Precision::Bf16 => RightOperand::Packed(&u_packed[xi]),
    };
    let (in_size, out_size) = (g.ih * g.iw * c_in, g.oh * g.ow * c_out);
    let tiles = s.tiles_h * s.tiles_w;
    let y_rows = out * g.ow * c_out; // the output rows of one row of tiles
    let epilogue = Epilogue { bias: b.data(), relu };

    if n >= 2 * CHUNK || n * tiles > SMALL_BATCH_MAX_TILES {
        // Large batch (or large images): a chunk of images per task, all three stages on one
        // thread, so that V and M stay in that core's cache; within the chunk, groups of
        // images of about GROUP_TILES tiles, one image at least, bound V and M.
        let slots = scratch.thread_vm.for_current_pool();
        let group = (GROUP_TILES / tiles).clamp(1, CHUNK);
        y.data_mut().par_chunks_mut(CHUNK * out_size).enumerate().for_each(|(chunk, y_chunk)| {
            let mut guard = slots.get();
            let (v, m) = &mut *guard;
            let mut work = TileWork::new(c_in.max(c_out));
            for (k, y_group) in y_chunk.chunks_mut(group * out_size).enumerate() {
                let (first_image, images) = (chunk * CHUNK + k * group, y_group.len() / out_size);
                let rows = images * tiles;
                let planes = Planes::new(v, rows, c_in);
                for i in 0..images {
                    let x_img = &x.data()[(first_image + i) * in_size..][..in_size];
                    for ti in 0..s.tiles_h {
                        // SAFETY: this task alone holds `planes` (its own buffer, locked).
                        unsafe { input_transform_row(x_img, &s, ti, planes, i * tiles + ti * s.tiles_w, &mut work) };
                    }
                }
                let m = grow(m, POSITIONS * rows * c_out);
                for (xi, m_plane) in m.chunks_exact_mut(rows * c_out).enumerate() {
                    gemm_prepared(rows, c_in, c_out, &v[xi * rows * c_in..][..rows * c_in], false, &u_plane(xi), 0.0, m_plane);
                }
                for (i, y_img) in y_group.chunks_exact_mut(out_size).enumerate() {
                    for (ti, y_part) in y_img.chunks_mut(y_rows).enumerate() {
                        output_transform_row(m, rows, &s, i * tiles + ti * s.tiles_w, epilogue, y_part, &mut work);
                    }
                }
            }
        });
        return;
    }

    // Small batch (batch-1 latency): each stage split over the threads on its own.
    let rows = n * tiles;
    let planes = Planes::new(&mut scratch.v, rows, c_in);
    (0..n * s.tiles_h).into_par_iter().for_each_init(
        || TileWork::new(c_in.max(c_out)),
        |work, tile_row| {
            let (img, ti) = (tile_row / s.tiles_h, tile_row % s.tiles_h);
            // SAFETY: each task writes only the rows of its own tile row (img, ti).
            unsafe { input_transform_row(&x.data()[img * in_size..][..in_size], &s, ti, planes, img * tiles + ti * s.tiles_w, work) };
        },
    );
    let v = &scratch.v[..POSITIONS * rows * c_in];
    let m = grow(&mut scratch.m, POSITIONS * rows * c_out);
    m.par_chunks_mut(rows * c_out).enumerate().for_each(|(xi, m_plane)| {
        gemm_prepared(rows, c_in, c_out, &v[xi * rows * c_in..][..rows * c_in], false, &u_plane(xi), 0.0, m_plane);
    });
    let m = &*m;
    let tasks = y
        .data_mut()
        .par_chunks_mut(out_size)
        .enumerate()
        .flat_map(|(img, y_img)| y_img.par_chunks_mut(y_rows).enumerate().map(move |(ti, y_part)| (img, ti, y_part)));
    tasks.for_each_init(
        || TileWork::new(c_in.max(c_out)),
        |work, (img, ti, y_part)| output_transform_row(m, rows, &s, img * tiles + ti * s.tiles_w, epilogue, y_part, work),
    );
}

/// The first `len` values of `buf`, grown if needed but never shrunk: a smaller last chunk
/// must not make the next step zero-fill megabytes again.
fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

#[derive(Clone, Copy)]
struct Shape {
    g: Geometry,
    c_in: usize,
    c_out: usize,
    variant: Variant,
    tiles_h: usize,
    tiles_w: usize,
}

/// What the output transform adds to each value: the bias, then the ReLU if fused.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    bias: &'a [f32],
    relu: bool,
}

/// Per-task scratch: a gathered 6x6 input tile and a half-transformed one, channels innermost.
struct TileWork {
    patch: Vec<f32>,
    half: Vec<f32>,
}

impl TileWork {
    fn new(channels: usize) -> TileWork {
        TileWork { patch: vec![0.0; POSITIONS * channels], half: vec![0.0; POSITIONS * channels] }
    }
}

/// The 36 matrices V[ξ] ([rows][c] each) in one buffer, [36][rows][c], so that each is one
/// contiguous row-major matrix for its GEMM; the input transform writes one row of all 36 at a
/// time, from several threads at once (each its own rows), hence the raw pointer.
#[derive(Clone, Copy)]
struct Planes {
    ptr: *mut f32,
    rows: usize,
    c: usize,
}

// SAFETY: Planes is only a pointer into a buffer that outlives every task using it; `row`'s
// contract keeps the rows each thread writes disjoint.
unsafe impl Send for Planes {}
unsafe impl Sync for Planes {}

impl Planes {
    fn new(buf: &mut Vec<f32>, rows: usize, c: usize) -> Planes {
        Planes { ptr: grow(buf, POSITIONS * rows * c).as_mut_ptr(), rows, c }
    }

    /// Row `row` of matrix ξ.
    ///
    /// # Safety
    /// The buffer must still be alive and not otherwise borrowed, and no other thread may use
    /// the same (ξ, row) while the returned slice lives.
    #[inline(always)]
    unsafe fn row<'a>(self, xi: usize, row: usize) -> &'a mut [f32] {
        assert!(xi < POSITIONS && row < self.rows, "Planes::row out of range");
        // SAFETY: in range (asserted), and the caller's contract above.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add((xi * self.rows + row) * self.c), self.c) }
    }
}

/// U[a][b] = sum over k, l of G[a][k] g[k][l] G[b][l], for every (c_in, c_out) pair at once:
/// w is HWIO [r][r][c_in][c_out] (r the kernel side), so g[k][l] is a contiguous block of
/// c_in * c_out values, and U comes out as [36][c_in][c_out], one GEMM operand per position.
fn transform_weights(w: &[f32], variant: Variant, c_in: usize, c_out: usize, u: &mut Vec<f32>) {
    let block = c_in * c_out;
    u.resize(POSITIONS * block, 0.0);
    u.par_chunks_mut(TILE * block).enumerate().for_each(|(a, u_row)| {
        let mut gg = vec![0.0f32; variant.kernel() * block];
        weight_row(w, variant, a, &mut gg, u_row);
    });
}

simd_dispatch! {
    /// Row `a` of U: (G g)[a] (one block per kernel column), then U[a][b] for the 6 columns b.
    fn weight_row => weight_row_plain(w: &[f32], variant: Variant, a: usize, gg: &mut [f32], u_row: &mut [f32])
}

#[inline(always)]
fn weight_row_plain(w: &[f32], variant: Variant, a: usize, gg: &mut [f32], u_row: &mut [f32]) {
    let (r, g) = (variant.kernel(), variant.g());
    let block = gg.len() / r;
    for (l, out) in gg.chunks_exact_mut(block).enumerate() {
        combine(out, g[a][..r].iter().enumerate().map(|(k, &coef)| (coef, &w[(k * r + l) * block..][..block])));
    }
    for (bcol, out) in u_row.chunks_exact_mut(block).enumerate() {
        combine(out, g[bcol][..r].iter().enumerate().map(|(l, &coef)| (coef, &gg[l * block..][..block])));
    }
}

simd_dispatch! {
    /// V = B^T d B for the tiles of tile row `ti` of one image `x_img` ([ih, iw, c_in]), tile tj
    /// going to row `first_row + tj` of every V[ξ].
    ///
    /// # Safety
    /// As `Planes::row`, for those rows.
    unsafe fn input_transform_row => input_transform_row_plain(x_img: &[f32], s: &Shape, ti: usize, v: Planes, first_row: usize, work: &mut TileWork)
}

#[inline(always)]
fn input_transform_row_plain(x_img: &[f32], s: &Shape, ti: usize, v: Planes, first_row: usize, work: &mut TileWork) {
    let (g, c) = (&s.g, s.c_in);
    let patch = &mut work.patch[..POSITIONS * c];
    let half = &mut work.half[..POSITIONS * c];
    for tj in 0..s.tiles_w {
        // Gather the 6x6 tile whose top-left input pixel is (out ti - pad_top, out tj - pad_left);
        // pixels outside the image are the zero padding.
        let out = s.variant.out();
        let (r0, s0) = ((out * ti) as isize - g.pad_top as isize, (out * tj) as isize - g.pad_left as isize);
        for kr in 0..TILE {
            let row = &mut patch[kr * TILE * c..][..TILE * c];
            let r = r0 + kr as isize;
            if r < 0 || r >= g.ih as isize {
                row.fill(0.0);
                continue;
            }
            let x_row = &x_img[r as usize * g.iw * c..][..g.iw * c];
            if s0 >= 0 && s0 as usize + TILE <= g.iw {
                row.copy_from_slice(&x_row[s0 as usize * c..][..TILE * c]);
                continue;
            }
            for kc in 0..TILE {
                let col = s0 + kc as isize;
                let dst = &mut row[kc * c..][..c];
                if col < 0 || col >= g.iw as isize {
                    dst.fill(0.0);
                } else {
                    dst.copy_from_slice(&x_row[col as usize * c..][..c]);
                }
            }
        }
        // half[a][col] = sum_k BT[a][k] d[k][col];  V[a][b] = sum_k half[a][k] BT[b][k].
        for col in 0..TILE {
            let d: [&[f32]; TILE] = six(|k| &patch[(k * TILE + col) * c..][..c]);
            let mut rows = half.chunks_exact_mut(TILE * c).map(|r| &mut r[col * c..][..c]);
            let out: [&mut [f32]; TILE] = six(|_| rows.next().expect("6 rows"));
            bt6(d, out);
        }
        for a in 0..TILE {
            let h: [&[f32]; TILE] = six(|k| &half[(a * TILE + k) * c..][..c]);
            // SAFETY: the caller owns these rows (this function's contract).
            let out: [&mut [f32]; TILE] = six(|bcol| unsafe { v.row(a * TILE + bcol, first_row + tj) });
            bt6(h, out);
        }
    }
}

/// o[a] = sum_k BT[a][k] d[k] for six channel vectors, in one pass with shared terms:
///   o0 = 4 d0 - 5 d2 + d4          o3 = (d4 - d2) - 2 (d1 - d3)
///   o1 = (d3 + d4) - 4 (d1 + d2)   o4 = (d4 - d2) + 2 (d1 - d3)
///   o2 = (d4 - d3) + 4 (d1 - d2)   o5 = 4 d1 - 5 d3 + d5
#[inline(always)]
fn bt6(d: [&[f32]; TILE], o: [&mut [f32]; TILE]) {
    let c = o[0].len();
    let [d0, d1, d2, d3, d4, d5] = d;
    let (d0, d1, d2, d3, d4, d5) = (&d0[..c], &d1[..c], &d2[..c], &d3[..c], &d4[..c], &d5[..c]);
    let [o0, o1, o2, o3, o4, o5] = o;
    let (o0, o1, o2, o3, o4, o5) = (&mut o0[..c], &mut o1[..c], &mut o2[..c], &mut o3[..c], &mut o4[..c], &mut o5[..c]);
    for ch in 0..c {
        let (d0, d1, d2, d3, d4, d5) = (d0[ch], d1[ch], d2[ch], d3[ch], d4[ch], d5[ch]);
        let (p, q) = (d4 - d2, d1 - d3);
        o0[ch] = 4.0 * d0 - 5.0 * d2 + d4;
        o1[ch] = (d3 + d4) - 4.0 * (d1 + d2);
        o2[ch] = (d4 - d3) + 4.0 * (d1 - d2);
        o3[ch] = p - 2.0 * q;
        o4[ch] = p + 2.0 * q;
        o5[ch] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

simd_dispatch! {
    /// Y = A^T M A (+ bias, ReLU) for the tiles of one tile row, tile tj being row
    /// `first_row + tj` of every M[ξ] (`m` is [36][rows][c_out]); `y_part` is that tile row's
    /// output rows (out of them, or fewer for the last tile row when out does not divide oh).
    fn output_transform_row => output_transform_row_plain(m: &[f32], rows: usize, s: &Shape, first_row: usize, epilogue: Epilogue, y_part: &mut [f32], work: &mut TileWork)
}

#[inline(always)]
fn output_transform_row_plain(
    m: &[f32],
    rows: usize,
    s: &Shape,
    first_row: usize,
    epilogue: Epilogue,
    y_part: &mut [f32],
    work: &mut TileWork,
) {
    let Epilogue { bias, relu } = epilogue;
    let (g, c, variant) = (&s.g, s.c_out, s.variant);
    let out = variant.out();
    let TileWork { patch, half } = work;
    let half = &mut half[..out * TILE * c];
    let out_rows = y_part.len() / (g.ow * c);
    for tj in 0..s.tiles_w {
        let m_at = |xi: usize| &m[(xi * rows + first_row + tj) * c..][..c];
        // half[i][b] = sum_a AT[i][a] M[a][b];  y[i][j] = sum_b half[i][b] AT[j][b] + bias.
        for bcol in 0..TILE {
            let col: [&[f32]; TILE] = six(|a| m_at(a * TILE + bcol));
            let mut h = half.chunks_exact_mut(TILE * c).map(|r| &mut r[bcol * c..][..c]);
            let mut next = || h.next().expect("one half row per output row");
            match variant {
                Variant::F2x2Kernel5x5 => at6::<false, false>([next(), next()], col, &[]),
                Variant::F4x4Kernel3x3 => at6x4::<false, false>([next(), next(), next(), next()], col, &[]),
            }
        }
        // The last tile of a width that out does not divide has columns outside the output:
        // those go to `patch`, unread.
        let col = out * tj;
        let inside = out.min(g.ow - col);
        for i in 0..out_rows {
            let row: [&[f32]; TILE] = six(|b| &half[(i * TILE + b) * c..][..c]);
            let y_cols = y_part[(i * g.ow + col) * c..][..inside * c].chunks_exact_mut(c);
            let mut o = y_cols.chain(patch.chunks_exact_mut(c));
            let mut next = || o.next().expect("one slice per output column");
            // The ReLU as a constant, so that each loop is compiled without a test in it.
            match (variant, relu) {
                (Variant::F2x2Kernel5x5, false) => at6::<true, false>([next(), next()], row, bias),
                (Variant::F2x2Kernel5x5, true) => at6::<true, true>([next(), next()], row, bias),
                (Variant::F4x4Kernel3x3, false) => at6x4::<true, false>([next(), next(), next(), next()], row, bias),
                (Variant::F4x4Kernel3x3, true) => at6x4::<true, true>([next(), next(), next(), next()], row, bias),
            }
        }
    }
}

/// Adds the bias (if BIAS), then the ReLU (if RELU; as Activation::Relu: NaN passes through).
#[inline(always)]
fn finish<const BIAS: bool, const RELU: bool>(v: f32, bias: f32) -> f32 {
    let v = if BIAS { v + bias } else { v };
    if RELU && v < 0.0 {
        0.0
    } else {
        v
    }
}

/// o[i] = sum_a AT2[i][a] m[a] (+ bias, then ReLU) for six channel vectors, in one pass
/// (F(2x2, 5x5)):
///   o0 = m0 + m1 + m2 + m3 + m4,   o1 = (m1 - m2) + 2 (m3 - m4) + m5
/// `bias` is read only if BIAS.
#[inline(always)]
fn at6<const BIAS: bool, const RELU: bool>(o: [&mut [f32]; 2], m: [&[f32]; TILE], bias: &[f32]) {
    let c = o[0].len();
    let [m0, m1, m2, m3, m4, m5] = m;
    let (m0, m1, m2, m3, m4, m5) = (&m0[..c], &m1[..c], &m2[..c], &m3[..c], &m4[..c], &m5[..c]);
    let [o0, o1] = o;
    let (o0, o1) = (&mut o0[..c], &mut o1[..c]);
    let bias = if BIAS { &bias[..c] } else { &[][..] };
    for ch in 0..c {
        let (m0, m1, m2, m3, m4, m5) = (m0[ch], m1[ch], m2[ch], m3[ch], m4[ch], m5[ch]);
        let b = if BIAS { bias[ch] } else { 0.0 };
        o0[ch] = finish::<BIAS, RELU>(m0 + m1 + m2 + m3 + m4, b);
        o1[ch] = finish::<BIAS, RELU>((m1 - m2) + 2.0 * (m3 - m4) + m5, b);
    }
}

/// o[i] = sum_a AT4[i][a] m[a] (+ bias, then ReLU) for six channel vectors, in one pass
/// (F(4x4, 3x3)), with p = m1 + m2, q = m1 - m2, r = m3 + m4, t = m3 - m4:
///   o0 = m0 + p + r,   o1 = q + 2 t,   o2 = p + 4 r,   o3 = q + 8 t + m5
/// `bias` is read only if BIAS.
#[inline(always)]
fn at6x4<const BIAS: bool, const RELU: bool>(o: [&mut [f32]; 4], m: [&[f32]; TILE], bias: &[f32]) {
    let c = o[0].len();
    let [m0, m1, m2, m3, m4, m5] = m;
    let (m0, m1, m2, m3, m4, m5) = (&m0[..c], &m1[..c], &m2[..c], &m3[..c], &m4[..c], &m5[..c]);
    let [o0, o1, o2, o3] = o;
    let (o0, o1, o2, o3) = (&mut o0[..c], &mut o1[..c], &mut o2[..c], &mut o3[..c]);
    let bias = if BIAS { &bias[..c] } else { &[][..] };
    for ch in 0..c {
        let (p, q, r, t) = (m1[ch] + m2[ch], m1[ch] - m2[ch], m3[ch] + m4[ch], m3[ch] - m4[ch]);
        let b = if BIAS { bias[ch] } else { 0.0 };
        o0[ch] = finish::<BIAS, RELU>(m0[ch] + p + r, b);
        o1[ch] = finish::<BIAS, RELU>(q + 2.0 * t, b);
        o2[ch] = finish::<BIAS, RELU>(p + 4.0 * r, b);
        o3[ch] = finish::<BIAS, RELU>(q + 8.0 * t + m5[ch], b);
    }
}

/// [f(0), f(1), .., f(5)], inlined (`std::array::from_fn` was left as a call in the hot loop).
#[inline(always)]
fn six<T>(mut f: impl FnMut(usize) -> T) -> [T; TILE] {
    [f(0), f(1), f(2), f(3), f(4), f(5)]
}

/// out = sum of coef * input over the (coef, input) pairs, skipping zero coefficients.
#[inline(always)]
fn combine<'a>(out: &mut [f32], terms: impl Iterator<Item = (f32, &'a [f32])>) {
    let mut first = true;
    for (coef, input) in terms {
        if coef == 0.0 {
            continue;
        }
        if first {
            out.iter_mut().zip(input).for_each(|(o, &v)| *o = coef * v);
            first = false;
        } else {
            out.iter_mut().zip(input).for_each(|(o, &v)| *o += coef * v);
        }
    }
    if first {
        out.fill(0.0);
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // indices as in the formulas
mod tests {
    use super::*;

    /// bt6 and at6 (shared terms, one pass) compute B^T d and A^T m (+ bias, ReLU).
    #[test]
    fn shared_term_transforms_equal_the_matrices() {
        let c = 11;
        let input: Vec<Vec<f32>> = (0..TILE).map(|k| (0..c).map(|ch| ((k * 31 + ch * 17) % 23) as f32 / 7.0 - 1.5).collect()).collect();
        let d: [&[f32]; TILE] = std::array::from_fn(|k| &input[k][..]);
        let mut out = vec![vec![0.0f32; c]; TILE];
        let mut it = out.iter_mut();
        bt6(d, std::array::from_fn(|_| &mut it.next().unwrap()[..]));
        for a in 0..TILE {
            for ch in 0..c {
                let expected: f32 = (0..TILE).map(|k| BT[a][k] * input[k][ch]).sum();
                assert!((out[a][ch] - expected).abs() < 1e-5, "bt6 row {a} channel {ch}");
            }
        }
        let bias: Vec<f32> = (0..c).map(|ch| ch as f32 * 0.5 - 2.0).collect();
        for relu in [false, true] {
            let mut o = vec![vec![0.0f32; c]; 4];
            let check = |o: &[Vec<f32>], at: &[[f32; TILE]], name: &str| {
                for (i, o) in o.iter().enumerate().take(at.len()) {
                    for ch in 0..c {
                        let mut expected: f32 = (0..TILE).map(|a| at[i][a] * input[a][ch]).sum::<f32>() + bias[ch];
                        if relu {
                            expected = expected.max(0.0);
                        }
                        assert!((o[ch] - expected).abs() < 1e-5, "{name} row {i} channel {ch} relu {relu}");
                    }
                }
            };
            let [o0, o1, _, _] = &mut o[..] else { unreachable!() };
            if relu {
                at6::<true, true>([o0, o1], d, &bias);
            } else {
                at6::<true, false>([o0, o1], d, &bias);
            }
            check(&o, &AT2, "at6");
            let [o0, o1, o2, o3] = &mut o[..] else { unreachable!() };
            if relu {
                at6x4::<true, true>([o0, o1, o2, o3], d, &bias);
            } else {
                at6x4::<true, false>([o0, o1, o2, o3], d, &bias);
            }
            check(&o, &AT4, "at6x4");
        }
    }

    /// The matrices compute the correlation exactly: in one dimension, for every unit input d
    /// and unit kernel g, A^T [(G g) ⊙ (B^T d)] = sum_k d[i + k] g[k] (exact in f64: every
    /// entry is a small dyadic or a sixth, and the sums cancel to integers). Both variants.
    #[test]
    fn matrices_compute_the_one_dimensional_correlation() {
        for (variant, at) in [(Variant::F2x2Kernel5x5, &AT2[..]), (Variant::F4x4Kernel3x3, &AT4[..])] {
            assert_eq!(at.len(), variant.out());
            let g = variant.g();
            for da in 0..TILE {
                for gb in 0..variant.kernel() {
                    for i in 0..variant.out() {
                        let mut y = 0.0f64;
                        for j in 0..TILE {
                            y += at[i][j] as f64 * g[j][gb] as f64 * BT[j][da] as f64;
                        }
                        let expected = if da == i + gb { 1.0 } else { 0.0 };
                        assert!((y - expected).abs() < 1e-6, "{variant:?}: d{da} g{gb} y{i}: {y} != {expected}");
                    }
                }
            }
            // The padding columns of G are zero (the weight transform reads only `kernel`).
            assert!(g.iter().all(|row| row[variant.kernel()..].iter().all(|&v| v == 0.0)), "{variant:?}");
        }
    }

    /// Only square 3x3 and 5x5 kernels have a variant: a 3x5 one (which `conv2d::algorithm`
    /// never sends here) is refused rather than computed as 3x3.
    #[test]
    #[should_panic(expected = "3x3 and 5x5 kernels only")]
    fn a_kernel_without_a_variant_is_refused() {
        use crate::ops::window::{Padding, Window};
        let window = Window::new(3, 5, 1, 1, Padding::Same);
        let (x, w, b) = (Tensor::zeros(&[1, 8, 8, 32]), Tensor::zeros(&[3, 5, 32, 32]), Tensor::zeros(&[32]));
        let shape = ConvShape::of(x.shape(), w.shape(), Some(b.shape()), &window).unwrap();
        let mut y = Tensor::zeros(&shape.output_shape());
        forward_into(&x, &w, &b, &shape, false, Precision::F32, &mut y, &mut WinogradScratch::default());
    }

    #[test]
    fn variants_follow_the_kernel_size() {
        assert_eq!(Variant::for_kernel(3), Some(Variant::F4x4Kernel3x3));
        assert_eq!(Variant::for_kernel(5), Some(Variant::F2x2Kernel5x5));
        assert_eq!(Variant::for_kernel(4), None);
        assert_eq!((Variant::F4x4Kernel3x3.out(), Variant::F2x2Kernel5x5.out()), (4, 2));
    }
}
