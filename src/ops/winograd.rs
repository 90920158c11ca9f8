//! Stride-1 convolution by Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016), in three variants:
//!   F(2x2, 5x5): each 2x2 block of output from a 6x6 tile, 36 multiplications per channel pair
//!                instead of 2 x 2 x 25 = 100 (small outputs of a 5x5 kernel),
//!   F(4x4, 5x5): each 4x4 block from an 8x8 tile, 64 instead of 4 x 4 x 25 = 400 (the seed
//!                network's second convolution, 16x16), and
//!   F(4x4, 3x3): each 4x4 block from a 6x6 tile, 36 instead of 4 x 4 x 9 = 144 (the 3x3
//!                convolutions of the modern networks).
//!
//! Each block of output comes from a tile d of the (zero-padded) input, t x t (t = 6 or 8):
//!   Y = A^T [ U ⊙ V ] A,   U = G g G^T (the kernel g, transformed to t x t),
//!                          V = B^T d B (the input tile, transformed to t x t)
//! Summed over the input channels, the elementwise product becomes t² matrix products, one per
//! position ξ of the tile:  M[ξ] (tiles x C_out) = V[ξ] (tiles x C_in) · U[ξ] (C_in x C_out).
//! The 6x6 variants use the interpolation points 0, 1, -1, 2, -2 and infinity, the 8x8 one adds
//! 1/2 and -1/2; variants of one tile size share B^T; G has one column per kernel tap and A^T
//! one row per output. The unit tests below check the matrices against the direct correlation
//! in exact arithmetic.
//!
//! Same shapes and results as `conv2d` (within rounding: the transforms scale values by up to
//! 8 and 1/24 (6x6) or 21/4 and 1/90 (8x8), so outputs differ from im2col's in the last bits;
//! the tests bound it). Used for the forward pass and for the input gradient, which for stride
//! 1 is such a convolution too (`conv2d::conv2d_backward_into`); `conv2d::algorithm` decides
//! where Winograd applies, [`Variant::for_output`] which variant. dW goes by
//! `winograd_dw` (5x5, and wide 3x3 layers), `conv_dw_direct` or im2col
//! (`conv2d::weight_grads`).
//!
//! Two ways through a batch ([`forward_into`]): chunks of 8 images, one per task, all three
//! stages on one thread (V and M stay in its cache); or groups of images, each stage split over
//! the threads on its own (transforms by tile rows, products by positions). The second serves
//! small batches (batch-1 latency) and wide layers on small images (256 -> 256 at 7x7: 8 images
//! hold 32 tiles, too few rows for efficient products, and each chunk would read all 9.4 MB of
//! U for them).

use rayon::prelude::*;

use super::bf16::{interleave_rows, rows_to_pairs};
use super::conv_shape::ConvShape;
use super::gemm::{gemm_prepared, RightOperand};
use super::gemm_bf16::{gemm_bf16_pairs, Chain, PackedB};
use super::simd::simd_dispatch;
use super::window::Geometry;
use super::Precision;
use crate::chunks::IMAGES_PER_CHUNK as CHUNK;
use crate::tensor::Tensor;
use crate::threads::{with_thread_scratch, PerThread};

/// The largest tile side (F(4x4, 5x5)); the others use 6.
const MAX_TILE: usize = 8;

/// The stage-by-stage path for small batches keeps V and M for the whole batch: at most this
/// many tiles (37 MB for V at 64 channels); beyond it, the chunked path.
const SMALL_BATCH_MAX_TILES: usize = 4096;
/// Tiles per group in the chunked path: 8 images of the seed network's 16x16 output.
const GROUP_TILES: usize = 512;
/// Tiles per group in the staged path of small images.
const STAGED_GROUP_TILES: usize = 256;
/// Weights per position (C_in x C_out) from which small images take the staged path.
const STAGED_MIN_WEIGHTS: usize = 128 * 128;

/// Below this many input channels the 36 products are too thin to pay for the transforms (the
/// first layer of an RGB network has 3).
pub(crate) const MIN_IN_CHANNELS: usize = 16;

/// F(4x4, 3x3) saves less per transformed value than F(2x2, 5x5) (a 6x6 tile for 9 taps, not
/// 25): it needs this many channels on both sides to beat im2col (16 -> 32 at 32x32 was 25%
/// slower by Winograd, 24 -> 64 at 31x31 1.5 times as fast).
pub(crate) const MIN_CHANNELS_3X3: usize = 24;

/// Which minimal filtering algorithm (stride 1 always): the kernel size and, for 5x5, the
/// output size fix it ([`Variant::for_output`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// F(2x2, 5x5): 2x2 outputs per 6x6 tile, 2.8 times fewer multiplications than direct.
    F2x2Kernel5x5,
    /// F(4x4, 5x5): 4x4 outputs per 8x8 tile, 6.25 times fewer multiplications than direct.
    F4x4Kernel5x5,
    /// F(4x4, 3x3): 4x4 outputs per 6x6 tile, 4 times fewer multiplications than direct.
    F4x4Kernel3x3,
}

impl Variant {
    /// A variant for a square kernel of side `kernel`, if there is one (for 5x5, the 8x8 tile's;
    /// [`Variant::for_output`] picks between the two by the output's size).
    pub fn for_kernel(kernel: usize) -> Option<Variant> {
        match kernel {
            5 => Some(Variant::F4x4Kernel5x5),
            3 => Some(Variant::F4x4Kernel3x3),
            _ => None,
        }
    }

    /// The variant for a `kernel` x `kernel` convolution with an oh x ow output: of the
    /// kernel's variants, the one with the fewest transformed values, tiles x t² (per channel,
    /// the measure of both the transforms' and the products' work; a part-used last tile costs
    /// as much as a whole one). A 16x16 output takes F(4x4, 5x5): 16 tiles of 64 against 64 of
    /// 36; a 2x2 one F(2x2, 5x5): one tile of 36 against one of 64. (No output size makes the
    /// two costs equal: none up to 300x300, checked by enumeration.)
    pub fn for_output(kernel: usize, oh: usize, ow: usize) -> Option<Variant> {
        let cost = |v: Variant| oh.div_ceil(v.out()) * ow.div_ceil(v.out()) * v.positions();
        match Variant::for_kernel(kernel)? {
            Variant::F4x4Kernel5x5 if cost(Variant::F2x2Kernel5x5) < cost(Variant::F4x4Kernel5x5) => Some(Variant::F2x2Kernel5x5),
            v => Some(v),
        }
    }

    /// The tile's side in the input: 6 or 8.
    pub fn tile(self) -> usize {
        match self {
            Variant::F4x4Kernel5x5 => 8,
            Variant::F2x2Kernel5x5 | Variant::F4x4Kernel3x3 => 6,
        }
    }

    /// Positions ξ of the tile, one product each: tile².
    pub fn positions(self) -> usize {
        self.tile() * self.tile()
    }

    /// Output rows (and columns) per tile: tile - kernel + 1.
    pub fn out(self) -> usize {
        self.tile() + 1 - self.kernel()
    }

    /// The kernel's side.
    pub fn kernel(self) -> usize {
        match self {
            Variant::F2x2Kernel5x5 | Variant::F4x4Kernel5x5 => 5,
            Variant::F4x4Kernel3x3 => 3,
        }
    }

    /// The weight transform G ([tile][kernel], padded with zero columns to 5).
    fn g(self) -> &'static [[f32; 5]] {
        match self {
            Variant::F2x2Kernel5x5 => &G5,
            Variant::F4x4Kernel5x5 => &G5_TILE8,
            Variant::F4x4Kernel3x3 => &G3,
        }
    }
}

/// The 6x6 tile's side.
const TILE: usize = 6;

// A^T and B^T as matrices, for readers and the tests; `at6`, `at6x4`, `at8x4`, `bt6` and `bt8`
// compute them with shared terms.
#[cfg_attr(not(test), allow(dead_code))]
const AT2: [[f32; TILE]; 2] = [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 1.0]];
#[cfg_attr(not(test), allow(dead_code))]
const AT4: [[f32; TILE]; 4] =
    [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 0.0], [0.0, 1.0, 1.0, 4.0, 4.0, 0.0], [0.0, 1.0, -1.0, 8.0, -8.0, 1.0]];

/// G of F(4x4, 3x3), in the first three columns.
pub(crate) const G3: [[f32; 5]; TILE] = [
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

/// A^T of F(4x4, 5x5): the powers of 0, 1, -1, 1/2, -1/2, 2, -2, and infinity's column.
#[cfg_attr(not(test), allow(dead_code))]
const AT8X4: [[f32; 8]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 0.25, 0.25, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 0.125, -0.125, 8.0, -8.0, 1.0],
];

/// G of F(4x4, 5x5): row j is (p_j^0, .., p_j^4) / prod over the other finite points l of
/// (p_j - p_l), for p = 0, 1, -1, 1/2, -1/2, 2, -2 (the first row's sign moved to B^T's), then
/// infinity's row.
pub(crate) const G5_TILE8: [[f32; 5]; 8] = [
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
    [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
    [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0, 4.0 / 45.0, 2.0 / 45.0],
    [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0, -4.0 / 45.0, 2.0 / 45.0],
    [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0, 4.0 / 45.0, 8.0 / 45.0],
    [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0, -4.0 / 45.0, 8.0 / 45.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
];

/// B^T of the 8x8 tile (solved from A^T and G so that the three give the correlation; the
/// same as Lavin and Gray's F(6x6, 3x3) up to the order of the points).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const BT8: [[f32; 8]; 8] = [
    [1.0, 0.0, -21.0 / 4.0, 0.0, 21.0 / 4.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, -17.0 / 4.0, -17.0 / 4.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 17.0 / 4.0, -17.0 / 4.0, -1.0, 1.0, 0.0],
    [0.0, 2.0, 4.0, -5.0 / 2.0, -5.0, 0.5, 1.0, 0.0],
    [0.0, -2.0, 4.0, 5.0 / 2.0, -5.0, -0.5, 1.0, 0.0],
    [0.0, 0.5, 0.25, -5.0 / 2.0, -5.0 / 4.0, 2.0, 1.0, 0.0],
    [0.0, -0.5, 0.25, 5.0 / 2.0, -5.0 / 4.0, -2.0, 1.0, 0.0],
    [0.0, -1.0, 0.0, 21.0 / 4.0, 0.0, -21.0 / 4.0, 0.0, 1.0],
];

/// B^T of the 6x6 tile.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const BT: [[f32; TILE]; TILE] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// Reusable buffers: the transformed weights (with the version of the weight tensor they came
/// from, so that inference with unchanged weights transforms them once) and each worker's tile
/// buffers. (The transformed inputs V and products M are a thread's pair, shared by all layers:
/// `threads::with_thread_scratch`.)
#[derive(Default)]
pub struct WinogradScratch {
    u: Vec<f32>,
    u_version: Option<(u64, Variant)>,
    /// The 36 planes of U packed for bf16 products, and the version of the weights they came
    /// from (and the chain they were packed for).
    u_packed: Vec<PackedB>,
    u_packed_version: Option<(u64, Variant, Chain)>,
    tiles: PerThread<Option<TileWork>>,
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
    let variant = match Variant::for_output(g.kh, g.oh, g.ow) {
        Some(v) if g.kw == g.kh => v,
        _ => unreachable!("conv2d::algorithm picks Winograd for 3x3 and 5x5 kernels only"),
    };
    let (out, positions) = (variant.out(), variant.positions());
    let s = Shape::new(*g, c_in, c_out, variant);
    if precision == Precision::F32 && scratch.u_version != Some((w.version(), variant)) {
        transform_weights(w.data(), variant, c_in, c_out, &mut scratch.u);
        scratch.u_version = Some((w.version(), variant));
    }
    if let Some(chain) = precision.bf16_chain() {
        if scratch.u_packed_version != Some((w.version(), variant, chain)) {
            transform_weights_packed(w.data(), variant, c_in, c_out, chain, &mut scratch.u_packed);
            scratch.u_packed_version = Some((w.version(), variant, chain));
        }
    }
    let u = &scratch.u;
    let u_packed = &scratch.u_packed;
    // Plane xi of U, as the right operand of the products in `precision`.
    let u_plane = |xi: usize| match precision {
        Precision::F32 => RightOperand::Plain { b: &u[xi * c_in * c_out..][..c_in * c_out], b_t: false },
        _bf16 => RightOperand::Packed(&u_packed[xi]),
    };
    let (in_size, out_size) = (g.ih * g.iw * c_in, g.oh * g.ow * c_out);
    let tiles = s.tiles_h * s.tiles_w;
    let y_rows = out * g.ow * c_out; // the output rows of one row of tiles
    let epilogue = Epilogue { bias: b.data(), relu };

    let tile_works = scratch.tiles.for_current_pool();
    let channels = c_in.max(c_out);
    let pairs = precision.bf16_chain() == Some(Chain::Dot);
    let Some(group) = staged_group(n, tiles, c_in * c_out) else {
        // Large images: a chunk of images per task, all three stages on one thread, so that V
        // and M stay in that core's cache; within the chunk, groups of images of about
        // GROUP_TILES tiles, one image at least, bound V and M.
        let group = (GROUP_TILES / tiles).clamp(1, CHUNK);
        let chunks = y.data_mut().par_chunks_mut(CHUNK * out_size).enumerate();
        chunks.for_each(|(chunk, y_chunk)| {
            with_thread_scratch(|v, m| {
                let mut slot = tile_works.get();
                let work = TileWork::sized(&mut slot, channels);
                let mut v_pairs = V_PAIRS.take();
                for (k, y_group) in y_chunk.chunks_mut(group * out_size).enumerate() {
                    let (first_image, images) = (chunk * CHUNK + k * group, y_group.len() / out_size);
                    let rows = images * tiles;
                    let planes = VPlanes::new(pairs, v, &mut v_pairs, positions, rows, c_in);
                    for i in 0..images {
                        let x_img = &x.data()[(first_image + i) * in_size..][..in_size];
                        for ti in 0..s.tiles_h {
                            // SAFETY: this task alone holds `planes` (its thread's own buffers).
                            unsafe { planes.transform_row(x_img, &s, ti, i * tiles + ti * s.tiles_w, work) };
                        }
                    }
                    let m = grow(m, positions * rows * c_out);
                    for (xi, m_plane) in m.chunks_exact_mut(rows * c_out).enumerate() {
                        // SAFETY: the transforms are done; nothing writes V now.
                        unsafe { planes.product(xi, c_out, &u_plane(xi), m_plane) };
                    }
                    for (i, y_img) in y_group.chunks_exact_mut(out_size).enumerate() {
                        for (ti, y_part) in y_img.chunks_mut(y_rows).enumerate() {
                            output_transform_row(m, rows, &s, i * tiles + ti * s.tiles_w, epilogue, y_part, work);
                        }
                    }
                }
                V_PAIRS.set(v_pairs);
            })
        });
        return;
    };

    // Small batches (batch-1 latency) and small images (whose chunk of 8 images holds too few
    // tiles for efficient products, and would read all of U for so few): groups of images,
    // each stage of a group split over the threads on its own (tile rows, then positions).
    with_thread_scratch(|v_buf, m_buf| {
        let mut v_pairs = V_PAIRS.take();
        for (k, y_group) in y.data_mut().chunks_mut(group * out_size).enumerate() {
            let (first_image, images) = (k * group, y_group.len() / out_size);
            let rows = images * tiles;
            let planes = VPlanes::new(pairs, v_buf, &mut v_pairs, positions, rows, c_in);
            par_tile_rows(images, s.tiles_h, tile_works, channels, |img, ti, work| {
                let x_img = &x.data()[(first_image + img) * in_size..][..in_size];
                // SAFETY: each task writes only the rows of its own tile row (img, ti).
                unsafe { planes.transform_row(x_img, &s, ti, img * tiles + ti * s.tiles_w, work) };
            });
            let m = grow(m_buf, positions * rows * c_out);
            m.par_chunks_mut(rows * c_out).enumerate().for_each(|(xi, m_plane)| {
                // SAFETY: the transforms are done; nothing writes V now.
                unsafe { planes.product(xi, c_out, &u_plane(xi), m_plane) };
            });
            let m = &*m;
            let tasks = y_group
                .par_chunks_mut(out_size)
                .enumerate()
                .flat_map(|(img, y_img)| y_img.par_chunks_mut(y_rows).enumerate().map(move |(ti, y_part)| (img, ti, y_part)));
            tasks.for_each(|(img, ti, y_part)| {
                let mut slot = tile_works.get();
                output_transform_row(m, rows, &s, img * tiles + ti * s.tiles_w, epilogue, y_part, TileWork::sized(&mut slot, channels))
            });
        }
        V_PAIRS.set(v_pairs);
    });
}

thread_local! {
    /// This thread's V in bf16 pairs (the dot chain's [`VPlanes::Pairs`]), taken while in use.
    static V_PAIRS: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// V, the left operands of the t² products, as the products take them: float32 rows (float32,
/// and the tiles' chain, whose kernels put A in their own order), or, on the dot chain, rows of
/// bf16 pairs (`gemm_bf16::gemm_bf16_pairs`), converted as each tile row is transformed: half
/// the memory, and no product reads V in float32 to convert it (rows_to_pairs had 2.7% of the
/// airbench step). The bits are the same either way: the same rounding of the same values.
#[derive(Clone, Copy)]
enum VPlanes {
    Floats(Planes<f32>),
    Pairs(Planes<u32>),
}

impl VPlanes {
    /// The planes of `rows` rows of `c` channels: pairs over `pairs_buf` if `pairs`, else
    /// floats over `floats`.
    fn new(pairs: bool, floats: &mut Vec<f32>, pairs_buf: &mut Vec<u32>, positions: usize, rows: usize, c: usize) -> VPlanes {
        match pairs {
            true => VPlanes::Pairs(Planes::new(pairs_buf, positions, rows, c.div_ceil(2))),
            false => VPlanes::Floats(Planes::new(floats, positions, rows, c)),
        }
    }

    /// V of the tiles of tile row `ti` of `x_img`, tile tj to row `first_row + tj`
    /// ([`input_transform_row`]); for pairs, the tile row's V in float32 first (`work.stage`,
    /// in cache), then each plane's rows converted.
    ///
    /// # Safety
    /// As `Planes::row`, for those rows.
    unsafe fn transform_row(self, x_img: &[f32], s: &Shape, ti: usize, first_row: usize, work: &mut TileWork) {
        match self {
            // SAFETY: the caller's contract.
            VPlanes::Floats(v) => unsafe { input_transform_row(x_img, s, ti, v, first_row, work) },
            VPlanes::Pairs(v) => {
                let (positions, c, count) = (s.variant.positions(), s.c_in, s.tiles_w);
                let mut stage = std::mem::take(&mut work.stage);
                let staged = Planes::new(&mut stage, positions, count, c);
                // SAFETY: `stage` is this call's own (taken from `work`).
                unsafe { input_transform_row(x_img, s, ti, staged, 0, work) };
                for xi in 0..positions {
                    // SAFETY: the caller's contract, for the rows of this tile row.
                    let dst = unsafe { v.rows(xi, first_row, count) };
                    rows_to_pairs(&stage[xi * count * c..][..count * c], count, c, c, dst, v.c);
                }
                work.stage = stage;
            }
        }
    }

    /// M[ξ] (rows x c_out) = V[ξ] · U[ξ], U's plane ξ as `u` (packed, for pairs).
    ///
    /// # Safety
    /// The buffer must still be alive, and no thread may write V meanwhile.
    unsafe fn product(self, xi: usize, c_out: usize, u: &RightOperand, m_plane: &mut [f32]) {
        match (self, u) {
            // SAFETY (both): the caller's contract.
            (VPlanes::Floats(v), _) => gemm_prepared(v.rows, v.c, c_out, unsafe { v.plane(xi) }, false, u, 0.0, m_plane),
            (VPlanes::Pairs(v), RightOperand::Packed(b)) => gemm_bf16_pairs(v.rows, unsafe { v.plane(xi) }, v.c, b, 0.0, m_plane),
            (VPlanes::Pairs(_), RightOperand::Plain { .. }) => unreachable!("pairs are only made for the dot chain's packed U"),
        }
    }
}

/// Runs `f(image, tile row, the worker's tile buffers)` for each of the `tiles_h` tile rows of
/// `images` images, in parallel; the buffers are the worker's slot of `works`, sized for
/// `channels`.
pub(crate) fn par_tile_rows(
    images: usize,
    tiles_h: usize,
    works: &PerThread<Option<TileWork>>,
    channels: usize,
    f: impl Fn(usize, usize, &mut TileWork) + Sync + Send,
) {
    (0..images * tiles_h).into_par_iter().for_each(|task| {
        let mut slot = works.get();
        f(task / tiles_h, task % tiles_h, TileWork::sized(&mut slot, channels));
    });
}

/// How [`forward_into`] goes through a batch of `n` images of `tiles` tiles each, with
/// `weights` (C_in x C_out) per position: `Some(images per group)` for the staged path (a small
/// batch whole; a wide layer whose chunk of 8 images holds under `GROUP_TILES` tiles, in groups
/// of about `STAGED_GROUP_TILES`), `None` for chunks of 8 images, one per task. Either way the
/// outputs are the same; this decides only the speed.
fn staged_group(n: usize, tiles: usize, weights: usize) -> Option<usize> {
    if n < 2 * CHUNK && n * tiles <= SMALL_BATCH_MAX_TILES {
        Some(n)
    } else if tiles * CHUNK < GROUP_TILES && weights >= STAGED_MIN_WEIGHTS {
        Some(STAGED_GROUP_TILES.div_ceil(tiles))
    } else {
        None
    }
}

/// The first `len` values of `buf`, grown if needed but never shrunk: a smaller last chunk
/// must not make the next step zero-fill megabytes again.
pub(crate) fn grow<T: Copy + Default>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

/// A convolution's geometry and channels, its variant, and how many tiles cover its output.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) g: Geometry,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) variant: Variant,
    pub(crate) tiles_h: usize,
    pub(crate) tiles_w: usize,
}

impl Shape {
    pub(crate) fn new(g: Geometry, c_in: usize, c_out: usize, variant: Variant) -> Shape {
        let out = variant.out();
        Shape { g, c_in, c_out, variant, tiles_h: g.oh.div_ceil(out), tiles_w: g.ow.div_ceil(out) }
    }
}

/// What the output transform adds to each value: the bias, then the ReLU if fused.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    bias: &'a [f32],
    relu: bool,
}

/// Per-task scratch, channels innermost (sized for the largest tile): a place for the output
/// transform's columns past the output, a half-transformed tile, and a zero pixel. The input
/// transform and dW's transform of dz blocks read their tiles in place, the padding from
/// `zeros` (a gathered copy cost 4% of the airbench step in memcpy, then 0.5% in dW's).
pub(crate) struct TileWork {
    pub(crate) patch: Vec<f32>,
    pub(crate) half: Vec<f32>,
    /// A pixel of zero padding, read in place of pixels outside the image.
    pub(crate) zeros: Vec<f32>,
    /// One tile row's V in float32, before its conversion to bf16 pairs (`VPlanes::Pairs`).
    stage: Vec<f32>,
}

impl TileWork {
    pub(crate) fn new(channels: usize) -> TileWork {
        let len = MAX_TILE * MAX_TILE * channels;
        TileWork { patch: vec![0.0; len], half: vec![0.0; len], zeros: vec![0.0; channels], stage: Vec::new() }
    }

    /// The tile buffers in `slot`, made (or remade larger) for `channels` if they are smaller.
    pub(crate) fn sized(slot: &mut Option<TileWork>, channels: usize) -> &mut TileWork {
        if slot.as_ref().is_none_or(|work| work.zeros.len() < channels) {
            *slot = Some(TileWork::new(channels));
        }
        slot.as_mut().expect("set above")
    }
}

/// The t² matrices V[ξ] ([rows][c] each) in one buffer, [t²][rows][c], so that each is one
/// contiguous row-major matrix for its GEMM; the input transform writes one row of all t² at a
/// time, from several threads at once (each its own rows), hence the raw pointer.
///
/// The dot chain's V is its rows in bf16 pairs (`Planes<u32>`, `c` pairs a row: see
/// [`VPlanes`]).
pub(crate) struct Planes<T = f32> {
    ptr: *mut T,
    positions: usize,
    rows: usize,
    c: usize,
}

// SAFETY: Planes is only a pointer into a buffer that outlives every task using it; `row`'s
// contract keeps the rows each thread writes disjoint.
unsafe impl<T> Send for Planes<T> {}
unsafe impl<T> Sync for Planes<T> {}

// Copy whatever T is (a derive would ask T: Copy): a Planes is a pointer and three counts.
impl<T> Clone for Planes<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Planes<T> {}

impl<T: Copy + Default> Planes<T> {
    pub(crate) fn new(buf: &mut Vec<T>, positions: usize, rows: usize, c: usize) -> Planes<T> {
        Planes::over(grow(buf, positions * rows * c), positions, rows, c)
    }

    /// The planes laid over the first positions * rows * c values of `buf`.
    pub(crate) fn over(buf: &mut [T], positions: usize, rows: usize, c: usize) -> Planes<T> {
        Planes { ptr: buf[..positions * rows * c].as_mut_ptr(), positions, rows, c }
    }

    /// Row `row` of matrix ξ.
    ///
    /// # Safety
    /// The buffer must still be alive and not otherwise borrowed, and no other thread may use
    /// the same (ξ, row) while the returned slice lives.
    #[inline(always)]
    pub(crate) unsafe fn row<'a>(self, xi: usize, row: usize) -> &'a mut [T] {
        // SAFETY: the caller's contract, for one row.
        unsafe { self.rows(xi, row, 1) }
    }

    /// Rows `first..first + count` of matrix ξ, one after another.
    ///
    /// # Safety
    /// As [`Planes::row`], for each of those rows.
    #[inline(always)]
    pub(crate) unsafe fn rows<'a>(self, xi: usize, first: usize, count: usize) -> &'a mut [T] {
        assert!(xi < self.positions && first + count <= self.rows, "Planes::rows out of range");
        // SAFETY: in range (asserted), and the caller's contract above.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add((xi * self.rows + first) * self.c), count * self.c) }
    }

    /// Matrix ξ whole.
    ///
    /// # Safety
    /// The buffer must still be alive, and no thread may write it while the slice lives.
    pub(crate) unsafe fn plane<'a>(self, xi: usize) -> &'a [T] {
        // SAFETY: as `rows`, read only (the caller's contract).
        unsafe { self.rows(xi, 0, self.rows) }
    }
}

/// U[a][b] = sum over k, l of G[a][k] g[k][l] G[b][l], for every (c_in, c_out) pair at once:
/// w is HWIO [r][r][c_in][c_out] (r the kernel side), so g[k][l] is a contiguous block of
/// c_in * c_out values, and U comes out as [t²][c_in][c_out], one GEMM operand per position.
fn transform_weights(w: &[f32], variant: Variant, c_in: usize, c_out: usize, u: &mut Vec<f32>) {
    let block = c_in * c_out;
    u.resize(variant.positions() * block, 0.0);
    u.par_chunks_mut(variant.tile() * block).enumerate().for_each(|(a, u_row)| {
        let mut gg = vec![0.0f32; variant.kernel() * block];
        weight_row(w, variant, a, &mut gg, u_row);
    });
}

/// Input channels (rows of each U plane) per task of [`transform_weights_packed`]: whole pairs.
const PACK_ROWS: usize = 16;

/// U packed for bf16 products of `chain`, plane by plane (`PackedB`, k = C_in, n = C_out), straight from
/// w: each task transforms `PACK_ROWS` input channels of every plane (their kernel values are
/// rows of w, c_out apart) and pairs them into the planes' rows, so that U in float32 never
/// goes through memory (transforming all of U, then packing it, took 4.6 ms for 256 -> 256
/// channels). Every value is computed as [`transform_weights`] computes it: the same bits.
fn transform_weights_packed(w: &[f32], variant: Variant, c_in: usize, c_out: usize, chain: Chain, planes: &mut Vec<PackedB>) {
    let (t, r, positions) = (variant.tile(), variant.kernel(), variant.positions());
    planes.resize_with(positions, PackedB::default);
    // Each task's rows (PACK_ROWS / 2 pairs) of every plane.
    let mut ld = 0;
    let mut tasks: Vec<Vec<&mut [u32]>> = (0..c_in.div_ceil(PACK_ROWS)).map(|_| Vec::with_capacity(positions)).collect();
    for plane in planes.iter_mut() {
        let (data, plane_ld) = plane.pairs_mut(c_in, c_out);
        ld = plane_ld;
        for (task, rows) in tasks.iter_mut().zip(data.chunks_mut(PACK_ROWS / 2 * ld)) {
            task.push(rows);
        }
    }
    // Each worker's buffers (every value written before it is read), reused from task to task.
    let buffers = || (Vec::new(), Vec::new(), Vec::new());
    tasks.into_par_iter().enumerate().for_each_init(buffers, |(w_buf, gg_buf, u_buf), (task, mut plane_rows)| {
        let (c0, rows) = (task * PACK_ROWS, PACK_ROWS.min(c_in - task * PACK_ROWS));
        let block = rows * c_out;
        // This task's rows of w at each kernel position, then of U at each position.
        let w_rows = grow(w_buf, r * r * block);
        for (kl, dst) in w_rows.chunks_exact_mut(block).enumerate() {
            dst.copy_from_slice(&w[(kl * c_in + c0) * c_out..][..block]);
        }
        let gg = grow(gg_buf, r * block);
        let u_rows = grow(u_buf, positions * block);
        for (a, u_row) in u_rows.chunks_exact_mut(t * block).enumerate() {
            weight_row(w_rows, variant, a, gg, u_row);
        }
        for (u_plane, dst) in u_rows.chunks_exact(block).zip(plane_rows.iter_mut()) {
            interleave_rows(u_plane, rows, c_out, c_out, dst, ld);
        }
    });
    planes.iter_mut().for_each(|plane| plane.finish(chain));
}

simd_dispatch! {
    /// Row `a` of U: (G g)[a] (one block per kernel column), then U[a][b] for the t columns b.
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
    avx512:
    /// V = B^T d B for the tiles of tile row `ti` of one image `x_img` ([ih, iw, c_in]), tile tj
    /// going to row `first_row + tj` of every V[ξ].
    ///
    /// # Safety
    /// As `Planes::row`, for those rows.
    pub(crate) unsafe fn input_transform_row => input_transform_row_plain(x_img: &[f32], s: &Shape, ti: usize, v: Planes, first_row: usize, work: &mut TileWork)
}

#[inline(always)]
fn input_transform_row_plain(x_img: &[f32], s: &Shape, ti: usize, v: Planes, first_row: usize, work: &mut TileWork) {
    let (g, c, t) = (&s.g, s.c_in, s.variant.tile());
    let half = &mut work.half[..t * t * c];
    let zeros = &work.zeros[..c];
    let out = s.variant.out();
    for tj in 0..s.tiles_w {
        // The t x t tile whose top-left input pixel is (out ti - pad_top, out tj - pad_left),
        // read in place: a pixel outside the image is the zero padding.
        let (r0, s0) = ((out * ti) as isize - g.pad_top as isize, (out * tj) as isize - g.pad_left as isize);
        let pixel = |kr: usize, kc: usize| {
            let (r, col) = (r0 + kr as isize, s0 + kc as isize);
            if r < 0 || r >= g.ih as isize || col < 0 || col >= g.iw as isize {
                zeros
            } else {
                &x_img[(r as usize * g.iw + col as usize) * c..][..c]
            }
        };
        // half[a][col] = sum_k BT[a][k] d[k][col];  V[a][b] = sum_k half[a][k] BT[b][k].
        for col in 0..t {
            let d = |k: usize| pixel(k, col);
            let mut rows = half.chunks_exact_mut(t * c).map(|r| &mut r[col * c..][..c]);
            let mut next = || rows.next().expect("one half row per tile row");
            match t {
                8 => bt8(eight(d), eight(|_| next())),
                _ => bt6(six(d), six(|_| next())),
            }
        }
        for a in 0..t {
            let h = |k: usize| &half[(a * t + k) * c..][..c];
            // SAFETY: the caller owns these rows (this function's contract).
            let out = |bcol: usize| unsafe { v.row(a * t + bcol, first_row + tj) };
            match t {
                8 => bt8(eight(h), eight(out)),
                _ => bt6(six(h), six(out)),
            }
        }
    }
}

/// o[a] = sum_k BT[a][k] d[k] for six channel vectors, in one pass with shared terms:
///   o0 = 4 d0 - 5 d2 + d4          o3 = (d4 - d2) - 2 (d1 - d3)
///   o1 = (d3 + d4) - 4 (d1 + d2)   o4 = (d4 - d2) + 2 (d1 - d3)
///   o2 = (d4 - d3) + 4 (d1 - d2)   o5 = 4 d1 - 5 d3 + d5
#[inline(always)]
fn bt6(d: [&[f32]; TILE], o: [&mut [f32]; TILE]) {
    by_blocks(d, o, |[d0, d1, d2, d3, d4, d5]| {
        let (p, q) = (d4 - d2, d1 - d3);
        [
            4.0 * d0 - 5.0 * d2 + d4,
            (d3 + d4) - 4.0 * (d1 + d2),
            (d4 - d3) + 4.0 * (d1 - d2),
            p - 2.0 * q,
            p + 2.0 * q,
            4.0 * d1 - 5.0 * d3 + d5,
        ]
    })
}

/// o[a] = sum_k BT8[a][k] d[k] for eight channel vectors, in one pass with shared terms:
///   o0 = (d0 - d6) + 21/4 (d4 - d2)          o7 = (d7 - d1) + 21/4 (d3 - d5)
///   o1, o2 = (d2 + d6 - 17/4 d4) ± (d1 + d5 - 17/4 d3)
///   o3, o4 = (4 d2 - 5 d4 + d6) ± (2 d1 - 5/2 d3 + 1/2 d5)
///   o5, o6 = (1/4 d2 - 5/4 d4 + d6) ± (1/2 d1 - 5/2 d3 + 2 d5)
#[inline(always)]
fn bt8(d: [&[f32]; 8], o: [&mut [f32]; 8]) {
    by_blocks(d, o, |[d0, d1, d2, d3, d4, d5, d6, d7]| {
        let (even12, odd12) = (d2 + d6 - 4.25 * d4, d1 + d5 - 4.25 * d3);
        let (even34, odd34) = (4.0 * d2 - 5.0 * d4 + d6, 2.0 * d1 - 2.5 * d3 + 0.5 * d5);
        let (even56, odd56) = (0.25 * d2 - 1.25 * d4 + d6, 0.5 * d1 - 2.5 * d3 + 2.0 * d5);
        [
            (d0 - d6) + 5.25 * (d4 - d2),
            even12 + odd12,
            even12 - odd12,
            even34 + odd34,
            even34 - odd34,
            even56 + odd56,
            even56 - odd56,
            (d7 - d1) + 5.25 * (d3 - d5),
        ]
    })
}

/// o[a][ch] = f(d[0][ch], .., d[N-1][ch])[a] for every channel: blocks of 16 channels where
/// the level compiles for AVX-512 (one register each; the 256 -> 256 forward pass of the airbench
/// network ran 20% faster than in blocks of 8 on a Zen 4), then blocks of 8 (AVX2's register;
/// 16 there would not leave the registers for bt8's eight inputs), then the rest one by one.
/// Each operand's block is loaded whole, computed, stored whole, so that the block is one vector
/// operation per step. Written as one loop over the channels, LLVM ran it one value at a time
/// (it cannot tell the N outputs from the N inputs apart: 70% of the transform's time was
/// scalar on the ResNet). Every channel's value is the same whatever the block.
#[inline(always)]
fn by_blocks<const N: usize>(d: [&[f32]; N], mut o: [&mut [f32]; N], f: impl Fn([f32; N]) -> [f32; N]) {
    let c = o[0].len();
    #[allow(unused_mut)] // only x86-64 has the wide blocks
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::simd::avx512bf16_allowed() {
        done = in_blocks::<N, 16>(&d, &mut o, done, &f);
    }
    done = in_blocks::<N, 8>(&d, &mut o, done, &f);
    for ch in done..c {
        let r = f(std::array::from_fn(|k| d[k][ch]));
        for (out, value) in o.iter_mut().zip(r) {
            out[ch] = value;
        }
    }
}

/// `by_blocks` over the whole blocks of LANES channels from channel `from`; returns the first
/// channel after them.
#[inline(always)]
fn in_blocks<const N: usize, const LANES: usize>(
    d: &[&[f32]; N],
    o: &mut [&mut [f32]; N],
    from: usize,
    f: &impl Fn([f32; N]) -> [f32; N],
) -> usize {
    let c = o[0].len();
    let end = from + (c - from) / LANES * LANES;
    for c0 in (from..end).step_by(LANES) {
        let dv: [[f32; LANES]; N] = std::array::from_fn(|k| d[k][c0..c0 + LANES].try_into().expect("a block of LANES"));
        let mut ov = [[0.0f32; LANES]; N];
        for l in 0..LANES {
            let r = f(std::array::from_fn(|k| dv[k][l]));
            for a in 0..N {
                ov[a][l] = r[a];
            }
        }
        for (out, values) in o.iter_mut().zip(&ov) {
            out[c0..c0 + LANES].copy_from_slice(values);
        }
    }
    end
}

simd_dispatch! {
    avx512:
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
    let (out, t) = (variant.out(), variant.tile());
    let TileWork { patch, half, .. } = work;
    let half = &mut half[..out * t * c];
    let out_rows = y_part.len() / (g.ow * c);
    for tj in 0..s.tiles_w {
        let m_at = |xi: usize| &m[(xi * rows + first_row + tj) * c..][..c];
        // half[i][b] = sum_a AT[i][a] M[a][b];  y[i][j] = sum_b half[i][b] AT[j][b] + bias.
        for bcol in 0..t {
            let col = |a: usize| m_at(a * t + bcol);
            let mut h = half.chunks_exact_mut(t * c).map(|r| &mut r[bcol * c..][..c]);
            let mut next = || h.next().expect("one half row per output row");
            match variant {
                Variant::F2x2Kernel5x5 => at6::<false, false>([next(), next()], six(col), &[]),
                Variant::F4x4Kernel3x3 => at6x4::<false, false>([next(), next(), next(), next()], six(col), &[]),
                Variant::F4x4Kernel5x5 => at8x4::<false, false>([next(), next(), next(), next()], eight(col), &[]),
            }
        }
        // The last tile of a width that out does not divide has columns outside the output:
        // those go to `patch`, unread.
        let col = out * tj;
        let inside = out.min(g.ow - col);
        for i in 0..out_rows {
            let row = |b: usize| &half[(i * t + b) * c..][..c];
            let y_cols = y_part[(i * g.ow + col) * c..][..inside * c].chunks_exact_mut(c);
            let mut o = y_cols.chain(patch.chunks_exact_mut(c));
            let mut next = || o.next().expect("one slice per output column");
            // The ReLU as a constant, so that each loop is compiled without a test in it.
            match (variant, relu) {
                (Variant::F2x2Kernel5x5, false) => at6::<true, false>([next(), next()], six(row), bias),
                (Variant::F2x2Kernel5x5, true) => at6::<true, true>([next(), next()], six(row), bias),
                (Variant::F4x4Kernel3x3, false) => at6x4::<true, false>([next(), next(), next(), next()], six(row), bias),
                (Variant::F4x4Kernel3x3, true) => at6x4::<true, true>([next(), next(), next(), next()], six(row), bias),
                (Variant::F4x4Kernel5x5, false) => at8x4::<true, false>([next(), next(), next(), next()], eight(row), bias),
                (Variant::F4x4Kernel5x5, true) => at8x4::<true, true>([next(), next(), next(), next()], eight(row), bias),
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

/// o[i] = sum_a AT8X4[i][a] m[a] (+ bias, then ReLU) for eight channel vectors, in one pass
/// (F(4x4, 5x5)), with p1, q1 = m1 ± m2, p2, q2 = m3 ± m4, p3, q3 = m5 ± m6:
///   o0 = m0 + p1 + p2 + p3,   o1 = q1 + q2 / 2 + 2 q3,   o2 = p1 + p2 / 4 + 4 p3,
///   o3 = q1 + q2 / 8 + 8 q3 + m7
/// `bias` is read only if BIAS.
#[inline(always)]
fn at8x4<const BIAS: bool, const RELU: bool>(o: [&mut [f32]; 4], m: [&[f32]; 8], bias: &[f32]) {
    let c = o[0].len();
    let [m0, m1, m2, m3, m4, m5, m6, m7] = m;
    let (m0, m1, m2, m3, m4, m5, m6, m7) = (&m0[..c], &m1[..c], &m2[..c], &m3[..c], &m4[..c], &m5[..c], &m6[..c], &m7[..c]);
    let [o0, o1, o2, o3] = o;
    let (o0, o1, o2, o3) = (&mut o0[..c], &mut o1[..c], &mut o2[..c], &mut o3[..c]);
    let bias = if BIAS { &bias[..c] } else { &[][..] };
    for ch in 0..c {
        let (p1, q1) = (m1[ch] + m2[ch], m1[ch] - m2[ch]);
        let (p2, q2) = (m3[ch] + m4[ch], m3[ch] - m4[ch]);
        let (p3, q3) = (m5[ch] + m6[ch], m5[ch] - m6[ch]);
        let b = if BIAS { bias[ch] } else { 0.0 };
        o0[ch] = finish::<BIAS, RELU>(m0[ch] + p1 + p2 + p3, b);
        o1[ch] = finish::<BIAS, RELU>(q1 + 0.5 * q2 + 2.0 * q3, b);
        o2[ch] = finish::<BIAS, RELU>(p1 + 0.25 * p2 + 4.0 * p3, b);
        o3[ch] = finish::<BIAS, RELU>(q1 + 0.125 * q2 + 8.0 * q3 + m7[ch], b);
    }
}

/// [f(0), f(1), .., f(5)], inlined (`std::array::from_fn` was left as a call in the hot loop).
#[inline(always)]
fn six<T>(mut f: impl FnMut(usize) -> T) -> [T; 6] {
    [f(0), f(1), f(2), f(3), f(4), f(5)]
}

/// [f(0), f(1), .., f(7)], inlined, for the 8x8 tile.
#[inline(always)]
fn eight<T>(mut f: impl FnMut(usize) -> T) -> [T; 8] {
    [f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7)]
}

/// out = sum of coef * input over the (coef, input) pairs, skipping zero coefficients.
#[inline(always)]
pub(crate) fn combine<'a>(out: &mut [f32], terms: impl Iterator<Item = (f32, &'a [f32])>) {
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

    /// Eight test vectors of `c` channels.
    fn test_input(c: usize) -> Vec<Vec<f32>> {
        (0..8).map(|k| (0..c).map(|ch| ((k * 31 + ch * 17) % 23) as f32 / 7.0 - 1.5).collect()).collect()
    }

    /// bt6 and bt8 (shared terms, one pass) compute B^T d.
    #[test]
    fn packed_weights_are_the_packing_of_the_transformed_weights() {
        // Input channels over one task and odd (16 + 1, a last pair with one row), output
        // channels past a vector, both variants; pairs left from a larger shape are cleared.
        for (variant, c_in, c_out) in [(Variant::F4x4Kernel3x3, 17, 20), (Variant::F4x4Kernel3x3, 32, 16), (Variant::F4x4Kernel5x5, 3, 5)] {
            let r = variant.kernel();
            let w: Vec<f32> = (0..r * r * c_in * c_out).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let mut u = Vec::new();
            transform_weights(&w, variant, c_in, c_out, &mut u);
            // For both chains (the tiles' is in dot order on a VDPBF16PS machine, the dot
            // chain's in order), the second packed over planes of the first.
            let mut planes = Vec::new();
            transform_weights_packed(&vec![1.0; 9 * 40 * 40], Variant::F4x4Kernel3x3, 40, 40, Chain::Tiles, &mut planes);
            for chain in [Chain::Dot, Chain::Tiles] {
                transform_weights_packed(&w, variant, c_in, c_out, chain, &mut planes);
                assert_eq!(planes.len(), variant.positions());
                for (xi, plane) in planes.iter().enumerate() {
                    let mut want = PackedB::default();
                    want.pack(c_in, c_out, &u[xi * c_in * c_out..][..c_in * c_out], false, chain);
                    assert!(plane.contents() == want.contents(), "{variant:?} {c_in}x{c_out} {chain:?}: plane {xi}");
                }
            }
        }
    }

    #[test]
    fn shared_term_input_transforms_equal_the_matrices() {
        // 27 channels: a block of 16 (where the level compiles for AVX-512), one of 8, three
        // one by one.
        let c = 27;
        let input = test_input(c);
        let mut out = vec![vec![0.0f32; c]; 8];
        let mut it = out.iter_mut();
        bt6(std::array::from_fn(|k| &input[k][..]), std::array::from_fn(|_| &mut it.next().unwrap()[..]));
        let check = |out: &[Vec<f32>], bt: &[&[f32]], name: &str| {
            for (a, row) in bt.iter().enumerate() {
                for ch in 0..c {
                    let expected: f32 = row.iter().enumerate().map(|(k, coef)| coef * input[k][ch]).sum();
                    assert!((out[a][ch] - expected).abs() < 1e-5, "{name} row {a} channel {ch}: {} != {expected}", out[a][ch]);
                }
            }
        };
        check(&out, &BT.iter().map(|r| &r[..]).collect::<Vec<_>>(), "bt6");
        let mut it = out.iter_mut();
        bt8(std::array::from_fn(|k| &input[k][..]), std::array::from_fn(|_| &mut it.next().unwrap()[..]));
        check(&out, &BT8.iter().map(|r| &r[..]).collect::<Vec<_>>(), "bt8");
    }

    /// The dot chain's V (`VPlanes::Pairs`) holds, row for row, the float32 V rounded to bf16
    /// pairs: both tile sizes, an odd and an even channel count, tiles over the padding, rows
    /// written from an offset.
    #[test]
    fn pairs_planes_are_the_float_planes_rounded_to_pairs() {
        use crate::ops::window::{Padding, Window};
        for (kernel, c) in [(3, 27), (5, 32), (3, 16)] {
            let window = Window::new(kernel, kernel, 1, 1, Padding::Same);
            let g = Geometry::new("test", 9, 11, &window).unwrap();
            let variant = Variant::for_output(kernel, g.oh, g.ow).unwrap();
            let s = Shape::new(g, c, 4, variant);
            let x: Vec<f32> = (0..9 * 11 * c).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let (positions, first) = (variant.positions(), 3);
            let rows = first + s.tiles_h * s.tiles_w;
            let (mut floats, mut pairs, mut unused_floats, mut unused_pairs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let by_floats = VPlanes::new(false, &mut floats, &mut unused_pairs, positions, rows, c);
            let by_pairs = VPlanes::new(true, &mut unused_floats, &mut pairs, positions, rows, c);
            let mut work = TileWork::new(c);
            for ti in 0..s.tiles_h {
                // SAFETY: this test alone holds the buffers.
                unsafe {
                    by_floats.transform_row(&x, &s, ti, first + ti * s.tiles_w, &mut work);
                    by_pairs.transform_row(&x, &s, ti, first + ti * s.tiles_w, &mut work);
                }
            }
            assert!(unused_floats.is_empty() && unused_pairs.is_empty(), "each kind fills its own buffer only");
            let kp = c.div_ceil(2);
            let mut want = vec![0u32; kp];
            for xi in 0..positions {
                for row in first..rows {
                    rows_to_pairs(&floats[(xi * rows + row) * c..][..c], 1, c, c, &mut want, kp);
                    assert_eq!(&pairs[(xi * rows + row) * kp..][..kp], &want[..], "{kernel}x{kernel}, {c} channels: plane {xi}, row {row}");
                }
            }
        }
    }

    /// at6, at6x4 and at8x4 (shared terms, one pass) compute A^T m (+ bias, ReLU).
    #[test]
    fn shared_term_output_transforms_equal_the_matrices() {
        let c = 11;
        let input = test_input(c);
        let d6: [&[f32]; TILE] = std::array::from_fn(|k| &input[k][..]);
        let d8: [&[f32]; 8] = std::array::from_fn(|k| &input[k][..]);
        let bias: Vec<f32> = (0..c).map(|ch| ch as f32 * 0.5 - 2.0).collect();
        for relu in [false, true] {
            let mut o = vec![vec![0.0f32; c]; 4];
            let check = |o: &[Vec<f32>], at: &[&[f32]], name: &str| {
                for (i, o) in o.iter().enumerate().take(at.len()) {
                    for ch in 0..c {
                        let mut expected: f32 = at[i].iter().enumerate().map(|(a, coef)| coef * input[a][ch]).sum::<f32>() + bias[ch];
                        if relu {
                            expected = expected.max(0.0);
                        }
                        assert!((o[ch] - expected).abs() < 1e-5, "{name} row {i} channel {ch} relu {relu}");
                    }
                }
            };
            let [o0, o1, _, _] = &mut o[..] else { unreachable!() };
            if relu {
                at6::<true, true>([o0, o1], d6, &bias);
            } else {
                at6::<true, false>([o0, o1], d6, &bias);
            }
            check(&o, &AT2.iter().map(|r| &r[..]).collect::<Vec<_>>(), "at6");
            let [o0, o1, o2, o3] = &mut o[..] else { unreachable!() };
            if relu {
                at6x4::<true, true>([o0, o1, o2, o3], d6, &bias);
            } else {
                at6x4::<true, false>([o0, o1, o2, o3], d6, &bias);
            }
            check(&o, &AT4.iter().map(|r| &r[..]).collect::<Vec<_>>(), "at6x4");
            let [o0, o1, o2, o3] = &mut o[..] else { unreachable!() };
            if relu {
                at8x4::<true, true>([o0, o1, o2, o3], d8, &bias);
            } else {
                at8x4::<true, false>([o0, o1, o2, o3], d8, &bias);
            }
            check(&o, &AT8X4.iter().map(|r| &r[..]).collect::<Vec<_>>(), "at8x4");
        }
    }

    /// The matrices compute the correlation exactly: in one dimension, for every unit input d
    /// and unit kernel g, A^T [(G g) ⊙ (B^T d)] = sum_k d[i + k] g[k] (exact in f64 up to the
    /// rounding of G's ninths and 45ths to f32). All three variants.
    #[test]
    fn matrices_compute_the_one_dimensional_correlation() {
        let at2: Vec<&[f32]> = AT2.iter().map(|r| &r[..]).collect();
        let at4: Vec<&[f32]> = AT4.iter().map(|r| &r[..]).collect();
        let at8x4: Vec<&[f32]> = AT8X4.iter().map(|r| &r[..]).collect();
        let bt6: Vec<&[f32]> = BT.iter().map(|r| &r[..]).collect();
        let bt8: Vec<&[f32]> = BT8.iter().map(|r| &r[..]).collect();
        for (variant, at, bt) in
            [(Variant::F2x2Kernel5x5, &at2, &bt6), (Variant::F4x4Kernel3x3, &at4, &bt6), (Variant::F4x4Kernel5x5, &at8x4, &bt8)]
        {
            assert_eq!(at.len(), variant.out());
            let (g, t) = (variant.g(), variant.tile());
            assert_eq!((g.len(), bt.len(), at[0].len()), (t, t, t), "{variant:?}");
            for da in 0..t {
                for gb in 0..variant.kernel() {
                    for i in 0..variant.out() {
                        let mut y = 0.0f64;
                        for j in 0..t {
                            y += at[i][j] as f64 * g[j][gb] as f64 * bt[j][da] as f64;
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
        assert_eq!(Variant::for_kernel(5), Some(Variant::F4x4Kernel5x5));
        assert_eq!(Variant::for_kernel(4), None);
        assert_eq!((Variant::F4x4Kernel3x3.out(), Variant::F2x2Kernel5x5.out(), Variant::F4x4Kernel5x5.out()), (4, 2, 4));
        assert_eq!((Variant::F4x4Kernel3x3.tile(), Variant::F2x2Kernel5x5.tile(), Variant::F4x4Kernel5x5.tile()), (6, 6, 8));
        assert_eq!(Variant::F4x4Kernel5x5.positions(), 64);
    }

    /// A 5x5 kernel takes the variant with fewer transformed values (tiles x t²); 3x3 always
    /// F(4x4, 3x3).
    #[test]
    fn five_by_five_takes_the_tile_with_fewer_transformed_values() {
        let five = |oh, ow| Variant::for_output(5, oh, ow);
        // 16x16: 16 tiles of 64 (1,024) against 64 of 36 (2,304).
        assert_eq!(five(16, 16), Some(Variant::F4x4Kernel5x5));
        // 2x2: one tile of 64 against one of 36; 1x8: 2 x 64 = 128 against 4 x 36 = 144.
        assert_eq!(five(2, 2), Some(Variant::F2x2Kernel5x5));
        assert_eq!(five(1, 8), Some(Variant::F4x4Kernel5x5));
        // 2x6: 2 x 64 = 128 against 3 x 36 = 108; 6x6: 4 x 64 = 256 against 9 x 36 = 324.
        assert_eq!(five(2, 6), Some(Variant::F2x2Kernel5x5));
        assert_eq!(five(6, 6), Some(Variant::F4x4Kernel5x5));
        // 2x4: 1 x 64 against 2 x 36 = 72 (the 8x8 tile, cheaper by 8).
        assert_eq!(five(2, 4), Some(Variant::F4x4Kernel5x5));
        assert_eq!(Variant::for_output(3, 2, 2), Some(Variant::F4x4Kernel3x3));
        assert_eq!(Variant::for_output(7, 16, 16), None);
    }

    /// The staged path for small batches (under 16 images and 4,096 tiles) and for layers of
    /// 128 x 128 weights or more whose chunk of 8 images holds under 512 tiles, in groups of
    /// 256 tiles; chunks of 8 images otherwise.
    #[test]
    fn small_batches_and_wide_layers_on_small_images_take_the_staged_path() {
        assert_eq!(staged_group(1, 4, 256 * 256), Some(1), "batch 1");
        assert_eq!(staged_group(15, 4, 16), Some(15), "15 images, narrow");
        assert_eq!(staged_group(15, 273, 16), Some(15), "4,095 tiles");
        assert_eq!(staged_group(15, 274, 16), None, "4,110 tiles: too many for one group");
        assert_eq!(staged_group(16, 4, 16), None, "16 images, narrow: chunks");
        assert_eq!(staged_group(64, 4, 256 * 256), Some(64), "airbench 256 -> 256 at 7x7");
        assert_eq!(staged_group(64, 1, 128 * 128), Some(256), "the ResNet's 128 -> 128 at 4x4");
        assert_eq!(staged_group(64, 1, 128 * 128 - 1), None, "fewer weights: chunks");
        assert_eq!(staged_group(64, 16, 64 * 256), Some(16), "airbench 64 -> 256 at 15x15");
        assert_eq!(staged_group(64, 63, 256 * 256), Some(5), "504 tiles a chunk");
        assert_eq!(staged_group(64, 64, 256 * 256), None, "512 tiles a chunk: chunks");
        assert_eq!(staged_group(64, 16, 64 * 64), None, "the seed network's 64 -> 64");
    }

    /// A worker's tile buffers are kept while they are large enough, remade larger otherwise.
    #[test]
    fn tile_buffers_are_reused_until_more_channels_are_asked_for() {
        let mut slot = None;
        let first = TileWork::sized(&mut slot, 16).zeros.as_ptr();
        assert_eq!(TileWork::sized(&mut slot, 16).zeros.as_ptr(), first, "as many channels: kept");
        assert_eq!(TileWork::sized(&mut slot, 3).zeros.as_ptr(), first, "fewer: kept");
        let larger = TileWork::sized(&mut slot, 17);
        assert_eq!((larger.zeros.len(), larger.patch.len(), larger.half.len()), (17, 64 * 17, 64 * 17), "more: remade");
    }
}
