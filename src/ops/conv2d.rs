//! 2-D convolution, the fast path: Winograd or im2col + GEMM, parallel over the batch.
//!
//! ```text
//! Shapes: x [N, H, W, C_in], w [kh, kw, C_in, C_out] (HWIO), b [C_out] -> y [N, oh, ow, C_out].
//!   forward:  y[n, i, j, o] = b[o] + sum_{ki, kj, c} x_pad[n, i*sh + ki, j*sw + kj, c] * w[ki, kj, c, o]
//!             per image: Y[oh*ow, C_out] = col(x)[oh*ow, K] · W[K, C_out],  K = kh*kw*C_in
//!   backward: dW = sum_n col(x_n)^T · dY_n     (sum of dZ times the input patch)
//!             db = sum over n, i, j of dY      (sum of dZ)
//!             dX = col2im(dY_n · W^T)          (scatter of W times dZ)
//! ```
//! With a ReLU fused into the forward pass, backward first masks dy: dz = dy where y > 0.
//! A 3x3 or 5x5 stride-1 convolution with enough channels goes by Winograd instead (`ops::winograd`),
//! and so does its dX, which for stride 1 is itself such a convolution (see `input_grad_window`);
//! a stride-1 one with few channels (the first layers) directly on the image (`conv_direct`),
//! its dX likewise; [`algorithm`] makes that choice for both. dW goes by Winograd for those 5x5 kernels
//! and for 3x3 ones with 64 channels or more on each side (`winograd_dw`, the latter summed over
//! the whole batch), else, in float32 with 8 input channels or more, directly on the images
//! (`conv_dw_direct`: no column matrix), else by col(x)^T dY; col(x) is recomputed rather than
//! kept: it is kh*kw times the input. With bf16 products in the winograd family (the default
//! without AMX) the same algorithms run: the direct one on VDPBF16PS's chain
//! (`conv_direct_bf16`); dW by Winograd on the inputs rounded to bf16 with float32 products
//! where float32's is Winograd, else at stride 1 with 16 channels or more each side (or under 8
//! input channels and 16 output channels or more) on the tiles' layout (`conv_tiles_dw`, on the
//! family's dot chain), else as float32 on the rounded inputs (direct) or by col(x)^T dY. In
//! the tiles' family (`Bf16Convs::Tiles`, the default on AMX) stride-1 convolutions with 16
//! input channels or more go on the AMX tiles without a column matrix instead, y, dX and dW
//! (`conv_tiles`, `conv_tiles_dw`; [`algorithm_in`] decides), and the direct kernel takes
//! operands rounded to bf16 (`Precision::rounded_operands`). The plain-loop twin, used by the
//! tests as the oracle, is `conv2d_ref`.

use rayon::prelude::*;

use super::activation::Activation;
use super::column_sums::add_column_sums;
use super::conv_direct::{self, forward_direct_rows, DirectConv};
use super::conv_direct_bf16::{self, forward_direct_bf16_rows};
use super::conv_dw_direct::{self, weight_grad_direct, DirectShape};
pub use super::conv_output_grad::OutputGrad;
use super::conv_shape::ConvShape;
use super::conv_tiles::{self, TilesScratch};
use super::conv_tiles_dw::{self, TilesDwWork};
use super::epilogue::Epilogue;
use super::gemm::{gemm, gemm_prepared, RightOperand};
use super::gemm_bf16::{Chain, PackedB};
use super::im2col::{col2im, im2col, im2col_rows};
use super::simd::simd_dispatch;
use super::transpose::transpose;
use super::window::{Geometry, Padding, Window};
use super::winograd::{self, WinogradScratch};
use super::winograd_dw::{self, SummedWork, WeightGradWork};
use super::{Bf16Convs, Precision};
use crate::chunks::IMAGES_PER_CHUNK as CHUNK;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::threads::{with_thread_scratch, PerThread};

/// How a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Winograd, for 3x3 and 5x5 kernels at stride 1: F(4x4, 3x3) with 4 times fewer
    /// multiplications, F(4x4, 5x5) with 6.25 times fewer (F(2x2, 5x5), 2.8 times, for small
    /// outputs).
    Winograd,
    /// Directly on the image, a tile of the output in registers (`conv_direct`): stride 1 with
    /// few input channels (in bf16's winograd family on VDPBF16PS's chain, `conv_direct_bf16`;
    /// in the tiles' family on operands rounded to bf16, `Precision::rounded_operands`).
    Direct,
    /// A column matrix of the patches times the weights (any window).
    Im2col,
    /// bf16 only: the padded image in bf16 pairs read in place by the tiles, one shifted view
    /// per tap (`conv_tiles`): stride 1 with 16 input channels or more.
    Tiles,
}

/// The algorithm for a convolution with `g` (its geometry) and `window` from `c_in` to `c_out`
/// channels, its products in `precision`: [`algorithm`] in float32 and in bf16 by float32's
/// algorithms (`Bf16Convs::Winograd`; the direct one on VDPBF16PS's chain,
/// `conv_direct_bf16`). In the tiles' family, `conv_tiles` where it applies (stride 1, 16 input
/// channels or more: on AMX the products are cheap, and Winograd's transforms and im2col's
/// columns are what cost) unless Winograd applies and its fewer products and transforms would
/// cost less than the tiles' products (`conv_tiles::pays`: only layers far wider than the
/// configs'). Measured on AMX, the airbench and ResNet configs (docs/performance.md): 24 -> 64
/// at 31x31 49 -> 27 ms forward at batch 512, 64 -> 256 at 15x15 42 -> 28 ms; 256 -> 256 at
/// 7x7 in inference 4.9 ms a batch of 64 by Winograd, 2.8 on the tiles (their weights packed
/// once; packed every call, and timed alone, the tiles lost: 32-47 ms against 21-23 at batch
/// 512). Depends on the shape and
/// the family only, never on the CPU: each family computes the same chains on every machine.
pub fn algorithm_in(precision: Precision, g: &Geometry, window: &Window, c_in: usize, c_out: usize) -> Algorithm {
    let f32_choice = algorithm(window, c_in, c_out);
    match precision.bf16_convs() {
        Some(Bf16Convs::Tiles)
            if conv_tiles::applies(window, c_in) && (f32_choice != Algorithm::Winograd || conv_tiles::pays(g, c_in, c_out)) =>
        {
            Algorithm::Tiles
        }
        _ => f32_choice,
    }
}

/// The algorithm for a convolution with `window` from `c_in` to `c_out` channels: the one place
/// that decides, for the forward pass and for the input gradient (a convolution over the
/// output's channels, into the input's). Winograd needs a square kernel it has a variant for
/// (3x3 or 5x5) at stride 1 (any padding) and enough channels for its 36 products of
/// [tiles x c_in] x [c_in x c_out] to pay for the transforms: a 5x5 kernel at least
/// `winograd::MIN_IN_CHANNELS` (16) input channels (not the 3 of an RGB input); a 3x3 one,
/// which saves less per transformed value, at least `winograd::MIN_CHANNELS_3X3` (24) on both
/// sides (measured on the ResNet config: 16 -> 32 channels at 32x32 ran 25% slower by
/// Winograd than by im2col; the forward pass of 32 -> 32 at 16x16 is 1.4 times as fast, of
/// 64 -> 128 at 8x8 2.6 times, `benches/layers.rs`; on the airbench config 24 -> 64 at 31x31
/// 1.5 times, 9.0 against 6.1 ms at batch 64). Otherwise the direct kernel where
/// `conv_direct::applies` (stride 1, at most 32 channels each side: the first layers), else
/// im2col + GEMM.
pub fn algorithm(window: &Window, c_in: usize, c_out: usize) -> Algorithm {
    let stride_one = (window.sh, window.sw) == (1, 1) && window.kh == window.kw;
    let enough = match winograd::Variant::for_kernel(window.kh) {
        Some(winograd::Variant::F2x2Kernel5x5 | winograd::Variant::F4x4Kernel5x5) => c_in >= winograd::MIN_IN_CHANNELS,
        Some(winograd::Variant::F4x4Kernel3x3) => c_in.min(c_out) >= winograd::MIN_CHANNELS_3X3,
        None => false,
    };
    if stride_one && enough {
        Algorithm::Winograd
    } else if conv_direct::applies(window, c_in, c_out) {
        Algorithm::Direct
    } else {
        Algorithm::Im2col
    }
}

/// Gradients of a convolution.
#[derive(Debug)]
pub struct Conv2dGrads {
    pub d_input: Tensor,
    pub d_weight: Tensor,
    pub d_bias: Tensor,
}

/// The gradients a backward pass is asked for, and the buffers it writes them into (resized as
/// needed). Without `d_input` the input gradient is not computed at all: the first layer of a
/// network does not need it.
pub struct Conv2dGradsMut<'a> {
    pub d_input: Option<&'a mut Tensor>,
    pub d_weight: &'a mut Tensor,
    pub d_bias: &'a mut Tensor,
}

/// Reusable buffers of one convolution: partial gradients per chunk of images, one column
/// matrix per worker thread for the forward pass, and the Winograd buffers. Kept by the layer
/// so that a training step allocates nothing once warmed up. (The backward pass's column
/// matrices and masked dz, and the Winograd V and M, are the thread's own pair, shared by all
/// layers: `threads::with_thread_scratch`.)
#[derive(Default)]
pub struct ConvScratch {
    chunks: Vec<ChunkScratch>,
    thread_cols: PerThread<Vec<f32>>,
    /// dW by Winograd (`winograd_dw`): one chunk's buffers per worker thread.
    thread_dw: PerThread<WeightGradWork>,
    /// dW by Winograd summed over the batch (`winograd_dw::weight_grad_summed`).
    summed_dw: SummedWork,
    /// bf16 dW on the tiles (`conv_tiles_dw`).
    tiles_dw: TilesDwWork,
    /// The weights packed for bf16 products (`RightOperand`), W for the forward pass and W^T
    /// for dX by im2col.
    packed_w: PackedB,
    winograd: WinogradScratch,
    /// The bf16 implicit GEMM's images and packed weights (`conv_tiles`).
    tiles: TilesScratch,
    /// The input and weights rounded to bf16 for the direct kernel (`Precision::rounded_operands`).
    bf16_operands: (Vec<f32>, Vec<f32>),
    /// The direct kernel on the dot chain (`conv_direct_bf16`).
    dot_direct: DotDirectScratch,
    dx_winograd: DxScratch,
    /// Each image's db ([`conv2d_bias_grad_into`]).
    image_bias_grads: Vec<f32>,
}

/// The input gradient as a convolution of its own (see `input_grad_window`): the output
/// gradient masked by a fused ReLU, the flipped weights, a zero bias.
#[derive(Default)]
struct DxScratch {
    dz: Tensor,
    w_flipped: Tensor,
    zero_bias: Tensor,
    winograd: WinogradScratch,
    tiles: TilesScratch,
    bf16_operands: (Vec<f32>, Vec<f32>),
    dot_direct: DotDirectScratch,
}

/// The direct kernel on the dot chain: the packed weights, and each worker's padded rows in
/// pairs.
#[derive(Default)]
struct DotDirectScratch {
    weights: Vec<u32>,
    padded_rows: PerThread<Vec<u32>>,
}

#[derive(Default)]
struct ChunkScratch {
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// Output rows of one image per forward task. A large batch keeps every thread busy with whole
/// images; a small one (batch-1 latency) splits each image into blocks of output rows, so one
/// image still uses every core. Depends on the batch and the shape only, never on the thread
/// count, so the output does not depend on the machine. Blocks keep at least
/// `MIN_BLOCK_PIXELS` output pixels: smaller GEMMs lose more than the extra thread gains.
fn forward_rows_per_task(n: usize, oh: usize, ow: usize) -> usize {
    const MIN_BLOCK_PIXELS: usize = 128;
    const MAX_BLOCKS: usize = 4;
    if n >= 2 * CHUNK {
        return oh;
    }
    oh.div_ceil(MAX_BLOCKS).max(MIN_BLOCK_PIXELS.div_ceil(ow)).clamp(1, oh)
}

/// y = conv(x, w) + b, optionally followed by ReLU in the same pass over memory.
pub fn conv2d_forward(x: &Tensor, w: &Tensor, b: &Tensor, window: &Window, relu: bool) -> Result<Tensor> {
    let mut y = Tensor::empty();
    conv2d_forward_into(x, w, b, window, relu, Precision::F32, &mut y, &mut ConvScratch::default())?;
    Ok(y)
}

/// `conv2d_forward` into a reused output buffer, by the algorithm [`algorithm`] picks, its
/// products in `precision` (`ops::precision`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    window: &Window,
    relu: bool,
    precision: Precision,
    y: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    conv2d_forward_then_into(x, w, b, window, (relu, Epilogue::NONE), precision, y, scratch)
}

/// y = then(conv(x, w) + b (ReLU if `relu`)): `conv2d_forward_into` with an epilogue (an
/// evaluation norm's map, an activation: `ops::epilogue`) applied to each block of output as
/// its task writes it, while in cache, rather than by the layers after it in passes of their
/// own. The same bits as the convolution followed by those layers. (Winograd's tasks write
/// tiles across rows: there the epilogue is a pass of its own over the output.)
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_then_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    window: &Window,
    (relu, then): (bool, Epilogue),
    precision: Precision,
    y: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    let shape = ConvShape::of(x.shape(), w.shape(), Some(b.shape()), window)?;
    y.resize(&shape.output_shape());
    let c_out = shape.c_out;
    match algorithm_in(precision, &shape.geometry, window, shape.c_in, shape.c_out) {
        Algorithm::Winograd => {
            winograd::forward_into(x, w, b, &shape, relu, precision, y, &mut scratch.winograd);
            if !then.is_none() {
                y.data_mut().par_chunks_mut(shape.output_len()).for_each(|y_img| then.apply(y_img, c_out));
            }
        }
        Algorithm::Direct => {
            let scratch = (&mut scratch.bf16_operands, &mut scratch.dot_direct, scratch.thread_cols.for_current_pool());
            direct_in(precision, (x.data(), w.data(), b.data()), &shape, (relu, then), y, scratch)
        }
        Algorithm::Im2col => im2col_forward(x, w, b, &shape, (relu, then), precision, y, scratch),
        Algorithm::Tiles => {
            let scratch = (&mut scratch.tiles, scratch.thread_cols.for_current_pool());
            tiles_forward(x, w, b.data(), &shape, (relu, then), y, scratch)
        }
    }
    Ok(())
}

/// `conv2d_forward_into` always by im2col + GEMM, even where Winograd would be taken: for the
/// benches that compare the two.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_im2col_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    window: &Window,
    relu: bool,
    precision: Precision,
    y: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    let shape = ConvShape::of(x.shape(), w.shape(), Some(b.shape()), window)?;
    y.resize(&shape.output_shape());
    im2col_forward(x, w, b, &shape, (relu, Epilogue::NONE), precision, y, scratch);
    Ok(())
}

/// Each task computes a block of output rows of one image: the im2col of those rows, then one
/// GEMM with the bias already in place.
#[allow(clippy::too_many_arguments)]
fn im2col_forward(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    shape: &ConvShape,
    (relu, then): (bool, Epilogue),
    precision: Precision,
    y: &mut Tensor,
    scratch: &mut ConvScratch,
) {
    let (g, c_in, c_out) = (&shape.geometry, shape.c_in, shape.c_out);
    let (k, in_size) = (shape.patch_len(), shape.input_len());
    let rows = forward_rows_per_task(shape.batch, g.oh, g.ow);
    let cols = scratch.thread_cols.for_current_pool();
    let w = RightOperand::prepare(precision, k, c_out, w.data(), false, &mut scratch.packed_w);
    output_row_blocks(y, shape, rows).for_each(|(img, out_rows, y_block)| {
        let m = y_block.len() / c_out;
        let mut col = cols.get();
        col.resize(rows * g.ow * k, 0.0);
        im2col_rows(&x.data()[img * in_size..][..in_size], g, c_in, out_rows, &mut col);
        gemm_prepared(m, k, c_out, &col, false, &w, 0.0, y_block);
        add_bias(y_block, b.data(), relu);
        then.apply(y_block, c_out);
    });
}

/// The forward tasks: each image's output cut into blocks of `rows` output rows (the last
/// shorter), as (image, its output rows, that block of y).
fn output_row_blocks<'y>(
    y: &'y mut Tensor,
    shape: &ConvShape,
    rows: usize,
) -> impl ParallelIterator<Item = (usize, std::ops::Range<usize>, &'y mut [f32])> {
    let row_len = shape.geometry.ow * shape.c_out;
    y.data_mut().par_chunks_mut(shape.output_len()).enumerate().flat_map(move |(img, y_img)| {
        y_img.par_chunks_mut(rows * row_len).enumerate().map(move |(block, y_block)| {
            let first = block * rows;
            (img, first..first + y_block.len() / row_len, y_block)
        })
    })
}

/// The bf16 implicit GEMM (`conv_tiles`) over the batch: the weights packed once, then each
/// task a block of output rows of one image (`forward_rows_per_task`) or several whole small
/// images, their padded rows converted and the product's rows in the thread's buffers.
fn tiles_forward(
    x: &Tensor,
    w: &Tensor,
    b: &[f32],
    shape: &ConvShape,
    epilogue: (bool, Epilogue),
    y: &mut Tensor,
    scratch: (&mut TilesScratch, &PerThread<Vec<f32>>),
) {
    let (tiles, bufs) = scratch;
    let (g, out_size) = (&shape.geometry, shape.output_len());
    let prepared = conv_tiles::prepare(x, w, b, shape, epilogue, tiles);
    let group = prepared.layout().images_per_task();
    if group > 1 {
        y.data_mut().par_chunks_mut(group * out_size).enumerate().for_each(|(task, y_group)| {
            let images = task * group..task * group + y_group.len() / out_size;
            prepared.rows_into(images, 0..g.oh, y_group, &mut bufs.get())
        });
    } else {
        output_row_blocks(y, shape, forward_rows_per_task(shape.batch, g.oh, g.ow))
            .for_each(|(img, out_rows, y_block)| prepared.rows_into(img..img + 1, out_rows, y_block, &mut bufs.get()));
    }
}

/// y = then(max_pool(conv(x, w) + b)) (ReLU before the pooling if `relu`; `then`, an
/// epilogue of `ops::epilogue`, on the pooled values), in one pass where the
/// convolution goes on the tiles (`conv_tiles`) and each task takes whole images: each task's
/// product pooled by `pool_window` as it is finished, the convolution's own output never
/// written (`conv_tiles::Prepared::pooled_into`), and with `winners` the index of each
/// output's winner in its image, as `ops::pool::max_pool2d_forward_into` keeps them for the
/// backward pass. The same bits as the two one after the other. Returns false, having done
/// nothing, where it cannot: another algorithm, images split between tasks (a small batch),
/// or a pooling window reading padding.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_max_pooled_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    window: &Window,
    (relu, then): (bool, Epilogue),
    precision: Precision,
    pool_window: &Window,
    y: &mut Tensor,
    winners: Option<&mut Vec<u32>>,
    scratch: &mut ConvScratch,
) -> Result<bool> {
    let shape = ConvShape::of(x.shape(), w.shape(), Some(b.shape()), window)?;
    let (pool, _, _) = super::pool::pool_geometry("max_pool2d", &shape.output_shape(), pool_window)?;
    if !pools_as_finished(&shape, window, precision, &pool) {
        return Ok(false);
    }
    let group = conv_tiles::Layout::of(&shape).images_per_task();
    y.resize(&[shape.batch, pool.oh, pool.ow, shape.c_out]);
    let pooled_len = pool.oh * pool.ow * shape.c_out;
    let (tiles, bufs) = (&mut scratch.tiles, scratch.thread_cols.for_current_pool());
    let prepared = conv_tiles::prepare(x, w, b.data(), &shape, (relu, then), tiles);
    // Each task: its images' pooled outputs, and their winners when kept.
    let task = |task: usize, y_group: &mut [f32], winners: &mut [u32]| {
        let images = task * group..task * group + y_group.len() / pooled_len;
        prepared.pooled_into(images, &pool, y_group, winners, &mut bufs.get())
    };
    let y_groups = y.data_mut().par_chunks_mut(group * pooled_len);
    match winners {
        Some(winners) => {
            winners.resize(shape.batch * pooled_len, 0);
            let winner_groups = winners.par_chunks_mut(group * pooled_len);
            y_groups.zip(winner_groups).enumerate().for_each(|(i, (y_group, winners))| task(i, y_group, winners));
        }
        None => y_groups.enumerate().for_each(|(i, y_group)| task(i, y_group, &mut [])),
    }
    Ok(true)
}

/// Whether [`conv2d_forward_max_pooled_into`] takes a convolution of `shape` and the max
/// pooling `pool` (resolved on its output) in one pass: on the tiles, whole images a task,
/// every window inside the output.
fn pools_as_finished(shape: &ConvShape, window: &Window, precision: Precision, pool: &Geometry) -> bool {
    let g = &shape.geometry;
    let on_tiles = algorithm_in(precision, g, window, shape.c_in, shape.c_out) == Algorithm::Tiles;
    let whole_images = conv_tiles::Layout::of(shape).images_per_task() > 1 || forward_rows_per_task(shape.batch, g.oh, g.ow) == g.oh;
    on_tiles && whole_images && conv_tiles::pools_inside(g, pool)
}

/// Whether a convolution from `x_shape` with weights `w_shape` and the max pooling
/// `pool_window` after it go in one pass ([`conv2d_forward_max_pooled_into`] returns true for
/// them); false for shapes it refuses.
pub fn max_pools_as_finished(x_shape: &[usize], w_shape: &[usize], window: &Window, precision: Precision, pool_window: &Window) -> bool {
    let Ok(shape) = ConvShape::of(x_shape, w_shape, None, window) else {
        return false;
    };
    super::pool::pool_geometry("max_pool2d", &shape.output_shape(), pool_window)
        .is_ok_and(|(pool, _, _)| pools_as_finished(&shape, window, precision, &pool))
}

/// The direct kernel (`conv_direct`) over the batch: each task a block of output rows of one
/// image (`forward_rows_per_task`), its padded rows in the thread's buffer.
fn direct_forward(
    (x, w, b): (&[f32], &[f32], &[f32]),
    shape: &ConvShape,
    (relu, then): (bool, Epilogue),
    y: &mut Tensor,
    bufs: &PerThread<Vec<f32>>,
) {
    let g = &shape.geometry;
    let s = DirectConv { g, c_in: shape.c_in, c_out: shape.c_out, w, b, relu };
    let (in_size, rows) = (shape.input_len(), forward_rows_per_task(shape.batch, g.oh, g.ow));
    output_row_blocks(y, shape, rows).for_each(|(img, out_rows, y_block)| {
        forward_direct_rows(&x[img * in_size..][..in_size], s, out_rows, &mut bufs.get(), y_block);
        then.apply(y_block, shape.c_out);
    });
}

/// The direct convolution (y, or dX as its own convolution) with its products in
/// `precision`: float32's kernel, in the winograd family of bf16 its own kernel on the dot
/// chain, in the tiles' family float32's kernel on operands rounded to bf16.
#[allow(clippy::type_complexity)]
fn direct_in(
    precision: Precision,
    (x, w, b): (&[f32], &[f32], &[f32]),
    shape: &ConvShape,
    epilogue: (bool, Epilogue),
    y: &mut Tensor,
    scratch: (&mut (Vec<f32>, Vec<f32>), &mut DotDirectScratch, &PerThread<Vec<f32>>),
) {
    let (rounded, dot_direct, padded_rows) = scratch;
    if precision.bf16_chain() == Some(Chain::Dot) {
        return direct_dot_forward((x, w, b), shape, epilogue, y, dot_direct);
    }
    // A product of two bf16 values is exact in float32, so float32's kernel then computes
    // bf16 products with float32 accumulation in its own fixed order: the same bits on every
    // machine (tests/simd_levels.rs holds the kernel to that).
    let (x, w) = precision.rounded_operands(x, w, rounded);
    direct_forward((x, w, b), shape, epilogue, y, padded_rows)
}

/// The direct kernel on the dot chain (the winograd family's, `conv_direct_bf16`): the
/// weights packed once, then each task a block of output rows of one image, its padded rows
/// converted to pairs in the worker's buffer.
fn direct_dot_forward(
    (x, w, b): (&[f32], &[f32], &[f32]),
    shape: &ConvShape,
    (relu, then): (bool, Epilogue),
    y: &mut Tensor,
    scratch: &mut DotDirectScratch,
) {
    let g = &shape.geometry;
    let s = DirectConv { g, c_in: shape.c_in, c_out: shape.c_out, w, b, relu };
    conv_direct_bf16::pack_weights(&s, &mut scratch.weights);
    let (packed, bufs) = (&scratch.weights[..], scratch.padded_rows.for_current_pool());
    let (in_size, rows) = (shape.input_len(), forward_rows_per_task(shape.batch, g.oh, g.ow));
    output_row_blocks(y, shape, rows).for_each(|(img, out_rows, y_block)| {
        forward_direct_bf16_rows(&x[img * in_size..][..in_size], s, packed, out_rows, &mut bufs.get(), y_block);
        then.apply(y_block, shape.c_out);
    });
}

simd_dispatch! {
    /// y + b for each row of y (one output pixel's channels), then ReLU if `relu` (a NaN stays
    /// NaN, as in `Activation::Relu`): one pass over the block the GEMM just wrote, while in cache.
    fn add_bias => add_bias_plain(y: &mut [f32], b: &[f32], relu: bool)
}

#[inline(always)]
fn add_bias_plain(y: &mut [f32], b: &[f32], relu: bool) {
    for row in y.chunks_exact_mut(b.len()) {
        for (v, &bias) in row.iter_mut().zip(b) {
            let sum = *v + bias;
            *v = if relu && sum < 0.0 { 0.0 } else { sum };
        }
    }
}

/// Gradients of a convolution given its input `x`, weight `w` and the output gradient `dy`.
pub fn conv2d_backward(x: &Tensor, w: &Tensor, dy: &Tensor, window: &Window) -> Result<Conv2dGrads> {
    let (mut d_input, mut d_weight, mut d_bias) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
    let grads = Conv2dGradsMut { d_input: Some(&mut d_input), d_weight: &mut d_weight, d_bias: &mut d_bias };
    conv2d_backward_into(x, w, OutputGrad::Plain(dy), window, Precision::F32, grads, &mut ConvScratch::default())?;
    Ok(Conv2dGrads { d_input, d_weight, d_bias })
}

/// The backward pass into reused buffers: given the forward input `x`, the weight `w` and the
/// gradient at the output, fills the gradients `grads` asks for. dX goes by Winograd, the
/// direct kernel or the tiles where [`algorithm_in`] picks one for the input gradient's own
/// convolution, otherwise by col2im; dW and db by the method `WeightGradMethod` names (chunk by
/// chunk of images, or over the whole batch for the summed Winograd and the tiles).
pub fn conv2d_backward_into(
    x: &Tensor,
    w: &Tensor,
    dy: OutputGrad,
    window: &Window,
    precision: Precision,
    grads: Conv2dGradsMut,
    scratch: &mut ConvScratch,
) -> Result<()> {
    let shape = ConvShape::of(x.shape(), w.shape(), None, window)?;
    let expected = shape.output_shape();
    if dy.dy().shape() != expected {
        return Err(Error::shape("conv2d backward", format!("dy {expected:?}"), format!("{:?}", dy.dy().shape())));
    }
    dy.check_relu_output(&expected)?;
    let Conv2dGradsMut { d_input, d_weight, d_bias } = grads;
    let ConvScratch { chunks, dx_winograd, packed_w, thread_dw, summed_dw, tiles_dw, thread_cols, .. } = scratch;
    // dX as a convolution of its own where that convolution would not take im2col.
    let g = &shape.geometry;
    let dx_as_conv = input_grad_window(g, window)
        .map(|dx_window| {
            let dx_geometry = Geometry::new("conv2d backward", g.oh, g.ow, &dx_window)?;
            Ok::<_, Error>((dx_window, algorithm_in(precision, &dx_geometry, &dx_window, shape.c_out, shape.c_in)))
        })
        .transpose()?
        .filter(|&(_, dx_algorithm)| dx_algorithm != Algorithm::Im2col);
    // dW by float32's Winograd where float32 takes it, in the winograd family of bf16 too, on
    // x and dz rounded to bf16 but with float32 products (`winograd_dw::bf16_operands`: bf16
    // products of the transformed values would have dW's output transform amplify their
    // rounding ~56 times). Elsewhere the winograd family takes the tiles' layout on its dot
    // chain where it applies (VDPBF16PS reads the transposed images in place: on Zen 4 the
    // ResNet's 32 -> 64 at 16x16, batch 128, 9.5 -> 8.5 ms backward against float32's direct
    // kernel on the rounded inputs), else float32's choice on the rounded inputs, except that
    // the few input channels float32 gives to im2col (an RGB or grey first layer) take the
    // tiles' layout too, with as few rows as there are channels (the ResNet's 3 -> 16 at
    // 32x32, batch 128: 2.05 -> 1.7 ms backward; im2col's columns and their transposes were
    // three quarters of it). The tiles' family keeps its own dW (the tiles, else im2col). The
    // summed Winograd dW and the tiles' run on the whole batch, so not beside a dX by col2im,
    // which goes chunk by chunk with dW.
    let dx_by_col2im = d_input.is_some() && dx_as_conv.is_none();
    let on_tiles = precision.bf16_convs() == Some(Bf16Convs::Tiles);
    let dw_method = if on_tiles && conv_tiles_dw::applies(window, &shape) && !dx_by_col2im {
        WeightGradMethod::Tiles
    } else if !on_tiles && winograd_dw::applies(window, &shape) {
        WeightGradMethod::Winograd
    } else if !on_tiles && winograd_dw::summed_applies(window, &shape) && !dx_by_col2im {
        WeightGradMethod::WinogradSummed
    } else if precision.bf16_chain() == Some(Chain::Dot) && conv_tiles_dw::applies(window, &shape) && !dx_by_col2im {
        WeightGradMethod::Tiles
    } else if !on_tiles && conv_dw_direct::applies(&shape.geometry, shape.c_in) {
        WeightGradMethod::Direct
    } else if precision.bf16_chain() == Some(Chain::Dot) && conv_tiles_dw::applies_on_dot(window, &shape) && !dx_by_col2im {
        WeightGradMethod::Tiles
    } else {
        WeightGradMethod::Columns
    };
    match (d_input, dx_as_conv) {
        (Some(dx), Some((dx_window, dx_algorithm))) => {
            let DxScratch { dz, w_flipped, zero_bias, winograd, tiles, bf16_operands, dot_direct } = dx_winograd;
            let dz = relu_masked(dy, shape.output_len(), dz);
            let scratch = (w_flipped, zero_bias, winograd, tiles, (bf16_operands, dot_direct), thread_cols.for_current_pool());
            input_grad_as_conv(dz, w, &shape, (&dx_window, dx_algorithm), precision, dx, scratch)?;
            let scratch = (&mut *chunks, thread_dw, (&mut *summed_dw, &mut *tiles_dw), packed_w);
            weight_grads(x, w, OutputGrad::Plain(dz), &shape, precision, dw_method, None, scratch, d_weight, d_bias);
        }
        (dx, _) => {
            let scratch = (&mut *chunks, thread_dw, (&mut *summed_dw, &mut *tiles_dw), packed_w);
            weight_grads(x, w, dy, &shape, precision, dw_method, dx, scratch, d_weight, d_bias);
        }
    }
    Ok(())
}

/// db alone (`[C_out]`), for a convolution whose weights take no gradient (frozen: the fast
/// CIFAR-10 recipe's whitening layer, as PyTorch computes none for a weight without
/// `requires_grad`) and whose input needs none (the first layer):
///
/// ```text
///   db[o] = sum over n, i, j of dz[n, i, j, o]      (dz: dy, masked by a fused ReLU)
/// ```
///
/// Each image's pixels summed in order (the images in parallel), then the images added in
/// order (after the previous ranks' in a distributed step): the same bits on any number of
/// threads or ranks. Without dW airbench's whitening layer's backward pass takes 1.9 ms
/// instead of 8.1 (batch 512, bf16 on AMX).
pub fn conv2d_bias_grad_into(dy: OutputGrad, d_bias: &mut Tensor, scratch: &mut ConvScratch) -> Result<()> {
    let shape = dy.dy().shape();
    let &[n, oh, ow, c_out] = shape else {
        return Err(Error::shape("conv2d backward", "dy [N, oh, ow, C_out]", format!("{shape:?}")));
    };
    dy.check_relu_output(shape)?;
    d_bias.resize(&[c_out]);
    if c_out == 0 {
        return Ok(());
    }
    let per_image = &mut scratch.image_bias_grads;
    per_image.clear();
    per_image.resize(n * c_out, 0.0);
    let image_len = oh * ow * c_out;
    per_image.par_chunks_mut(c_out).enumerate().for_each_init(Vec::new, |masked, (image, db)| {
        add_column_sums(dy.images(image, 1, image_len, masked), db);
    });
    crate::dist::ordered_fold(&mut [d_bias.data_mut()], |acc| {
        for image in per_image.chunks_exact(c_out) {
            acc[0].iter_mut().zip(image).for_each(|(a, v)| *a += v);
        }
    });
    Ok(())
}

/// How a chunk's dW is computed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WeightGradMethod {
    /// im2col + GEMM: bf16 products, and float32 layers the others do not suit.
    Columns,
    /// Winograd F(5x5, 4x4) (`winograd_dw::applies`).
    Winograd,
    /// Directly on the images, a block of the gradient in registers (`conv_dw_direct`).
    Direct,
    /// Winograd F(3x3, 4x4), the products summed over the whole batch before the output
    /// transform (`winograd_dw::summed_applies`, where dX does not go by col2im).
    WinogradSummed,
    /// bf16: the images transposed and read in place by the tiles (or, on the dot chain, by
    /// VDPBF16PS), one shifted view per tap, over the whole batch (`conv_tiles_dw`, where dX
    /// does not go by col2im).
    Tiles,
}

/// Chunks whose partial dW are held at once, per worker thread, in a one-process step.
const CHUNKS_IN_FLIGHT_PER_THREAD: usize = 1;

/// dW and db (and dX by col2im if `dx` is given): the chunks' partial sums, added in chunk
/// order. In one process the chunks run a window at a time (one per thread), each window's
/// partials added before the next starts, so that only the window's partial dW are held (a
/// 256 -> 256 3x3 convolution's is 2.4 MB; all 64 chunks of a batch of 512 would hold 150 MB).
/// The additions are the same in the same order, so the bits do not depend on the window. In a
/// distributed step every chunk's partial is computed before the rank waits for the running
/// sum (`crate::dist`), so all are held.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn weight_grads(
    x: &Tensor,
    w: &Tensor,
    dy: OutputGrad,
    shape: &ConvShape,
    precision: Precision,
    dw_method: WeightGradMethod,
    mut dx: Option<&mut Tensor>,
    scratch: (&mut Vec<ChunkScratch>, &mut PerThread<WeightGradWork>, (&mut SummedWork, &mut TilesDwWork), &mut PackedB),
    d_weight: &mut Tensor,
    d_bias: &mut Tensor,
) {
    let (store, thread_dw, (summed_dw, tiles_dw), packed_w) = scratch;
    let total = shape.batch.div_ceil(CHUNK);
    if let Some(dx) = dx.as_deref_mut() {
        dx.resize(x.shape());
    }
    d_weight.resize(w.shape());
    d_bias.resize(&[shape.c_out]);
    if dw_method == WeightGradMethod::WinogradSummed {
        assert!(dx.is_none(), "the summed Winograd dW is not chosen beside a dX by col2im");
        winograd_dw::weight_grad_summed(x.data(), dy, shape, precision, summed_dw, d_weight.data_mut(), d_bias.data_mut());
        return;
    }
    if dw_method == WeightGradMethod::Tiles {
        assert!(dx.is_none(), "dW on the tiles is not chosen beside a dX by col2im");
        let chain = precision.bf16_chain().expect("dW on the tiles' layout is bf16");
        conv_tiles_dw::weight_grad(x.data(), dy, shape, chain, tiles_dw, d_weight.data_mut(), d_bias.data_mut());
        return;
    }
    if crate::dist::in_group() {
        chunk_partials(x, w, dy, shape, precision, dw_method, 0..total, dx.map(|d| d.data_mut()), (store, thread_dw, packed_w));
        sum_chunk_partials(&store[..total], d_weight, d_bias);
        return;
    }
    let window = CHUNKS_IN_FLIGHT_PER_THREAD * rayon::current_num_threads();
    d_weight.data_mut().fill(0.0);
    d_bias.data_mut().fill(0.0);
    let in_size = shape.input_len();
    for first in (0..total).step_by(window) {
        let chunks = first..(first + window).min(total);
        let images = chunks.start * CHUNK..(chunks.end * CHUNK).min(shape.batch);
        let dx_part = dx.as_deref_mut().map(|d| &mut d.data_mut()[images.start * in_size..images.end * in_size]);
        let count = chunks.len();
        chunk_partials(x, w, dy, shape, precision, dw_method, chunks, dx_part, (store, thread_dw, packed_w));
        add_partials(&store[..count], d_weight.data_mut(), d_bias.data_mut());
    }
}

/// The output gradient at the convolution itself: `dy`, or for a fused ReLU dy masked by y > 0
/// into `buf` (the whole batch, for the Winograd dX), image by image in parallel.
fn relu_masked<'a>(dy: OutputGrad<'a>, out_size: usize, buf: &'a mut Tensor) -> &'a Tensor {
    match dy {
        OutputGrad::Plain(dy) => dy,
        OutputGrad::ThroughRelu { dy, y } => {
            buf.resize(dy.shape());
            buf.data_mut()
                .par_chunks_mut(out_size)
                .zip(dy.data().par_chunks(out_size))
                .zip(y.data().par_chunks(out_size))
                .for_each(|((dz, dy), y)| Activation::Relu.backward_into(y, dy, dz));
            buf
        }
    }
}

/// For stride 1, the input gradient as a convolution of its own:
/// ```text
///   dX[i, j, ci] = sum over ki, kj, co of dY[i + pt - ki, j + pl - kj, co] W[ki, kj, ci, co]
/// ```
/// is the correlation of dY, padded by (kh - 1 - pt) before and (kh - 1 - pb) after (likewise
/// for the columns), with the kernel flipped in both axes and its channels swapped. Returns that
/// convolution's window; None for a stride other than 1 or a padding over kh - 1.
fn input_grad_window(g: &Geometry, window: &Window) -> Option<Window> {
    if (window.sh, window.sw) != (1, 1) {
        return None;
    }
    let pad_bottom = (g.oh + g.kh - 1).checked_sub(g.ih + g.pad_top)?;
    let pad_right = (g.ow + g.kw - 1).checked_sub(g.iw + g.pad_left)?;
    let top = (g.kh - 1).checked_sub(g.pad_top)?;
    let bottom = (g.kh - 1).checked_sub(pad_bottom)?;
    let left = (g.kw - 1).checked_sub(g.pad_left)?;
    let right = (g.kw - 1).checked_sub(pad_right)?;
    Some(Window::new(g.kh, g.kw, 1, 1, Padding::Explicit { top, bottom, left, right }))
}

/// dX as a convolution: that of `dz` with the flipped kernel and a zero bias, over the window
/// from `input_grad_window`, by Winograd or the direct kernel (`dx_conv`: the window and the
/// algorithm). `scratch` holds the flipped kernel, the zero bias, the Winograd buffers and the
/// direct kernel's per-thread padded rows.
#[allow(clippy::type_complexity)]
fn input_grad_as_conv(
    dz: &Tensor,
    w: &Tensor,
    shape: &ConvShape,
    dx_conv: (&Window, Algorithm),
    precision: Precision,
    dx: &mut Tensor,
    scratch: (
        &mut Tensor,
        &mut Tensor,
        &mut WinogradScratch,
        &mut TilesScratch,
        (&mut (Vec<f32>, Vec<f32>), &mut DotDirectScratch),
        &PerThread<Vec<f32>>,
    ),
) -> Result<()> {
    let (dx_window, dx_algorithm) = dx_conv;
    let (w_flipped, zero_bias, winograd, tiles, (bf16_operands, dot_direct), padded_rows) = scratch;
    flip_weights(w, w_flipped);
    zero_bias.resize(&[shape.c_in]);
    zero_bias.data_mut().fill(0.0);
    let g = &shape.geometry;
    let geometry = Geometry::new("conv2d backward", g.oh, g.ow, dx_window)?;
    let transposed = ConvShape { batch: shape.batch, geometry, c_in: shape.c_out, c_out: shape.c_in };
    dx.resize(&[shape.batch, g.ih, g.iw, shape.c_in]);
    match dx_algorithm {
        Algorithm::Winograd => winograd::forward_into(dz, w_flipped, zero_bias, &transposed, false, precision, dx, winograd),
        Algorithm::Direct => {
            let operands = (dz.data(), w_flipped.data(), zero_bias.data());
            direct_in(precision, operands, &transposed, (false, Epilogue::NONE), dx, (bf16_operands, dot_direct, padded_rows))
        }
        Algorithm::Tiles => tiles_forward(dz, w_flipped, zero_bias.data(), &transposed, (false, Epilogue::NONE), dx, (tiles, padded_rows)),
        Algorithm::Im2col => unreachable!("dX by im2col goes through col2im in `weight_grads`"),
    }
    Ok(())
}

/// wf[ki][kj][co][ci] = w[kh-1-ki][kw-1-kj][ci][co]: the kernel of the input gradient.
fn flip_weights(w: &Tensor, wf: &mut Tensor) {
    let [kh, kw, c_in, c_out] = w.shape()[..] else { unreachable!("checked by ConvShape::of") };
    wf.resize(&[kh, kw, c_out, c_in]);
    let src = w.data();
    // A tap per task, each transposed by blocks (plain loops took 1.5 ms for 256 x 256 weights).
    wf.data_mut().par_chunks_mut(c_out * c_in).enumerate().for_each(|(tap, to)| {
        let (ki, kj) = (tap / kw, tap % kw);
        let from = &src[((kh - 1 - ki) * kw + (kw - 1 - kj)) * c_in * c_out..][..c_in * c_out];
        transpose(from, c_in, c_out, to);
    });
}

/// Each chunk of `CHUNK` images in `chunks` computes its own partial dW and db (into `store`
/// from its start; summed afterwards in chunk order, so the result does not depend on the
/// threads) and, if `dx` (those chunks' images) is given, its images' dX by col2im. Within a
/// chunk, dW is one product per group of images (`images_per_product`): dW += col^T dZ over
/// the group's pixels at once, so that the partial dW (k x C_out, large next to a small
/// image's columns) is read and written once per group, not once per image.
/// With `WeightGradMethod::Winograd` (`winograd_dw::applies`; only where dX is not wanted here),
/// each chunk's dW is one Winograd F(5x5, 4x4) of its images instead; with `Direct`
/// (`conv_dw_direct::applies`), one pass of the direct kernel, and dX, if wanted, takes the
/// columns d(col) = dZ W^T of one image at a time. `scratch` is (the chunks' partials, the per-thread Winograd dW buffers,
/// the packed W^T); the column matrices and masked dz are the thread's own pair
/// (`threads::with_thread_scratch`).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn chunk_partials(
    x: &Tensor,
    w: &Tensor,
    dy: OutputGrad,
    shape: &ConvShape,
    precision: Precision,
    dw_method: WeightGradMethod,
    chunks: std::ops::Range<usize>,
    dx: Option<&mut [f32]>,
    scratch: (&mut Vec<ChunkScratch>, &mut PerThread<WeightGradWork>, &mut PackedB),
) {
    let (store, thread_dw, packed_w) = scratch;
    let (n, g, c_in, c_out) = (shape.batch, &shape.geometry, shape.c_in, shape.c_out);
    let (m, k, in_size, out_size) = (shape.pixels(), shape.patch_len(), shape.input_len(), shape.output_len());
    let first_chunk = chunks.start;
    let chunks = prepare_chunks(store, chunks.len(), k * c_out, c_out);
    let dw_works = thread_dw.for_current_pool();
    let group = images_per_product(m * k);
    // W^T for dX (bf16: packed once, only if dX is wanted).
    let w_t = match dx {
        Some(_) => RightOperand::prepare(precision, c_out, k, w.data(), true, packed_w),
        None => RightOperand::Plain { b: w.data(), b_t: true },
    };
    let chunk_grads_in = |j: usize, s: &mut ChunkScratch, dx_chunk: Option<&mut [f32]>, col: &mut Vec<f32>, dz_buf: &mut Vec<f32>| {
        let chunk = first_chunk + j;
        s.db.fill(0.0);
        let images = CHUNK.min(n - chunk * CHUNK);
        let whole_chunk = match dw_method {
            WeightGradMethod::Columns => false,
            WeightGradMethod::Winograd => dx_chunk.is_none(),
            WeightGradMethod::Direct => true,
            WeightGradMethod::WinogradSummed | WeightGradMethod::Tiles => unreachable!("`weight_grads` runs it on the whole batch"),
        };
        if whole_chunk {
            let img0 = chunk * CHUNK;
            let dz = dy.images(img0, images, out_size, dz_buf);
            let x_chunk = &x.data()[img0 * in_size..][..images * in_size];
            if dw_method == WeightGradMethod::Winograd {
                winograd_dw::weight_grad_into(x_chunk, dz, images, shape, precision, &mut dw_works.get(), &mut s.dw);
            } else {
                // In bf16 (the winograd family) on x and dz rounded to bf16: float32's kernel
                // then sums bf16 products (exact in float32) in its own order.
                let mut work = dw_works.get();
                let (x_chunk, dz) = precision.rounded_operands(x_chunk, dz, work.rounded());
                weight_grad_direct(x_chunk, dz, DirectShape { g, images, c_in, c_out }, &mut s.dw);
            }
            add_column_sums(dz, &mut s.db);
            // dX by col2im (a strided layer, or one Winograd does not pay for), image by image:
            // d(col) = dZ · W^T, scattered onto the image.
            for (dz_img, dx_img) in dz.chunks_exact(out_size).zip(dx_chunk.into_iter().flat_map(|d| d.chunks_exact_mut(in_size))) {
                col.resize(col.len().max(m * k), 0.0);
                let d_col = &mut col[..m * k];
                gemm_prepared(m, c_out, k, dz_img, false, &w_t, 0.0, d_col);
                dx_img.fill(0.0);
                col2im(d_col, g, c_in, dx_img);
            }
            return;
        }
        let mut dx_imgs = dx_chunk.map(|d| d.chunks_exact_mut(in_size));
        for first in (0..images).step_by(group) {
            let count = group.min(images - first);
            let img0 = chunk * CHUNK + first;
            let dz = dy.images(img0, count, out_size, dz_buf);
            col.resize(col.len().max(count * m * k), 0.0);
            for (i, col_img) in col[..count * m * k].chunks_exact_mut(m * k).enumerate() {
                im2col(&x.data()[(img0 + i) * in_size..][..in_size], g, c_in, col_img);
            }
            // The chunk's first product starts the partial (beta 0); the others add to it.
            let beta = if first == 0 { 0.0 } else { 1.0 };
            gemm(precision, k, count * m, c_out, &col[..count * m * k], true, dz, false, beta, &mut s.dw);
            add_column_sums(dz, &mut s.db);
            for dz_img in dz.chunks_exact(out_size) {
                if let Some(dx_img) = dx_imgs.as_mut().and_then(|it| it.next()) {
                    // The columns, used, become d(col) = dZ · W^T, then scatter onto the image.
                    let d_col = &mut col[..m * k];
                    gemm_prepared(m, c_out, k, dz_img, false, &w_t, 0.0, d_col);
                    dx_img.fill(0.0);
                    col2im(d_col, g, c_in, dx_img);
                }
            }
        }
    };
    // The column matrix and masked dz: the thread's own pair, shared with every layer.
    let chunk_grads = |j: usize, s: &mut ChunkScratch, dx_chunk: Option<&mut [f32]>| {
        with_thread_scratch(|col, dz_buf| chunk_grads_in(j, s, dx_chunk, col, dz_buf))
    };
    match dx {
        Some(dx) => {
            dx.par_chunks_mut(CHUNK * in_size)
                .zip(chunks.par_iter_mut())
                .enumerate()
                .for_each(|(chunk, (dx_chunk, s))| chunk_grads(chunk, s, Some(dx_chunk)));
        }
        None => chunks.par_iter_mut().enumerate().for_each(|(chunk, s)| chunk_grads(chunk, s, None)),
    }
}

/// Images per dW product: as many as keep the group's column matrix within about 4 MB
/// (`col_len` values per image), one at least, a chunk at most. Depends on the shape only.
fn images_per_product(col_len: usize) -> usize {
    const GROUP_COL_VALUES: usize = 1 << 20;
    (GROUP_COL_VALUES / col_len.max(1)).clamp(1, CHUNK)
}

/// The partial gradients of `chunks` chunks: `dw_len` and `db_len` values each.
fn prepare_chunks(store: &mut Vec<ChunkScratch>, chunks: usize, dw_len: usize, db_len: usize) -> &mut [ChunkScratch] {
    if store.len() < chunks {
        store.resize_with(chunks, ChunkScratch::default);
    }
    for c in &mut store[..chunks] {
        c.dw.resize(dw_len, 0.0);
        c.db.resize(db_len, 0.0);
    }
    &mut store[..chunks]
}

/// dW and db: the chunks' partial sums, added in chunk order (after the previous ranks' in a
/// distributed step).
fn sum_chunk_partials(chunks: &[ChunkScratch], d_weight: &mut Tensor, d_bias: &mut Tensor) {
    // In a distributed step the fold continues the previous ranks' sum (crate::dist).
    crate::dist::ordered_fold(&mut [d_weight.data_mut(), d_bias.data_mut()], |acc| {
        let [dw, db] = acc else { unreachable!("two buffers") };
        add_partials(chunks, dw, db);
    });
}

/// Adds the chunks' partial dW and db to `dw` and `db`, in chunk order. A large dW is split
/// into blocks added on all threads at once (every value still gets the chunks' partials in
/// chunk order: the same bits): airbench's 256 -> 256 partials are 2.4 MB each, and one thread
/// adding them while the other waited cost a few percent of its step.
fn add_partials(chunks: &[ChunkScratch], dw: &mut [f32], db: &mut [f32]) {
    const BLOCK: usize = 1 << 14;
    let add = |(i, block): (usize, &mut [f32])| {
        for s in chunks {
            block.iter_mut().zip(&s.dw[i * BLOCK..]).for_each(|(a, v)| *a += v);
        }
    };
    if dw.len() > 2 * BLOCK {
        dw.par_chunks_mut(BLOCK).enumerate().for_each(add);
    } else {
        dw.chunks_mut(BLOCK).enumerate().for_each(add);
    }
    for s in chunks {
        db.iter_mut().zip(&s.db).for_each(|(a, v)| *a += v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dX of a stride-1 convolution is a stride-1 convolution padded by kh - 1 - p on each
    /// side; other strides have no such window, nor does a padding over kh - 1.
    #[test]
    fn the_input_gradient_window_pads_by_the_kernel_less_one_less_the_padding() {
        let dx_window = |side, window: Window| input_grad_window(&Geometry::new("t", side, side, &window).unwrap(), &window);
        let explicit = |top, bottom, left, right| Padding::Explicit { top, bottom, left, right };
        let stride_one = |k, padding| Window::new(k, k, 1, 1, padding);
        // SAME 5x5 pads 2 on each side, and so does its gradient; VALID becomes "full" (4).
        assert_eq!(dx_window(8, stride_one(5, Padding::Same)), Some(stride_one(5, explicit(2, 2, 2, 2))));
        assert_eq!(dx_window(8, stride_one(5, Padding::Valid)), Some(stride_one(5, explicit(4, 4, 4, 4))));
        // SAME 4x4 pads 1 before and 2 after (as TensorFlow); its gradient 2 before and 1 after.
        assert_eq!(dx_window(8, stride_one(4, Padding::Same)), Some(stride_one(4, explicit(2, 1, 2, 1))));
        assert_eq!(dx_window(8, Window::new(5, 5, 2, 2, Padding::Same)), None);
        assert_eq!(dx_window(8, Window::new(5, 5, 1, 2, Padding::Same)), None);
        assert_eq!(dx_window(8, stride_one(3, explicit(3, 3, 0, 0))), None);
    }
}
