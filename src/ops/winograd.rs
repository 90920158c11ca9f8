//! 5x5 stride-1 convolution by Winograd's minimal filtering, F(2x2, 5x5) (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016): the forward pass of the seed network's
//! second convolution with 2.8 times fewer multiplications than im2col + GEMM.
//!
//! Each 2x2 block of output comes from a 6x6 tile d of the (zero-padded) input:
//!   Y = A^T [ U ⊙ V ] A,   U = G g G^T (the 5x5 kernel g, transformed to 6x6),
//!                          V = B^T d B (the input tile, transformed to 6x6)
//! 36 multiplications per input and output channel instead of 2 x 2 x 25 = 100. Summed over
//! the input channels, the elementwise product becomes 36 matrix products, one per position ξ
//! of the 6x6 tile:  M[ξ] (tiles x C_out) = V[ξ] (tiles x C_in) · U[ξ] (C_in x C_out).
//! The interpolation points are 0, 1, -1, 2, -2 and infinity; the unit test below checks the
//! matrices against the direct correlation in exact arithmetic.
//!
//! Same shapes and results as `conv2d` (within rounding: the transforms scale values by up to
//! 5 and 1/24, so outputs differ from im2col's in the last bits; the tests bound it). Used for
//! the forward pass and for the input gradient, which for stride 1 is such a convolution too
//! (`conv2d::conv2d_backward_into`); `conv2d::algorithm` decides where it applies. dW and db stay
//! with im2col.

use rayon::prelude::*;

use super::conv_shape::ConvShape;
use super::gemm::gemm;
use super::simd::simd_dispatch;
use super::window::Geometry;
use crate::chunks::IMAGES_PER_CHUNK as CHUNK;
use crate::tensor::Tensor;
use crate::threads::PerThread;

/// Output rows and columns per tile, and the tile's size in the input.
const OUT: usize = 2;
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

// A^T and B^T as matrices, for readers and the tests; `at6` and `bt6` compute them with shared
// terms.
#[cfg_attr(not(test), allow(dead_code))]
const AT: [[f32; TILE]; OUT] = [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 1.0]];

const G: [[f32; 5]; TILE] = [
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
    u_version: Option<u64>,
    v: Vec<f32>,
    m: Vec<f32>,
    thread_vm: PerThread<(Vec<f32>, Vec<f32>)>,
}

/// y = conv(x, w) + b (then ReLU if `relu`) for a 5x5 stride-1 convolution of `shape`; `y`
/// already has its shape [n, oh, ow, c_out].
pub(crate) fn conv5x5_forward_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    shape: &ConvShape,
    relu: bool,
    y: &mut Tensor,
    scratch: &mut WinogradScratch,
) {
    let ConvShape { geometry: ref g, c_in, c_out, .. } = *shape;
    let n = shape.batch;
    let s = Shape { g: *g, c_in, c_out, tiles_h: g.oh.div_ceil(OUT), tiles_w: g.ow.div_ceil(OUT) };
    if scratch.u_version != Some(w.version()) {
        transform_weights(w.data(), c_in, c_out, &mut scratch.u);
        scratch.u_version = Some(w.version());
    }
    let u = &scratch.u;
    let (in_size, out_size) = (g.ih * g.iw * c_in, g.oh * g.ow * c_out);
    let tiles = s.tiles_h * s.tiles_w;
    let y_rows = OUT * g.ow * c_out; // the output rows of one row of tiles
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
                    gemm(
                        rows,
                        c_in,
                        c_out,
                        &v[xi * rows * c_in..][..rows * c_in],
                        false,
                        &u[xi * c_in * c_out..][..c_in * c_out],
                        false,
                        0.0,
                        m_plane,
                    );
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
        gemm(rows, c_in, c_out, &v[xi * rows * c_in..][..rows * c_in], false, &u[xi * c_in * c_out..][..c_in * c_out], false, 0.0, m_plane);
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
/// w is HWIO [5][5][c_in][c_out], so g[k][l] is a contiguous block of c_in * c_out values, and
/// U comes out as [36][c_in][c_out], one GEMM operand per position.
fn transform_weights(w: &[f32], c_in: usize, c_out: usize, u: &mut Vec<f32>) {
    let block = c_in * c_out;
    u.resize(POSITIONS * block, 0.0);
    u.par_chunks_mut(TILE * block).enumerate().for_each(|(a, u_row)| {
        let mut gg = vec![0.0f32; 5 * block];
        weight_row(w, a, &mut gg, u_row);
    });
}

simd_dispatch! {
    /// Row `a` of U: (G g)[a] (5 blocks), then U[a][b] for the 6 columns b.
    fn weight_row => weight_row_plain(w: &[f32], a: usize, gg: &mut [f32], u_row: &mut [f32])
}

#[inline(always)]
fn weight_row_plain(w: &[f32], a: usize, gg: &mut [f32], u_row: &mut [f32]) {
    let block = gg.len() / 5;
    for (l, out) in gg.chunks_exact_mut(block).enumerate() {
        combine(out, G[a].iter().enumerate().map(|(k, &coef)| (coef, &w[(k * 5 + l) * block..][..block])));
    }
    for (bcol, out) in u_row.chunks_exact_mut(block).enumerate() {
        combine(out, G[bcol].iter().enumerate().map(|(l, &coef)| (coef, &gg[l * block..][..block])));
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
        // Gather the 6x6 tile whose top-left input pixel is (2ti - pad_top, 2tj - pad_left);
        // pixels outside the image are the zero padding.
        let (r0, s0) = ((OUT * ti) as isize - g.pad_top as isize, (OUT * tj) as isize - g.pad_left as isize);
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
    /// output rows (two, or one when oh is odd and this is the last).
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
    let (g, c) = (&s.g, s.c_out);
    let TileWork { patch, half } = work;
    let half = &mut half[..OUT * TILE * c];
    let out_rows = y_part.len() / (g.ow * c);
    for tj in 0..s.tiles_w {
        let m_at = |xi: usize| &m[(xi * rows + first_row + tj) * c..][..c];
        // half[i][b] = sum_a AT[i][a] M[a][b];  y[i][j] = sum_b half[i][b] AT[j][b] + bias.
        for bcol in 0..TILE {
            let col: [&[f32]; TILE] = six(|a| m_at(a * TILE + bcol));
            let (h0, h1) = half.split_at_mut(TILE * c);
            at6(col, [&mut h0[bcol * c..][..c], &mut h1[bcol * c..][..c]], None, false);
        }
        for i in 0..out_rows {
            let row: [&[f32]; TILE] = six(|b| &half[(i * TILE + b) * c..][..c]);
            let col = OUT * tj;
            if col + 1 < g.ow {
                let (y0, y1) = y_part[(i * g.ow + col) * c..][..2 * c].split_at_mut(c);
                at6(row, [y0, y1], Some(bias), relu);
            } else {
                // The last tile of an odd width: only its first column is inside the output.
                at6(row, [&mut y_part[(i * g.ow + col) * c..][..c], &mut patch[..c]], Some(bias), relu);
            }
        }
    }
}

/// o[i] = sum_a AT[i][a] m[a] (+ bias, then ReLU) for six channel vectors, in one pass:
///   o0 = m0 + m1 + m2 + m3 + m4,   o1 = (m1 - m2) + 2 (m3 - m4) + m5
#[inline(always)]
fn at6(m: [&[f32]; TILE], o: [&mut [f32]; OUT], bias: Option<&[f32]>, relu: bool) {
    let c = o[0].len();
    let [m0, m1, m2, m3, m4, m5] = m;
    let (m0, m1, m2, m3, m4, m5) = (&m0[..c], &m1[..c], &m2[..c], &m3[..c], &m4[..c], &m5[..c]);
    let [o0, o1] = o;
    let (o0, o1) = (&mut o0[..c], &mut o1[..c]);
    for ch in 0..c {
        let (m0, m1, m2, m3, m4, m5) = (m0[ch], m1[ch], m2[ch], m3[ch], m4[ch], m5[ch]);
        let (mut a, mut b) = (m0 + m1 + m2 + m3 + m4, (m1 - m2) + 2.0 * (m3 - m4) + m5);
        if let Some(bias) = bias {
            a += bias[ch];
            b += bias[ch];
        }
        if relu {
            // As Activation::Relu: NaN passes through.
            a = if a < 0.0 { 0.0 } else { a };
            b = if b < 0.0 { 0.0 } else { b };
        }
        o0[ch] = a;
        o1[ch] = b;
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
            let (mut o0, mut o1) = (vec![0.0f32; c], vec![0.0f32; c]);
            at6(d, [&mut o0, &mut o1], Some(&bias), relu);
            for (i, o) in [&o0, &o1].into_iter().enumerate() {
                for ch in 0..c {
                    let mut expected: f32 = (0..TILE).map(|a| AT[i][a] * input[a][ch]).sum::<f32>() + bias[ch];
                    if relu {
                        expected = expected.max(0.0);
                    }
                    assert!((o[ch] - expected).abs() < 1e-5, "at6 row {i} channel {ch} relu {relu}");
                }
            }
        }
    }

    /// The matrices compute the correlation exactly: in one dimension, for every unit input d
    /// and unit kernel g, A^T [(G g) ⊙ (B^T d)] = sum_k d[i + k] g[k] (exact in f64: every
    /// entry is a small dyadic or a sixth, and the sums cancel to integers).
    #[test]
    fn matrices_compute_the_one_dimensional_correlation() {
        for da in 0..TILE {
            for gb in 0..5 {
                for i in 0..OUT {
                    let mut y = 0.0f64;
                    for j in 0..TILE {
                        y += AT[i][j] as f64 * G[j][gb] as f64 * BT[j][da] as f64;
                    }
                    let expected = if da == i + gb { 1.0 } else { 0.0 };
                    assert!((y - expected).abs() < 1e-6, "d{da} g{gb} y{i}: {y} != {expected}");
                }
            }
        }
    }
}
