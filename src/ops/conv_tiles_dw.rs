//! dW of a stride-1 convolution in bf16 on the tiles, without a column matrix:
//!
//! ```text
//!   dW[ki, kj, ci, co] = sum over n, i, j of x_pad[n, i + ki, j + kj, ci] dz[n, i, j, co]
//! ```
//!
//! Laid out as the forward pass lays its images out (`conv_tiles::shared_padding`: each row's
//! right padding is the next row's left, each image's bottom the next one's top), on a width
//! Wd rounded up to even, the images one after another (S = rows·Wd pixels each), output pixel
//! (n, i, j) is p = n·S + i·Wd + j, and tap (ki, kj) reads the padded images at
//! p + ki·Wd + kj. So for each tap
//!
//! ```text
//!   dW[ki, kj] (C_in x C_out) = X_tap (C_in x P) · DZ (P x C_out),   P: every pixel p
//! ```
//!
//! DZ is the output gradient, zero at the pixels that are not outputs (the padding's columns
//! and rows: whatever X holds there then adds nothing), in pairs of neighbouring pixels: the
//! right operand, written once and shared by the taps. X is the padded images transposed to one
//! row of bf16 values per channel, read in place at the tap's shift (`gemm_bf16_blocks`; a
//! pair may start at an odd pixel). Against im2col it writes no column matrix (kh·kw times the
//! input) and transposes nothing larger than the input; it multiplies the padding's pixels
//! too (S / (oh·ow): 1.14 at 15x15, 1.31 at 7x7; 1.36 and 1.84 with each image padded on every
//! side).
//!
//! The images go in groups of 32 (a distributed share unit), each group's dW one chain per
//! output (`gemm_bf16`'s, over the group's pixels in order), the groups' results added in
//! order in float32, as `winograd_dw::weight_grad_summed` adds its groups: the same bits on any
//! number of threads or ranks. Within a group the (tap, 32 channels) products are shared out
//! as one contiguous run per worker thread, and each worker goes pass by pass over 2,048
//! pixels through its run, every product continuing its chains from the last pass (exactly),
//! so that the pass's pairs of DZ stay in the core's cache while its taps read them. db is
//! summed while DZ is paired: each image's pixels in order, the images then added in order.
//! On AVX512-BF16 and AMX the images are transposed by blocks of 16 pixels x 16 channels in
//! registers (the same rounding, the same bits as the portable loop).
//!
//! The winograd family runs the same layout on its own chain (`Chain::Dot`, VDPBF16PS's: each
//! output one chain over the group's pixel pairs), where its dW is not Winograd: the blocks of
//! a tap are evenly spaced, so the dot kernel reads X's rows in place, unaligned at an odd
//! shift (`gemm_bf16_blocks`).

use rayon::prelude::*;

use super::aligned::Aligned64;
use super::bf16::{interleave_rows, rows_to_pairs};
use super::column_sums::add_column_sums;
use super::conv_output_grad::OutputGrad;
use super::conv_shape::ConvShape;
use super::conv_tiles::{as_values, shared_padding};
use super::gemm_bf16::{gemm_bf16_blocks, BlockedRows, Chain, PackedB, BLOCK_PAIRS};
use super::window::{Geometry, Window};
use crate::dist::IMAGES_PER_SHARE_UNIT;

/// Images per group: one chain per output over their pixels.
const GROUP_IMAGES: usize = 32;
const _: () = assert!(IMAGES_PER_SHARE_UNIT.is_multiple_of(GROUP_IMAGES));

/// Pixels per block of k (16 pairs), and blocks per pass: 2,048 pixels, whose pairs of DZ
/// (1 MB for 256 channels) stay in the core's cache while the taps read them (passes of 512
/// pixels ran 1-6% slower: c's tiles went through memory four times as often).
const BLOCK_PIXELS: usize = 2 * BLOCK_PAIRS;
const PASS_BLOCKS: usize = 64;

/// Rows of dW (input channels) per task: two tiles on AMX; on VDPBF16PS's chain one tile's
/// worth, or half of it for 16 channels or fewer, so that a layer's 9 taps make 18 tasks, not
/// 9 (on 2 threads 5 against 4: the ResNet's 32 -> 64 at 16x16 dW 5.1-5.7 -> 4.7-4.8 ms on a
/// Zen 4, 32 -> 32 8% faster). Each output's chain is the same whoever runs it.
fn panel_rows(chain: Chain, c_in: usize) -> usize {
    match chain {
        Chain::Tiles => 32,
        Chain::Dot if c_in > 16 => 16,
        Chain::Dot => 8,
    }
}

/// Whether dW of a convolution with `window` over `shape` goes this way in bf16: stride 1 with
/// 16 channels or more on each side (a tile's rows, and its columns).
pub fn applies(window: &Window, shape: &ConvShape) -> bool {
    (window.sh, window.sw) == (1, 1) && shape.c_in >= 16 && shape.c_out >= 16
}

/// Whether dW may go this way on VDPBF16PS's chain (the winograd family), whose kernel takes
/// any number of rows (input channels): stride 1 with 16 output channels or more (a vector's
/// columns).
pub fn applies_on_dot(window: &Window, shape: &ConvShape) -> bool {
    (window.sh, window.sw) == (1, 1) && shape.c_out >= 16
}

/// Where one group's pixels lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// The even padded width Wd.
    width: usize,
    /// Pixels per padded image, S = rows·Wd.
    image: usize,
    /// The group's pixels, rounded up to whole blocks: k of the products.
    pixels: usize,
    /// Values per channel row of X: the pixels, and the furthest any tap reads past them.
    row_len: usize,
}

impl Layout {
    fn of(g: &Geometry, images: usize) -> Layout {
        let (width, rows) = shared_padding(g);
        let width = width.next_multiple_of(2);
        let image = rows * width;
        let pixels = (images * image).next_multiple_of(BLOCK_PIXELS);
        let reach = (g.kh - 1) * width + g.kw - 1;
        // Rows of whole cache lines (32 values), so that a block at a multiple of 32 is one.
        Layout { width, image, pixels, row_len: (pixels + reach).next_multiple_of(BLOCK_PIXELS) }
    }

    /// The shift of tap (ki, kj), in pixels.
    fn shift(&self, ki: usize, kj: usize) -> usize {
        ki * self.width + kj
    }
}

/// A layer's buffers: the transposed images, the output gradient's pairs, each tap's block
/// offsets, one group's dW and db, and, in a distributed step, each group's dW and db until
/// the ranks before have summed theirs.
#[derive(Default)]
pub struct TilesDwWork {
    x_rows: Aligned64<u16>,
    dz_pairs: PackedB,
    offsets: Vec<usize>,
    dz: Vec<f32>,
    /// Each image's db (its pixels' dz summed in order).
    db_images: Vec<f32>,
    group: Vec<f32>,
    partials: Vec<Vec<f32>>,
}

/// dW (`[kh, kw, C_in, C_out]`) and db (`[C_out]`) over the whole batch (x: `[N, ih, iw,
/// C_in]`, the gradient at the output `dy`), written (not added), for a convolution where
/// [`applies`] holds. db is the groups' sums of dz in float32 (each image's, added in order),
/// added in group order.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad(
    x: &[f32],
    dy: OutputGrad,
    shape: &ConvShape,
    chain: Chain,
    work: &mut TilesDwWork,
    d_weight: &mut [f32],
    d_bias: &mut [f32],
) {
    let (n, c_in, c_out) = (shape.batch, shape.c_in, shape.c_out);
    let dw_len = shape.geometry.kh * shape.geometry.kw * c_in * c_out;
    let mut partials = std::mem::take(&mut work.partials);
    let groups = n.div_ceil(GROUP_IMAGES);
    if crate::dist::in_group() {
        if partials.len() < groups {
            partials.resize_with(groups, Vec::new);
        }
        for (index, partial) in partials[..groups].iter_mut().enumerate() {
            partial.clear();
            partial.resize(dw_len + c_out, 0.0);
            group_grads(x, dy, shape, index * GROUP_IMAGES, chain, work, partial);
        }
        crate::dist::ordered_fold(&mut [d_weight, d_bias], |acc| {
            let [acc_w, acc_b] = acc else { unreachable!("two buffers") };
            for partial in &partials[..groups] {
                add_into(acc_w, &partial[..dw_len]);
                add_into(acc_b, &partial[dw_len..]);
            }
        });
    } else {
        d_weight.fill(0.0);
        d_bias.fill(0.0);
        let mut group = std::mem::take(&mut work.group);
        group.resize(dw_len + c_out, 0.0);
        for first in (0..n).step_by(GROUP_IMAGES) {
            group_grads(x, dy, shape, first, chain, work, &mut group);
            add_into(d_weight, &group[..dw_len]);
            add_into(d_bias, &group[dw_len..]);
        }
        work.group = group;
    }
    work.partials = partials;
}

/// `acc += part`, in parallel blocks (each value one addition: the threads change nothing).
fn add_into(acc: &mut [f32], part: &[f32]) {
    acc.par_chunks_mut(1 << 14).zip(part.par_chunks(1 << 14)).for_each(|(a, p)| a.iter_mut().zip(p).for_each(|(a, v)| *a += v));
}

/// The group of images from `first` (up to `GROUP_IMAGES`): its dW then its db into `out`.
fn group_grads(x: &[f32], dy: OutputGrad, shape: &ConvShape, first: usize, chain: Chain, work: &mut TilesDwWork, out: &mut [f32]) {
    let (g, c_in, c_out) = (&shape.geometry, shape.c_in, shape.c_out);
    let images = GROUP_IMAGES.min(shape.batch - first);
    let layout = Layout::of(g, images);
    let (in_size, out_size) = (shape.input_len(), shape.output_len());
    let TilesDwWork { x_rows, dz_pairs, offsets, dz, db_images, .. } = work;
    let dz = dy.images(first, images, out_size, dz);
    let (dw, db) = out.split_at_mut(g.kh * g.kw * c_in * c_out);
    db_images.clear();
    db_images.resize(images * c_out, 0.0);
    // Side by side: the transpose runs a task per 16 input channels, one alone for an RGB or
    // 16-channel layer, while the other threads pair dz image by image.
    rayon::join(
        || transpose_images(&x[first * in_size..][..images * in_size], shape, images, layout, x_rows),
        || pair_output_grad(dz, shape, images, layout, (dz_pairs, chain), db_images),
    );
    // db: the images' sums added in order.
    db.copy_from_slice(&db_images[..c_out]);
    for image in db_images.chunks_exact(c_out).skip(1) {
        db.iter_mut().zip(image).for_each(|(d, v)| *d += v);
    }
    let blocks = layout.pixels / BLOCK_PIXELS;
    offsets.clear();
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let shift = layout.shift(ki, kj);
            offsets.extend((0..blocks).map(|j| j * BLOCK_PIXELS + shift));
        }
    }
    let (x_rows, dz_pairs, offsets) = (&*x_rows, &*dz_pairs, &*offsets);
    // The (tap, panel) products, shared out as one contiguous run per worker, each going pass
    // by pass through its run: one parallel region a group (one a pass cost more than the
    // products of a pass at 24 or 64 channels). Every output's chain is the same whoever runs it.
    let panel = panel_rows(chain, c_in);
    let mut tasks: Vec<(usize, usize, &mut [f32])> = dw
        .chunks_mut(c_in * c_out)
        .enumerate()
        .flat_map(|(tap, dw_tap)| dw_tap.chunks_mut(panel * c_out).enumerate().map(move |(index, c)| (tap, index, c)))
        .collect();
    let per_worker = tasks.len().div_ceil(rayon::current_num_threads()).max(1);
    tasks.par_chunks_mut(per_worker).for_each(|run| {
        for pass in (0..blocks).step_by(PASS_BLOCKS) {
            let range = pass..(pass + PASS_BLOCKS).min(blocks);
            for (tap, index, c) in run.iter_mut() {
                let a = BlockedRows { data: x_rows, rs: layout.row_len, offsets: &offsets[*tap * blocks..][..blocks], live: BLOCK_PAIRS };
                let rows = *index * panel..*index * panel + c.len() / c_out;
                gemm_bf16_blocks(&a, rows, dz_pairs, range.clone(), pass > 0, c, c_out);
            }
        }
    });
}

/// X: the group's padded images as one row of bf16 values per input channel (value
/// `p` of row ci the pixel p of the layout; zero in the padding and past the images), with
/// rows up to a multiple of 16 (a tile's rows; zero). By blocks of 16 channels and 16 pixels:
/// converted to pairs by the vector converter (`bf16::rows_to_pairs`), then transposed on the
/// stack, so that each channel row is written 16 pixels at a time.
fn transpose_images(x: &[f32], shape: &ConvShape, images: usize, layout: Layout, rows: &mut Aligned64<u16>) {
    let (g, c_in) = (&shape.geometry, shape.c_in);
    const LANES: usize = 16;
    rows.resize(c_in.next_multiple_of(LANES) * layout.row_len, 0);
    let in_size = shape.input_len();
    let row_len = layout.row_len;
    rows.par_chunks_mut(LANES * row_len).enumerate().for_each(|(block, rows)| {
        let (c0, lanes) = (block * LANES, LANES.min(c_in - block * LANES));
        rows[lanes * row_len..].fill(0);
        let mut pairs = [0u32; LANES * LANES / 2];
        for img in 0..images {
            let x_img = &x[img * in_size..][..in_size];
            // The image's padding: each lane's padded image zeroed whole (in cache), then its
            // pixels written over it. A fill of each row's border instead (a value or two at a
            // time) made memset 1.3% of the ResNet's bf16 step, in call overhead.
            (0..lanes).for_each(|lane| rows[lane * row_len + img * layout.image..][..layout.image].fill(0));
            for r in g.pad_top..g.pad_top + g.ih {
                let base = img * layout.image + r * layout.width;
                let row = |lane: usize| lane * row_len + base;
                let x_row = &x_img[(r - g.pad_top) * g.iw * c_in..][..g.iw * c_in];
                #[cfg(target_arch = "x86_64")]
                if crate::ops::simd::avx512bf16_allowed() {
                    let dst = &mut rows[base + g.pad_left..];
                    assert!(dst.len() >= (lanes - 1) * row_len + g.iw && c0 + lanes <= c_in);
                    // SAFETY: the level allows AVX512-BF16; x_row holds iw pixels of c_in
                    // channels (c0 + lanes <= c_in) and dst lanes rows of iw values (asserted).
                    unsafe { hw::transpose_row(x_row.as_ptr().add(c0), g.iw, c_in, lanes, dst.as_mut_ptr(), row_len) };
                    continue;
                }
                for j0 in (0..g.iw).step_by(LANES) {
                    let count = LANES.min(g.iw - j0);
                    rows_to_pairs(&x_row[j0 * c_in + c0..], count, lanes, c_in, &mut pairs, LANES / 2);
                    let values = as_values(&pairs);
                    for lane in 0..lanes {
                        let dst = &mut rows[row(lane) + g.pad_left + j0..][..count];
                        dst.iter_mut().enumerate().for_each(|(px, d)| *d = values[px * LANES + lane]);
                    }
                }
            }
        }
        for lane in 0..lanes {
            rows[lane * row_len + images * layout.image..(lane + 1) * row_len].fill(0);
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use crate::ops::bf16::lane_mask;
    use std::arch::x86_64::*;

    /// `lanes` (<= 16) channel rows of bf16 from one image row of `pixels` pixels (NHWC,
    /// `c_in` floats a pixel, `x` at the first channel): channel c's pixel j, rounded to
    /// nearest even as `bf16::to_bf16`, to `dst[c * row_len + j]`. By blocks of 16 pixels: one
    /// load a pixel, a 16 x 16 transpose in registers, one conversion and store a channel.
    ///
    /// SAFETY: the CPU has AVX-512 F, BW, VL and BF16; `x` reads `(pixels - 1)·c_in + lanes`
    /// floats, `dst` writes `(lanes - 1)·row_len + pixels` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn transpose_row(x: *const f32, pixels: usize, c_in: usize, lanes: usize, dst: *mut u16, row_len: usize) {
        for j0 in (0..pixels).step_by(16) {
            let count = (pixels - j0).min(16);
            let rows: [__m512; 16] = std::array::from_fn(|px| {
                if px < count {
                    _mm512_maskz_loadu_ps(lane_mask(lanes), x.add((j0 + px) * c_in))
                } else {
                    _mm512_setzero_ps()
                }
            });
            let columns = transpose16(rows);
            let mask = lane_mask(count);
            for (lane, column) in columns.iter().enumerate().take(lanes) {
                let h = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(*column));
                _mm256_mask_storeu_epi16(dst.add(lane * row_len + j0) as *mut i16, mask, h);
            }
        }
    }

    /// The 16 x 16 transpose: `rows[r][c]` -> `out[c][r]`, by 32-bit, then 64-bit interleaves
    /// within 128-bit lanes, then two exchanges of whole lanes.
    #[inline(always)]
    unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved (columns 0,1 | 4,5 | 8,9 | 12,13 and 2,3 | ...).
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // u[4g + q]: rows 4g..4g+3 of columns q, q + 4, q + 8, q + 12 (one 128-bit lane each).
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (g, q) = (i / 4, i % 4);
            let (a, b) = (_mm512_castps_pd(t[4 * g + q / 2]), _mm512_castps_pd(t[4 * g + q / 2 + 2]));
            _mm512_castpd_ps(if q % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
        });
        let mut out = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            // Lanes (column q, q + 8) and (q + 4, q + 12) of rows 0-7, then of rows 8-15.
            let v0 = _mm512_shuffle_f32x4::<0x88>(u[q], u[4 + q]);
            let v1 = _mm512_shuffle_f32x4::<0xdd>(u[q], u[4 + q]);
            let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + q], u[12 + q]);
            let v3 = _mm512_shuffle_f32x4::<0xdd>(u[8 + q], u[12 + q]);
            out[q] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
            out[q + 8] = _mm512_shuffle_f32x4::<0xdd>(v0, v2);
            out[q + 4] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
            out[q + 12] = _mm512_shuffle_f32x4::<0xdd>(v1, v3);
        }
        out
    }
}

/// DZ: the group's output gradient (`dz`, [images, oh, ow, C_out]) in pairs of neighbouring
/// pixels of the layout, zero at every pixel that is not an output; and each image's db
/// (`db_images`, [images, C_out], zero on entry): its pixels' dz summed in order, each row
/// while the pairing has it in cache.
fn pair_output_grad(dz: &[f32], shape: &ConvShape, images: usize, layout: Layout, packed: (&mut PackedB, Chain), db_images: &mut [f32]) {
    let (packed, chain) = packed;
    let (g, c_out) = (&shape.geometry, shape.c_out);
    let (data, ld) = packed.pairs_mut(layout.pixels, c_out);
    let (row_pairs, image_pairs) = (layout.width / 2, layout.image / 2);
    let (filled, tail) = data.split_at_mut(images * image_pairs * ld);
    tail.fill(0);
    let per_image = filled.par_chunks_mut(image_pairs * ld).zip(dz.par_chunks(shape.output_len()));
    per_image.zip(db_images.par_chunks_mut(c_out)).for_each(|((pairs, dz_img), db)| {
        for (i, row) in pairs.chunks_exact_mut(row_pairs * ld).enumerate() {
            if i < g.oh {
                let written = g.ow.div_ceil(2) * ld;
                let dz_row = &dz_img[i * g.ow * c_out..][..g.ow * c_out];
                interleave_rows(dz_row, g.ow, c_out, c_out, &mut row[..written], ld);
                row[written..].fill(0);
                add_column_sums(dz_row, db);
            } else {
                row.fill(0);
            }
        }
    });
    packed.finish(chain);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::Padding;

    #[test]
    fn the_layout_shares_the_padding_at_an_even_width_in_whole_blocks_and_reaches_the_last_tap() {
        let g = Geometry::new("test", 7, 7, &Window::new(3, 3, 1, 1, Padding::Same)).unwrap();
        let layout = Layout::of(&g, 3);
        // The padding shared: 7 + 1 = 8 wide, 8 rows; 3 images = 192 pixels (whole blocks);
        // reach 2·8 + 2 = 18 -> 210 -> 224.
        assert_eq!(layout, Layout { width: 8, image: 64, pixels: 192, row_len: 224 });
        assert_eq!(layout.shift(2, 1), 17);
        // 16 + 1 = 17 -> 18 wide, 17 rows; 2 images 612 -> 640 pixels; reach 2·18 + 2.
        let g = Geometry::new("test", 16, 16, &Window::new(3, 3, 1, 1, Padding::Same)).unwrap();
        assert_eq!(Layout::of(&g, 2), Layout { width: 18, image: 17 * 18, pixels: 640, row_len: 704 });
    }

    #[test]
    fn stride_one_with_sixteen_channels_each_side_applies() {
        let shape = |c_in, c_out, stride| {
            let w = Window::new(3, 3, stride, stride, Padding::Same);
            (ConvShape::of(&[2, 8, 8, c_in], &[3, 3, c_in, c_out], None, &w).unwrap(), w)
        };
        let (s, w) = shape(16, 16, 1);
        assert!(applies(&w, &s));
        let (s, w) = shape(15, 64, 1);
        assert!(!applies(&w, &s));
        let (s, w) = shape(64, 15, 1);
        assert!(!applies(&w, &s));
        let (s, w) = shape(64, 64, 2);
        assert!(!applies(&w, &s));
    }
}
