//! The bf16 convolution at stride 1 without a column matrix (an "implicit GEMM"), made for the
//! AMX tiles:
//!
//! ```text
//!   y[n, i, j, o] = b[o] + sum over ki, kj, c of x_pad[n, i + ki, j + kj, c] w[ki, kj, c, o]
//! ```
//!
//! Laid out on the padded image's width W (its padding shared by neighbouring rows and images,
//! [`shared_padding`]), output pixel (i, j) is row p = i·W + j of a product whose tap (ki, kj)
//! reads the padded image at pixel p + ki·W + kj: the same rows, shifted. So the padded image,
//! converted to bf16 pairs by the task that reads it, with its channels padded to a multiple of
//! 32 (`cp` pairs a pixel) in its worker's buffer, is the left operand of every tap, read in
//! place: block (tap, 32 channels) of row p is the 16 pairs at (p + ki·W + kj)·cp + 16·block
//! (`gemm_bf16::gemm_bf16_blocks`, one AMX tile load of 16 pixels a block). The weights are
//! packed as the matching right operand, k = (tap, channel padded to 32). The W - ow extra
//! columns of each output row come out of the product too and are dropped.
//!
//! Against im2col + GEMM it writes no column matrix (kh·kw times the input, in pairs); against
//! Winograd it multiplies 4 times more (3x3) but transforms nothing, and on the tiles the
//! products are the cheap part. Each output is one chain of `gemm_bf16` over k = (ki, kj, c
//! padded to 32), taps in row-major order: the same bits on the AMX kernel, the AVX512-BF16
//! kernel and the emulation, at any thread count (tests/bf16_layers.rs).

use super::aligned::Aligned64;
use super::conv_shape::ConvShape;
use super::epilogue::Epilogue;
use super::gemm_bf16::{gemm_bf16_blocks, BlockedRows, Chain, PackedB, BLOCK_PAIRS};
use super::simd::simd_dispatch;
use super::window::{Geometry, Window};
use super::winograd;
use crate::tensor::Tensor;
use crate::threads::PerThread;

/// Input channels from which a stride-1 convolution in bf16 goes this way: below 16, padding
/// the channels to 32 would multiply more zeros than im2col's columns (k = kh·kw·c_in in one
/// run) cost.
pub const MIN_IN_CHANNELS: usize = 16;

/// Channels per block of k: one tile row of 16 pairs.
const BLOCK_CHANNELS: usize = 2 * BLOCK_PAIRS;

/// Whether a convolution with `window` and `c_in` input channels goes this way in bf16.
pub fn applies(window: &Window, c_in: usize) -> bool {
    (window.sh, window.sw) == (1, 1) && c_in >= MIN_IN_CHANNELS
}

/// Whether the tiles beat Winograd, for a convolution Winograd could take: they multiply
/// kh·kw products a pixel of the padded rows (`shared_padding`), Winograd tile² a tile of its
/// outputs, but Winograd also transforms every tile's c_in input and c_out output values, each
/// costing about `TRANSFORM_PER_PRODUCT` products of the tiles (AMX). So the tiles pay where
///
/// ```text
///   kh·kw · rows·W · c_in·c_out  <=  tiles · tile² · (c_in·c_out + 600 · (c_in + c_out))
/// ```
///
/// (per image). Measured in the network on AMX (the Xeon of 2026-12-06, airbench's inference
/// at batch 64, `convnet bench --layers`, the tiles' weights packed once): 256 -> 256 at 7x7,
/// 4.9 ms by Winograd, 2.8 on the tiles (the ratio 1.75 puts the constant at 767); at 3x3,
/// 1.1 against 0.94 (1.17: 471). Training agrees (airbench 820 -> 855 images/s, the ResNet,
/// whose 128 -> 128 at 8x8 moves to the tiles too, 1,707 -> 1,756). By the model only layers
/// far wider than the configs' take Winograd (1024 -> 1024 at 7x7). The constant of 250 before
/// came from layers timed alone (`benches/layers.rs`), with the tiles' weights packed on every
/// call. Depends on the shape only, as the family's bits must.
pub fn pays(g: &Geometry, c_in: usize, c_out: usize) -> bool {
    let Some(variant) = winograd::Variant::for_output(g.kh, g.oh, g.ow) else {
        return true;
    };
    let (width, rows) = shared_padding(g);
    let tiles = (g.kh * g.kw * rows * width) as u64 * (c_in * c_out) as u64;
    let winograd_tiles = (g.oh.div_ceil(variant.out()) * g.ow.div_ceil(variant.out()) * variant.positions()) as u64;
    let winograd = winograd_tiles * ((c_in * c_out) as u64 + TRANSFORM_PER_PRODUCT * (c_in + c_out) as u64);
    tiles <= winograd
}

/// What Winograd's transform of one value costs, in products on the tiles (`pays`).
const TRANSFORM_PER_PRODUCT: u64 = 600;

/// Each worker's padded images in bf16 pairs (the task's own, converted by the task), the
/// packed weights and the blocks' offsets, kept by the layer (`conv2d::ConvScratch`) so that a
/// step allocates nothing once warmed up.
#[derive(Default)]
pub struct TilesScratch {
    images: PerThread<Aligned64<u32>>,
    w_rows: Vec<f32>,
    packed: PackedB,
    /// The version of the weight tensor `packed` came from: evaluation passes, whose weights
    /// do not change between batches, pack them once (packing 256 -> 256 3x3 weights, on one
    /// thread while the other waited, was 8% of airbench's inference).
    packed_version: Option<u64>,
    offsets: Vec<usize>,
}

/// The width and rows of a padded image whose padding is shared with its neighbours: each
/// input row is followed by its right padding, which the next row's reads to the left of
/// its first pixel find too, and each image by its bottom padding, which is the next image's
/// top. Input pixel (r, c) lies at pixel (r + pad_top)·width + c + pad_left of its image, and
/// output (i, j) reads it at (i, j) shifted by the tap, (i + ki)·width + j + kj: the columns
/// -pad_left..0 and iw..iw + pad_right that a row's outputs read are zeros either in its own
/// row (to the left) or at the start of the next (to the right), as long as
///
/// ```text
///   width >= iw + max(pad_left, pad_right)    rows >= ih + max(pad_top, pad_bottom)
/// ```
///
/// and each row (image) has room for its outputs: width >= ow, rows >= oh. A 3x3 SAME kernel on
/// 7x7 takes 8 x 8 = 64 pixels an image where the padding on every side took 9 x 9 = 81, on
/// 15x15 256 where it took 289: the tiles multiply a fifth and a tenth fewer rows.
pub fn shared_padding(g: &Geometry) -> (usize, usize) {
    // At stride 1 the outputs read input columns -pad_left..ow + kw - 1 - pad_left, so the
    // padding on the right is what the last output reads past the input.
    let pad_right = (g.ow + g.kw - 1).saturating_sub(g.iw + g.pad_left);
    let pad_bottom = (g.oh + g.kh - 1).saturating_sub(g.ih + g.pad_top);
    let width = (g.iw + g.pad_left.max(pad_right)).max(g.ow);
    let rows = (g.ih + g.pad_top.max(pad_bottom)).max(g.oh);
    (width, rows)
}

/// The layout of one call's padded images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The padded width W (`shared_padding`): output pixel (i, j) is row i·W + j.
    pub width: usize,
    /// Padded rows per image (`shared_padding`).
    pub rows: usize,
    /// Pairs per pixel (channels padded to 32, halved).
    pub cp: usize,
    /// Pixels per padded image, rows·W: image n's output pixel (i, j) is row
    /// n·pixels + i·W + j, so that a product can run over several images (the rows between
    /// them are computed and dropped too).
    pub pixels: usize,
    /// Pixels stored after the last image: the rows the last tiles read past it (up to 16 rows
    /// of the product, shifted by the last tap).
    pub tail: usize,
}

/// A task's images as converted: `images` images from `first`, each its padded rows
/// `first_row..first_row + padded_rows` (all of them when several images go together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TaskImages {
    first: usize,
    images: usize,
    first_row: usize,
    padded_rows: usize,
}

impl Layout {
    pub fn of(shape: &ConvShape) -> Layout {
        let g = &shape.geometry;
        let (width, rows) = shared_padding(g);
        let cp = shape.c_in.next_multiple_of(BLOCK_CHANNELS) / 2;
        Layout { width, rows, cp, pixels: rows * width, tail: BLOCK_PAIRS + g.kw }
    }

    /// Images per product, where a whole image is short: enough for about `ROWS_PER_TASK` rows,
    /// so that the weights, read once per product, serve many rows. Depends on the shape only.
    pub fn images_per_task(&self) -> usize {
        (ROWS_PER_TASK / self.pixels).max(1)
    }
}

/// Rows of the product a task aims at when images are small (those that take the tiles: 1x1
/// kernels, or too few channels for Winograd), so that a task is not mostly overhead. (On the
/// airbench network's 256 -> 256 at 7x7, which Winograd now takes, it did not change the time.)
const ROWS_PER_TASK: usize = 512;

/// The prepared operands of one forward call: the weights, ready for any block of output rows
/// ([`Prepared::rows_into`]), which converts its own images.
pub struct Prepared<'a> {
    layout: Layout,
    shape: &'a ConvShape,
    x: &'a [f32],
    images: &'a PerThread<Aligned64<u32>>,
    packed: &'a PackedB,
    offsets: &'a [usize],
    b: &'a [f32],
    relu: bool,
    then: Epilogue<'a>,
}

/// Packs `w` (HWIO) for a forward pass of `shape` over `x`, its bias `b` (and ReLU), then
/// `then`, applied as each block is written (on the pooled rows where the output is pooled as
/// it is finished). Packed again only where `w` changed since the last call:
/// [`TilesScratch`].
pub fn prepare<'a>(
    x: &'a Tensor,
    w: &Tensor,
    b: &'a [f32],
    shape: &'a ConvShape,
    (relu, then): (bool, Epilogue<'a>),
    s: &'a mut TilesScratch,
) -> Prepared<'a> {
    let layout = Layout::of(shape);
    let g = &shape.geometry;
    let (c_in, c_out, cp) = (shape.c_in, shape.c_out, layout.cp);
    let taps = g.kh * g.kw;
    if s.packed_version != Some(w.version()) {
        // The weights, their channels padded with zero rows to 2·cp, then packed as k x c_out.
        s.w_rows.clear();
        s.w_rows.resize(taps * 2 * cp * c_out, 0.0);
        for (tap, rows) in s.w_rows.chunks_exact_mut(2 * cp * c_out).enumerate() {
            rows[..c_in * c_out].copy_from_slice(&w.data()[tap * c_in * c_out..][..c_in * c_out]);
        }
        s.packed.pack(taps * 2 * cp, c_out, &s.w_rows, false, Chain::Tiles);
        s.packed_version = Some(w.version());
    }
    s.offsets.clear();
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let pixel = ki * layout.width + kj;
            // In bfloat16 values: two a pair.
            s.offsets.extend((0..cp / BLOCK_PAIRS).map(|block| 2 * (pixel * cp + block * BLOCK_PAIRS)));
        }
    }
    Prepared { layout, shape, x: x.data(), images: s.images.for_current_pool(), packed: &s.packed, offsets: &s.offsets, b, relu, then }
}

impl Prepared<'_> {
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Output rows `out_rows` of images `images` (every row of each image when there are
    /// several) into `y_block` (those rows of y), through `buf` (the product's rows). The task
    /// converts the padded rows it reads into its worker's buffer first (while they are in
    /// that core's cache, and the batch's images are never all converted at once: they went
    /// through memory twice more).
    pub fn rows_into(&self, images: std::ops::Range<usize>, out_rows: std::ops::Range<usize>, y_block: &mut [f32], buf: &mut Vec<f32>) {
        let (g, c_out, layout) = (&self.shape.geometry, self.shape.c_out, self.layout);
        assert!(images.len() == 1 || out_rows == (0..g.oh), "conv_tiles: several images are taken whole");
        let task =
            TaskImages { first: images.start, images: images.len(), first_row: out_rows.start, padded_rows: out_rows.len() + g.kh - 1 };
        self.product(task, out_rows.len(), buf);
        let y_rows = y_block.chunks_exact_mut(g.ow * c_out);
        let product_rows = (0..task.images).flat_map(|k| (0..out_rows.len()).map(move |i| k * layout.pixels + i * layout.width));
        for (y_row, at) in y_rows.zip(product_rows) {
            finish_row(y_row, &buf[at * c_out..][..g.ow * c_out], self.b, self.relu);
            self.then.apply(y_row, c_out);
        }
    }

    /// Whole images `images`, convolved, then max-pooled as they are finished: each window
    /// (`pool`, on the convolution's output, every window inside it: [`pools_inside`]) of the
    /// product's pixels plus the bias (and ReLU) into `y_pooled` (those images' pooled
    /// outputs) and, unless `winners` is empty, the index in its image of the cell that won
    /// into `winners` (as `ops::pool`'s argmax, for the backward pass); the convolution's own
    /// output is never written. The same bits as `rows_into` followed by `ops::pool`'s max
    /// pooling: each cell finished as `finish_row` does, the winner chosen by `pool::wins` in
    /// the window's row-major order. The epilogue (`prepare`'s `then`) is applied to the
    /// pooled values, as the layers after the pooling would.
    pub fn pooled_into(
        &self,
        images: std::ops::Range<usize>,
        pool: &Geometry,
        y_pooled: &mut [f32],
        winners: &mut [u32],
        buf: &mut Vec<f32>,
    ) {
        let (g, c_out, layout) = (&self.shape.geometry, self.shape.c_out, self.layout);
        assert!(pools_inside(g, pool), "conv_tiles: a pooling window reads past the output");
        let task = TaskImages { first: images.start, images: images.len(), first_row: 0, padded_rows: g.oh + g.kh - 1 };
        self.product(task, g.oh, buf);
        // The window's cells from its first: in the product, and in the output image.
        let taps = || (0..pool.kh).flat_map(|ki| (0..pool.kw).map(move |kj| (ki, kj)));
        let cells: Vec<usize> = taps().map(|(ki, kj)| (ki * layout.width + kj) * c_out).collect();
        let arg_cells: Vec<u32> = taps().map(|(ki, kj)| ((ki * g.ow + kj) * c_out) as u32).collect();
        let row_len = pool.ow * c_out;
        let span = (pool.ow - 1) * pool.sw * c_out + cells[cells.len() - 1] + c_out;
        for (q, y_row) in y_pooled.chunks_exact_mut(row_len).enumerate() {
            let (k, i) = (q / pool.oh, q % pool.oh);
            let at = k * layout.pixels + i * pool.sh * layout.width;
            let row = PooledRow {
                stride: pool.sw * c_out,
                cells: &cells,
                arg_stride: pool.sw * c_out,
                arg_cells: &arg_cells,
                arg_first: (i * pool.sh * g.ow * c_out) as u32,
            };
            let winners_row = if winners.is_empty() { &mut [][..] } else { &mut winners[q * row_len..][..row_len] };
            finish_pooled_row(y_row, winners_row, &buf[at * c_out..][..span], &row, self.b, self.relu);
            self.then.apply(y_row, c_out);
        }
    }

    /// The task's product into `buf` (`out_rows` output rows of its last image, every row of
    /// the others): its padded rows converted, then multiplied by the packed weights. Image
    /// k's output row i is row k·pixels + (i - first_row)·W of the product.
    fn product(&self, task: TaskImages, out_rows: usize, buf: &mut Vec<f32>) {
        let (c_out, layout) = (self.shape.c_out, self.layout);
        let mut converted = self.images.get();
        self.convert(task, &mut converted);
        let rows = 0..(task.images - 1) * layout.pixels + out_rows * layout.width;
        buf.resize(rows.len() * c_out, 0.0);
        let live = live_pairs(self.shape.c_in, layout.cp);
        let a = BlockedRows { data: as_values(&converted), rs: 2 * layout.cp, offsets: self.offsets, live };
        gemm_bf16_blocks(&a, rows, self.packed, 0..self.offsets.len(), false, buf, c_out);
    }

    /// The task's padded rows in bf16 pairs into `dst`, image after image (every image but the
    /// last its `layout.rows`, the next image's top padding being its bottom; the last its rows
    /// down to the last one read), then `tail` pixels of zeros: each input row's pixels
    /// converted, zeros around them (only there: zeroing whole images first was 4.6% of a
    /// ResNet step).
    fn convert(&self, task: TaskImages, dst: &mut Aligned64<u32>) {
        let (g, c_in, layout) = (&self.shape.geometry, self.shape.c_in, self.layout);
        let (cp, kp) = (layout.cp, c_in.div_ceil(2));
        let row_len = layout.width * cp;
        let filled = ((task.images - 1) * layout.rows + task.padded_rows) * row_len;
        dst.resize(filled + layout.tail * cp, 0);
        let (rows, tail) = dst.split_at_mut(filled);
        tail.fill(0);
        for (q, row) in rows.chunks_exact_mut(row_len).enumerate() {
            let k = (q / layout.rows).min(task.images - 1);
            let padded_row = task.first_row + q - k * layout.rows;
            let Some(r) = padded_row.checked_sub(g.pad_top).filter(|&r| r < g.ih) else {
                row.fill(0);
                continue;
            };
            let x_img = &self.x[(task.first + k) * self.shape.input_len()..][..self.shape.input_len()];
            // W >= iw + pad_left: the row holds every input pixel.
            let (left, rest) = row.split_at_mut(g.pad_left * cp);
            let (inside, right) = rest.split_at_mut(g.iw * cp);
            left.fill(0);
            right.fill(0);
            super::bf16::rows_to_pairs(&x_img[r * g.iw * c_in..], g.iw, c_in, c_in, inside, cp);
            if kp < cp {
                inside.chunks_exact_mut(cp).for_each(|pixel| pixel[kp..].fill(0));
            }
        }
    }
}

simd_dispatch! {
    avx512:
    /// One output row: the product's pixels plus the bias, then ReLU if `relu` (a NaN stays
    /// NaN, as in `Activation::Relu`).
    fn finish_row => finish_row_plain(y_row: &mut [f32], product_row: &[f32], b: &[f32], relu: bool)
}

#[inline(always)]
fn finish_row_plain(y_row: &mut [f32], product_row: &[f32], b: &[f32], relu: bool) {
    for (y, p) in y_row.chunks_exact_mut(b.len()).zip(product_row.chunks_exact(b.len())) {
        for ((y, &p), &bias) in y.iter_mut().zip(p).zip(b) {
            let sum = p + bias;
            *y = if relu && sum < 0.0 { 0.0 } else { sum };
        }
    }
}

/// Whether every window of `pool` (a pooling resolved on a convolution's output `g.oh x
/// g.ow`) lies inside that output: no padding, and the last window ends by its last row and
/// column. Such a pooling can be taken as the convolution's output is finished
/// ([`Prepared::pooled_into`]).
pub fn pools_inside(g: &Geometry, pool: &Geometry) -> bool {
    (pool.ih, pool.iw) == (g.oh, g.ow)
        && pool.oh > 0
        && pool.ow > 0
        && (pool.pad_top, pool.pad_left) == (0, 0)
        && (pool.oh - 1) * pool.sh + pool.kh <= g.oh
        && (pool.ow - 1) * pool.sw + pool.kw <= g.ow
}

/// Where one pooled row's windows lie: in the product, `stride` values apart, a window's cells
/// at `cells` from its first; and in the convolution's output image (the winners' indices,
/// as `ops::pool` keeps them), `arg_stride` apart, the cells at `arg_cells`, the row's first
/// window at `arg_first`.
struct PooledRow<'a> {
    stride: usize,
    cells: &'a [usize],
    arg_stride: usize,
    arg_cells: &'a [u32],
    arg_first: u32,
}

simd_dispatch! {
    avx512:
    /// One pooled row: window after window, each cell's product plus the bias (then ReLU, as
    /// `finish_row`), the maximum kept by `pool::wins` (the first of equals; a NaN wins), and
    /// where `winners` is not empty the index of the cell that won (`ops::pool`'s argmax).
    fn finish_pooled_row => finish_pooled_row_plain(y_row: &mut [f32], winners: &mut [u32], product: &[f32], row: &PooledRow, b: &[f32], relu: bool)
}

#[inline(always)]
fn finish_pooled_row_plain(y_row: &mut [f32], winners: &mut [u32], product: &[f32], row: &PooledRow, b: &[f32], relu: bool) {
    if winners.is_empty() {
        pool_row::<false>(y_row, &mut [], product, row, b, relu)
    } else {
        pool_row::<true>(y_row, winners, product, row, b, relu)
    }
}

/// Channels of a window pooled at once: their maxima (and winners) stay in registers across
/// the window's cells and are stored once. (Kept in the output row instead, each cell's
/// conditional store was read back by the next cell, a store-forwarding stall: the pooled
/// rows were 7% of airbench's bf16 inference.)
const POOL_LANES: usize = 64;

#[inline(always)]
fn pool_row<const WINNERS: bool>(y_row: &mut [f32], winners: &mut [u32], product: &[f32], row: &PooledRow, b: &[f32], relu: bool) {
    let c = b.len();
    // Blocks of 64 channels, then of 16, then the rest one by one.
    let (wide, whole) = (c - c % POOL_LANES, c - c % 16);
    for (j, y) in y_row.chunks_exact_mut(c).enumerate() {
        let window = PoolWindow { values: &product[j * row.stride..], first_index: row.arg_first + (j * row.arg_stride) as u32 };
        let arg: &mut [u32] = if WINNERS { &mut winners[j * c..][..c] } else { &mut [] };
        for c0 in (0..wide).step_by(POOL_LANES) {
            pool_channels::<WINNERS, POOL_LANES>(y, arg, &window, row, b, c0, relu);
        }
        for c0 in (wide..whole).step_by(16) {
            pool_channels::<WINNERS, 16>(y, arg, &window, row, b, c0, relu);
        }
        for c0 in whole..c {
            pool_channels::<WINNERS, 1>(y, arg, &window, row, b, c0, relu);
        }
    }
}

/// One pooling window's cells in the product, and the output-image index of its first cell.
struct PoolWindow<'a> {
    values: &'a [f32],
    first_index: u32,
}

/// Channels c0..c0 + N of one window: each cell's product plus the bias (then ReLU, as
/// `finish_row`), the maximum kept by `pool::wins` (the first of equals; a NaN wins), cell by
/// cell in the window's order, and with `WINNERS` the index of the cell that won.
#[inline(always)]
fn pool_channels<const WINNERS: bool, const N: usize>(
    y: &mut [f32],
    arg: &mut [u32],
    window: &PoolWindow,
    row: &PooledRow,
    b: &[f32],
    c0: usize,
    relu: bool,
) {
    let finish = |p: f32, bias: f32| {
        let sum = p + bias;
        if relu && sum < 0.0 {
            0.0
        } else {
            sum
        }
    };
    let bias: &[f32; N] = b[c0..][..N].try_into().expect("N channels");
    let first: &[f32; N] = window.values[row.cells[0] + c0..][..N].try_into().expect("N channels");
    let mut best: [f32; N] = std::array::from_fn(|l| finish(first[l], bias[l]));
    let index = |arg_cell: u32, l: usize| window.first_index + arg_cell + (c0 + l) as u32;
    let mut won: [u32; N] = std::array::from_fn(|l| if WINNERS { index(row.arg_cells[0], l) } else { 0 });
    for (&cell, &arg_cell) in row.cells[1..].iter().zip(&row.arg_cells[1..]) {
        let values: &[f32; N] = window.values[cell + c0..][..N].try_into().expect("N channels");
        for l in 0..N {
            let v = finish(values[l], bias[l]);
            let wins = super::pool::wins(v, best[l]);
            best[l] = if wins { v } else { best[l] };
            if WINNERS {
                won[l] = if wins { index(arg_cell, l) } else { won[l] };
            }
        }
    }
    y[c0..][..N].copy_from_slice(&best);
    if WINNERS {
        arg[c0..][..N].copy_from_slice(&won);
    }
}

/// Pairs of each block of 32 channels that can be non-zero (`BlockedRows::live`): with one
/// block a tap (at most 32 channels), the input's pairs rounded up to even (the channels past
/// them are zero in the images and the weights); with several, all 16.
fn live_pairs(c_in: usize, cp: usize) -> usize {
    if cp == BLOCK_PAIRS {
        c_in.div_ceil(2).next_multiple_of(2)
    } else {
        BLOCK_PAIRS
    }
}

const _: () = assert!(cfg!(target_endian = "little"), "pairs keep the lower k in the low half");

/// Pairs as their bfloat16 values (the lower k's first: the low half, little-endian).
pub(crate) fn as_values(pairs: &[u32]) -> &[u16] {
    // SAFETY: u16 has no invalid bits and an alignment that divides u32's; the slice covers
    // exactly the pairs' bytes, borrowed as long as they are.
    unsafe { std::slice::from_raw_parts(pairs.as_ptr() as *const u16, 2 * pairs.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::Padding;

    #[test]
    fn stride_one_with_sixteen_channels_or_more_applies() {
        let same3 = Window::new(3, 3, 1, 1, Padding::Same);
        assert!(applies(&same3, 16) && applies(&same3, 256));
        assert!(!applies(&same3, 15));
        assert!(!applies(&Window::new(3, 3, 2, 2, Padding::Same), 64));
        assert!(applies(&Window::new(2, 2, 1, 1, Padding::Valid), 24));
    }

    #[test]
    fn the_tiles_pay_where_their_products_cost_less_than_winograds_transforms_and_products() {
        let same3 = Window::new(3, 3, 1, 1, Padding::Same);
        let pays_at = |side: usize, c_in, c_out| pays(&Geometry::new("test", side, side, &same3).unwrap(), c_in, c_out);
        // The configs' layers all pay: 256 -> 256 at 7x7 (9·64·65536 = 37.7 M against
        // 4·36·(65536 + 600·512) = 53.7 M) and at 3x3 (9.4 M against 13.4 M), 128 -> 128 at
        // 8x8 (11.9 M against 24.5 M), the larger images with fewer channels.
        assert!(pays_at(7, 256, 256) && pays_at(3, 256, 256) && pays_at(8, 128, 128) && pays_at(4, 128, 128));
        assert!(pays_at(15, 64, 256) && pays_at(16, 32, 64) && pays_at(31, 24, 64) && pays_at(32, 64, 64) && pays_at(32, 256, 256));
        // Far wider layers do not: the products outweigh the transforms (1024 -> 1024 at 7x7:
        // 604 M against 328 M).
        assert!(!pays_at(7, 1024, 1024));
        // Equal costs pay: at 7x7, 576 c_in c_out against 144 (c_in c_out + 600 (c_in + c_out)),
        // equal where (c_in - 200)(c_out - 200) = 40,000: 300 -> 600 is 103,680,000 either way;
        // one output channel more tips it to Winograd.
        assert!(pays_at(7, 300, 600) && !pays_at(7, 300, 601));
        // Kernels without a Winograd variant always take the tiles.
        assert!(pays(&Geometry::new("test", 2, 2, &Window::new(1, 1, 1, 1, Padding::Valid)).unwrap(), 256, 256));
    }

    #[test]
    fn neighbouring_rows_and_images_share_their_padding() {
        let geometry = |side: usize, k: usize, padding| Geometry::new("test", side, side, &Window::new(k, k, 1, 1, padding)).unwrap();
        assert_eq!(shared_padding(&geometry(7, 3, Padding::Same)), (8, 8));
        assert_eq!(shared_padding(&geometry(15, 3, Padding::Same)), (16, 16));
        assert_eq!(shared_padding(&geometry(32, 5, Padding::Same)), (34, 34));
        // No padding: the rows as wide as the input (the outputs 31 of them).
        assert_eq!(shared_padding(&geometry(32, 2, Padding::Valid)), (32, 32));
        // A 2x2 SAME kernel pads only after: one column, one row.
        assert_eq!(shared_padding(&geometry(6, 2, Padding::Same)), (7, 7));
        // Padding past the kernel: 9 outputs a row need 9 pixels, more than 5 + 3.
        let wide = Padding::Explicit { top: 3, bottom: 3, left: 3, right: 3 };
        assert_eq!(shared_padding(&geometry(5, 3, wide)), (9, 9));
        // Uneven: 1 above, 2 below, 0 left, 2 right on 4x4 with 3x3: 5 x 4 outputs.
        let uneven = Padding::Explicit { top: 1, bottom: 2, left: 0, right: 2 };
        assert_eq!(shared_padding(&geometry(4, 3, uneven)), (6, 6));
    }

    #[test]
    fn the_layout_pads_width_channels_and_the_rows_the_tiles_read_past() {
        let shape = ConvShape::of(&[2, 7, 7, 40], &[3, 3, 40, 8], None, &Window::new(3, 3, 1, 1, Padding::Same)).unwrap();
        let layout = Layout::of(&shape);
        assert_eq!(layout, Layout { width: 8, rows: 8, cp: 32, pixels: 8 * 8, tail: 16 + 3 });
        assert_eq!(layout.images_per_task(), 512 / 64);
    }
}
