//! Batch normalisation over the channels (the last axis): statistics are taken over every
//! other axis (N, H, W for images; N for features).
//!
//! ```text
//!   train:    mean[c], var[c] over the batch (biased);  xhat = (x - mean) / sqrt(var + eps)
//!             y = gamma * xhat + beta
//!             running_mean = (1 - m) running_mean + m mean;  running_var likewise with the
//!             unbiased variance (as PyTorch; m = momentum)
//!   eval:     y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
//!   backward: d_beta = sum dy;  d_gamma = sum dy * xhat
//!             dx = gamma / sqrt(var + eps) / M * (M dy - d_beta - xhat d_gamma),  M = rows
//!   with a ReLU fused after it: y = max(0, ...), and dy becomes dz = dy where y > 0
//! ```
//!
//! Sums run over fixed chunks of rows, each in f32, and the chunks are added in order in f64:
//! the same result on any number of threads.

use rayon::prelude::*;

use super::column_sums::block_groups;
use super::epilogue::ChannelAffine as Affine;
use super::simd::simd_dispatch;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

use crate::chunks::{IMAGES_PER_CHUNK, ROWS_PER_CHUNK as ROWS};

fn channels(x: &Tensor) -> Result<usize> {
    match x.shape().last() {
        Some(&c) if c > 0 && x.shape().len() >= 2 => Ok(c),
        _ => Err(Error::shape("batch_norm", "[N, ..., C]", format!("{:?}", x.shape()))),
    }
}

/// What the training forward pass keeps for the backward pass: the batch's mean and
/// 1 / sqrt(var + eps) per channel, and y = (x - mean) a + beta's a (x itself is kept by the
/// layer before, so xhat, and a fused ReLU's mask, are recomputed rather than stored or read:
/// fewer passes over memory each way), and the per-chunk partial sums.
#[derive(Default)]
pub struct BatchNormCache {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    scale: Vec<f32>,
    beta: Vec<f32>,
    /// Whether the forward pass fused a ReLU.
    relu: bool,
    partials: Vec<f32>,
    /// The batch's first row (the shift of the sums) and its number of rows (over every rank).
    shift: Vec<f32>,
    rows: usize,
}

/// The running statistics a training pass updates, and how fast: new = (1 - m) old + m batch.
pub struct RunningStats<'a> {
    pub mean: &'a mut [f32],
    pub var: &'a mut [f32],
    pub momentum: f32,
}

/// The chunks of rows batch norm's sums are split into. Images of at least `ROWS` pixels are
/// cut into pieces of `ROWS` (the last piece of each image shorter); smaller ones are grouped,
/// as many per chunk as the largest power of two that fits in `ROWS` pixels, at most
/// `IMAGES_PER_CHUNK`. So a chunk never holds part of one image and part of another, nor images
/// of two groups of `IMAGES_PER_CHUNK`: the ranks of a distributed step hold whole chunks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RowChunks {
    /// Each image in `pieces` chunks of up to `ROWS` rows.
    PerImage { rows: usize, rows_per_image: usize, pieces: usize },
    /// Whole images, `chunk_rows` rows a chunk (the last may be shorter).
    Grouped { rows: usize, chunk_rows: usize },
}

impl RowChunks {
    /// The chunks of `x` ([N, ..., C]).
    fn of(x: &Tensor) -> RowChunks {
        let shape = x.shape();
        let rows_per_image = shape[1..shape.len() - 1].iter().product::<usize>().max(1);
        RowChunks::new(x.len() / shape[shape.len() - 1], rows_per_image)
    }

    fn new(rows: usize, rows_per_image: usize) -> RowChunks {
        if rows_per_image >= ROWS {
            RowChunks::PerImage { rows, rows_per_image, pieces: rows_per_image.div_ceil(ROWS) }
        } else {
            let fit = (ROWS / rows_per_image).min(IMAGES_PER_CHUNK);
            let images = 1usize << fit.ilog2();
            RowChunks::Grouped { rows, chunk_rows: images * rows_per_image }
        }
    }

    fn count(self) -> usize {
        match self {
            RowChunks::PerImage { rows, rows_per_image, pieces } => rows / rows_per_image * pieces,
            RowChunks::Grouped { rows, chunk_rows } => rows.div_ceil(chunk_rows),
        }
    }

    fn range(self, i: usize) -> std::ops::Range<usize> {
        match self {
            RowChunks::PerImage { rows_per_image, pieces, .. } => {
                let (image, piece) = (i / pieces, i % pieces);
                let start = image * rows_per_image + piece * ROWS;
                start..(start + ROWS).min((image + 1) * rows_per_image)
            }
            RowChunks::Grouped { rows, chunk_rows } => i * chunk_rows..rows.min((i + 1) * chunk_rows),
        }
    }
}

/// Sums two per-channel quantities over every row of `data` ([rows][c]) in one pass: `kernel`
/// fills the 2c sums of one chunk of rows (in f32), and the chunks are added in order in f64
/// (after the previous ranks' in a distributed step), so the result does not depend on the
/// threads or the ranks. `partials` is reused scratch.
fn two_channel_sums(
    chunks: RowChunks,
    c: usize,
    partials: &mut Vec<f32>,
    kernel: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    partials.resize(chunks.count() * 2 * c, 0.0);
    partials.par_chunks_mut(2 * c).enumerate().for_each(|(i, out)| kernel(chunks.range(i), out));
    let (mut first, mut second) = (vec![0.0f64; c], vec![0.0f64; c]);
    crate::dist::ordered_fold(&mut [&mut first, &mut second], |acc| {
        let [first, second] = acc else { unreachable!("two buffers") };
        for p in partials.chunks_exact(2 * c) {
            let (a, b) = p.split_at(c);
            first.iter_mut().zip(a).for_each(|(t, &v)| *t += v as f64);
            second.iter_mut().zip(b).for_each(|(t, &v)| *t += v as f64);
        }
    });
    (first, second)
}

simd_dispatch! {
    /// sums = [sum of d, sum of d^2] per channel over the rows of `x` ([rows][c]), d = x - shift.
    fn shifted_sums => shifted_sums_plain(x: &[f32], shift: &[f32], sums: &mut [f32])
}

#[inline(always)]
fn shifted_sums_plain(x: &[f32], shift: &[f32], sums: &mut [f32]) {
    let c = shift.len();
    let (s1, s2) = sums.split_at_mut(c);
    // As `grad_sums`: up to four blocks of LANES channels down the rows, their sums in
    // registers (a row at a time through memory, each row waited on the last's stores), then
    // the rest a channel at a time; each channel's sums run over the rows in order.
    for (b0, count) in block_groups(c / LANES) {
        match count {
            1 => shifted_sums_blocks::<1>(x, shift, b0 * LANES, s1, s2),
            2 => shifted_sums_blocks::<2>(x, shift, b0 * LANES, s1, s2),
            _ => shifted_sums_blocks::<4>(x, shift, b0 * LANES, s1, s2),
        }
    }
    for ch in c / LANES * LANES..c {
        let (mut a1, mut a2) = (0.0f32, 0.0f32);
        for row in x.chunks_exact(c) {
            let d = row[ch] - shift[ch];
            a1 += d;
            a2 += d * d;
        }
        s1[ch] = a1;
        s2[ch] = a2;
    }
}

/// `shifted_sums` of the B blocks of LANES channels from c0, down every row.
#[inline(always)]
fn shifted_sums_blocks<const B: usize>(x: &[f32], shift: &[f32], c0: usize, s1: &mut [f32], s2: &mut [f32]) {
    let c = shift.len();
    let (mut a1, mut a2) = ([[0.0f32; LANES]; B], [[0.0f32; LANES]; B]);
    let shifts: [&[f32; LANES]; B] = std::array::from_fn(|b| lanes(shift, c0 + b * LANES));
    for row in x.chunks_exact(c) {
        for b in 0..B {
            let xs = lanes(row, c0 + b * LANES);
            for l in 0..LANES {
                let d = xs[l] - shifts[b][l];
                a1[b][l] += d;
                a2[b][l] += d * d;
            }
        }
    }
    for b in 0..B {
        let cb = c0 + b * LANES;
        s1[cb..cb + LANES].copy_from_slice(&a1[b]);
        s2[cb..cb + LANES].copy_from_slice(&a2[b]);
    }
}

simd_dispatch! {
    /// y = (x - m) a + b per channel, then ReLU if `relu` (NaN passes through, as
    /// Activation::Relu).
    fn scale_shift => scale_shift_plain(x: &[f32], f: Affine, relu: bool, y: &mut [f32])
}

#[inline(always)]
fn scale_shift_plain(x: &[f32], f: Affine, relu: bool, y: &mut [f32]) {
    let c = f.a.len();
    let f = f.first(c);
    for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for ch in 0..c {
            let v = f.at(ch, x[ch]);
            y[ch] = if relu && v < 0.0 { 0.0 } else { v };
        }
    }
}

/// y = (x - m) a + b (+ ReLU) over the whole batch, in parallel chunks of rows.
fn apply_scale_shift(x: &Tensor, f: Affine, relu: bool, y: &mut Tensor) {
    let c = f.a.len();
    y.resize(x.shape());
    y.data_mut().par_chunks_mut(ROWS * c).zip(x.data().par_chunks(ROWS * c)).for_each(|(y, x)| scale_shift(x, f, relu, y));
}

/// Training forward: normalises with the batch statistics and updates the running ones; with
/// `relu`, the ReLU that follows is applied in the same pass. Two passes over x: the statistics
/// (sums of x - x_0 and its square, x_0 the first row, so that the variance does not
/// cancel away when the mean is large), then y.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_train(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    running: RunningStats,
    eps: f32,
    relu: bool,
    y: &mut Tensor,
    cache: &mut BatchNormCache,
) -> Result<()> {
    let RunningStats { mean: running_mean, var: running_var, momentum } = running;
    let c = channels(x)?;
    // The whole batch's rows (over every rank in a distributed step).
    let rows = crate::dist::batch_count(x.len() / c);
    if rows < 2 {
        return Err(Error::invalid("batch_norm", format!("training needs more than one value per channel, got input {:?}", x.shape())));
    }
    let data = x.data();
    // The shift is the batch's first row, which the first rank holds.
    cache.shift.clear();
    cache.shift.extend_from_slice(&data[..c]);
    crate::dist::from_first_rank(&mut cache.shift);
    let shift = &cache.shift;
    let (s1, s2) =
        two_channel_sums(RowChunks::of(x), c, &mut cache.partials, |r, out| shifted_sums(&data[r.start * c..r.end * c], shift, out));
    cache.rows = rows;
    let n = rows as f64;
    cache.mean.clear();
    cache.inv_std.clear();
    for ch in 0..c {
        let d_mean = s1[ch] / n;
        let var = (s2[ch] / n - d_mean * d_mean).max(0.0);
        let mean = shift[ch] as f64 + d_mean;
        cache.mean.push(mean as f32);
        cache.inv_std.push((1.0 / (var + eps as f64).sqrt()) as f32);
        running_mean[ch] = (1.0 - momentum) * running_mean[ch] + momentum * mean as f32;
        let unbiased = var * n / (n - 1.0);
        running_var[ch] = (1.0 - momentum) * running_var[ch] + momentum * unbiased as f32;
    }
    // y = (x - mean) a + beta, a = gamma inv_std.
    cache.scale.clear();
    cache.scale.extend(gamma[..c].iter().zip(&cache.inv_std).map(|(g, s)| g * s));
    cache.beta.clear();
    cache.beta.extend_from_slice(&beta[..c]);
    cache.relu = relu;
    apply_scale_shift(x, Affine { m: &cache.mean, a: &cache.scale, b: &cache.beta }, relu, y);
    Ok(())
}

/// Evaluation forward with the running statistics (then ReLU if `relu`).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_eval(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    relu: bool,
    y: &mut Tensor,
) -> Result<()> {
    eval_pass(x, (gamma, beta, running_mean, running_var, eps), y, |x, f, y| scale_shift(x, f, relu, y))
}

/// Evaluation mode's y = kernel(x) over the whole batch in parallel chunks of rows, the kernel
/// given the norm's map y = (x - running_mean) a + beta, a = gamma / sqrt(running_var + eps).
fn eval_pass(
    x: &Tensor,
    (gamma, beta, running_mean, running_var, eps): (&[f32], &[f32], &[f32], &[f32], f32),
    y: &mut Tensor,
    kernel: impl Fn(&[f32], Affine, &mut [f32]) + Sync,
) -> Result<()> {
    let c = channels(x)?;
    let a = eval_scale(&gamma[..c], running_var, eps);
    let f = Affine { m: &running_mean[..c], a: &a, b: &beta[..c] };
    y.resize(x.shape());
    y.data_mut().par_chunks_mut(ROWS * c).zip(x.data().par_chunks(ROWS * c)).for_each(|(y, x)| kernel(x, f, y));
    Ok(())
}

/// Evaluation mode's norm and the GELU after it in one pass: y = GELU((x - running_mean) a +
/// beta), the same bits as `batch_norm_forward_eval` followed by `gelu::gelu_forward_into`
/// (the same operations on each value), without writing and reading the norm's output.
pub fn batch_norm_gelu_forward_eval(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    y: &mut Tensor,
) -> Result<()> {
    eval_pass(x, (gamma, beta, running_mean, running_var, eps), y, scale_shift_gelu)
}

simd_dispatch! {
    avx512:
    /// y = GELU((x - m) a + b) per channel.
    fn scale_shift_gelu => scale_shift_gelu_plain(x: &[f32], f: Affine, y: &mut [f32])
}

#[inline(always)]
fn scale_shift_gelu_plain(x: &[f32], f: Affine, y: &mut [f32]) {
    let c = f.a.len();
    let f = f.first(c);
    for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for ch in 0..c {
            y[ch] = super::gelu::gelu_value(f.at(ch, x[ch]));
        }
    }
}

/// Evaluation mode's scale per channel, a = gamma / sqrt(running_var + eps): y = (x - mean) a +
/// beta. (A convolution before the norm absorbs it: `layers::conv2d`'s folded weights.)
pub fn eval_scale(gamma: &[f32], running_var: &[f32], eps: f32) -> Vec<f32> {
    gamma.iter().zip(running_var).map(|(g, v)| g / (v + eps).sqrt()).collect()
}

/// What the backward kernels read per channel: the mean, and for a fused ReLU the forward's
/// affine map (its mask is recomputed from x: the same operations give the same bits, so the
/// same decision, without reading y).
#[derive(Clone, Copy)]
struct Channels<'a> {
    mean: &'a [f32],
    relu: Option<Affine<'a>>,
}

impl Channels<'_> {
    /// dz: dy, or 0 where the fused ReLU's input was not positive (as Activation::Relu, which
    /// passes the gradient where y > 0).
    #[inline(always)]
    fn dz(self, ch: usize, x: f32, dy: f32) -> f32 {
        match self.relu {
            Some(f) if f.at(ch, x) <= 0.0 => 0.0,
            _ => dy,
        }
    }
}

simd_dispatch! {
    /// sums = [sum of dz, sum of dz (x - mean)] per channel over the rows of x and dy.
    fn grad_sums => grad_sums_plain(x: &[f32], dy: &[f32], k: Channels, sums: &mut [f32])
}

#[inline(always)]
fn grad_sums_plain(x: &[f32], dy: &[f32], k: Channels, sums: &mut [f32]) {
    let c = k.mean.len();
    let (s1, s2) = sums.split_at_mut(c);
    // Up to four blocks of LANES channels at a time down the rows, their sums in registers
    // (each channel's sum still runs over the rows in order: the same bits as a row at a
    // time); then the rest one channel at a time. Written over a loop of all c channels per
    // row, LLVM ran 16-channel layers (and the rest of any c) one value at a time: the
    // ResNet's first norm's backward took 4.7 ms, then 2.6 a block at a time. A block at a
    // time, the loop waited on its loads (one short run of each row, rows apart); four
    // blocks read whole cache lines of each row in turn.
    for (b0, count) in block_groups(c / LANES) {
        match count {
            1 => grad_sums_blocks::<1>(x, dy, k, b0 * LANES, s1, s2),
            2 => grad_sums_blocks::<2>(x, dy, k, b0 * LANES, s1, s2),
            _ => grad_sums_blocks::<4>(x, dy, k, b0 * LANES, s1, s2),
        }
    }
    for ch in c / LANES * LANES..c {
        let (mut a1, mut a2) = (0.0f32, 0.0f32);
        for (x, dy) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
            let dz = k.dz(ch, x[ch], dy[ch]);
            a1 += dz;
            a2 += dz * (x[ch] - k.mean[ch]);
        }
        s1[ch] = a1;
        s2[ch] = a2;
    }
}

/// `grad_sums` of the B blocks of LANES channels from c0, down every row.
#[inline(always)]
fn grad_sums_blocks<const B: usize>(x: &[f32], dy: &[f32], k: Channels, c0: usize, s1: &mut [f32], s2: &mut [f32]) {
    let c = k.mean.len();
    let (mut a1, mut a2) = ([[0.0f32; LANES]; B], [[0.0f32; LANES]; B]);
    let mean: [&[f32; LANES]; B] = std::array::from_fn(|b| lanes(k.mean, c0 + b * LANES));
    for (x, dy) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
        for b in 0..B {
            let cb = c0 + b * LANES;
            let (xs, dz) = (lanes(x, cb), masked_grad(k, cb, lanes(x, cb), lanes(dy, cb)));
            for l in 0..LANES {
                a1[b][l] += dz[l];
                a2[b][l] += dz[l] * (xs[l] - mean[b][l]);
            }
        }
    }
    for b in 0..B {
        let cb = c0 + b * LANES;
        s1[cb..cb + LANES].copy_from_slice(&a1[b]);
        s2[cb..cb + LANES].copy_from_slice(&a2[b]);
    }
}

/// dz of the LANES channels from c0 (`Channels::dz`): dy, or +0 where the fused ReLU's input
/// was not positive, by a mask rather than a branch.
#[inline(always)]
fn masked_grad(k: Channels, c0: usize, xs: &[f32; LANES], dys: &[f32; LANES]) -> [f32; LANES] {
    let mut dz = *dys;
    if let Some(f) = k.relu {
        let (m, a, b) = (lanes(f.m, c0), lanes(f.a, c0), lanes(f.b, c0));
        for l in 0..LANES {
            let keep = u32::from((xs[l] - m[l]) * a[l] + b[l] <= 0.0).wrapping_sub(1);
            dz[l] = f32::from_bits(dz[l].to_bits() & keep);
        }
    }
    dz
}

/// Channels per block of the kernels' loops: one AVX2 vector.
const LANES: usize = 8;

/// Channels c0 .. c0 + LANES of a row, as an array (so the block's loop is one vector's work).
#[inline(always)]
fn lanes(row: &[f32], c0: usize) -> &[f32; LANES] {
    row[c0..c0 + LANES].try_into().expect("a block of LANES channels")
}

/// `lanes`, mutable.
#[inline(always)]
fn lanes_mut(row: &mut [f32], c0: usize) -> &mut [f32; LANES] {
    (&mut row[c0..c0 + LANES]).try_into().expect("a block of LANES channels")
}

simd_dispatch! {
    /// dx = c1 dz + c2 (x - mean) + c3 per channel.
    fn input_grad => input_grad_plain(x: &[f32], dy: &[f32], k: Channels, coef: [&[f32]; 3], dx: &mut [f32])
}

#[inline(always)]
fn input_grad_plain(x: &[f32], dy: &[f32], k: Channels, coef: [&[f32]; 3], dx: &mut [f32]) {
    let c = k.mean.len();
    let [c1, c2, c3] = coef;
    let (c1, c2, c3) = (&c1[..c], &c2[..c], &c3[..c]);
    // Row by row, a block of LANES channels at a time (every operand of a block loaded whole,
    // the fused ReLU's test as a mask, not a branch), then the rest: as one loop over each row,
    // LLVM ran a third of it a value at a time (the ResNet's 16-channel norm all of it).
    let blocks = c / LANES * LANES;
    for ((dx, x), dy) in dx.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(dy.chunks_exact(c)) {
        for c0 in (0..blocks).step_by(LANES) {
            let (xs, dys, mean) = (lanes(x, c0), lanes(dy, c0), lanes(k.mean, c0));
            let (k1, k2, k3) = (lanes(c1, c0), lanes(c2, c0), lanes(c3, c0));
            let dz = masked_grad(k, c0, xs, dys);
            let out = lanes_mut(dx, c0);
            for l in 0..LANES {
                out[l] = k1[l] * dz[l] + k2[l] * (xs[l] - mean[l]) + k3[l];
            }
        }
        for ch in blocks..c {
            let dz = k.dz(ch, x[ch], dy[ch]);
            dx[ch] = c1[ch] * dz + c2[ch] * (x[ch] - k.mean[ch]) + c3[ch];
        }
    }
}

/// Backward of the training forward, given its input `x` and the output gradient `dy` (with a
/// fused ReLU, the gradient flows only where the forward output was positive). Fills dx (if
/// asked), d_gamma and d_beta, in two passes over x and dy: the two sums, then dx. gamma is the
/// forward pass's, kept in `cache` (as gamma inv_std).
pub fn batch_norm_backward(
    x: &Tensor,
    dy: &Tensor,
    cache: &mut BatchNormCache,
    dx: Option<&mut Tensor>,
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) -> Result<()> {
    let c = channels(dy)?;
    if x.shape() != dy.shape() || cache.mean.len() != c {
        let expected = format!("dy of the forward input's shape {:?} ({} channels)", x.shape(), cache.mean.len());
        return Err(Error::shape("batch_norm backward", expected, format!("{:?}", dy.shape())));
    }
    let (xd, dyd) = (x.data(), dy.data());
    let BatchNormCache { mean, inv_std, scale, beta, relu, partials, rows, .. } = cache;
    let k = Channels { mean, relu: relu.then_some(Affine { m: mean, a: scale, b: beta }) };
    let (db, dxm) = two_channel_sums(RowChunks::of(dy), c, partials, |r, out| {
        let span = r.start * c..r.end * c;
        grad_sums(&xd[span.clone()], &dyd[span], k, out)
    });
    // d_gamma = sum dz xhat = inv_std sum dz (x - mean).
    for ch in 0..c {
        d_beta[ch] = db[ch] as f32;
        d_gamma[ch] = (dxm[ch] * inv_std[ch] as f64) as f32;
    }
    if let Some(dx) = dx {
        // dx = k (M dz - d_beta - xhat d_gamma), k = gamma inv_std / M, xhat = (x - mean) inv_std.
        let m = *rows as f32;
        let c1 = &scale[..];
        let c2: Vec<f32> = (0..c).map(|ch| -c1[ch] / m * d_gamma[ch] * inv_std[ch]).collect();
        let c3: Vec<f32> = (0..c).map(|ch| -c1[ch] / m * d_beta[ch]).collect();
        dx.resize(dy.shape());
        dx.data_mut().par_chunks_mut(ROWS * c).enumerate().for_each(|(i, dx)| {
            let span = i * ROWS * c..i * ROWS * c + dx.len();
            input_grad(&xd[span.clone()], &dyd[span], k, [c1, &c2, &c3], dx);
        });
    }
    Ok(())
}

/// The training forward pass in plain loops, straight from the formulas (the tests' oracle).
pub fn batch_norm_forward_ref(x: &Tensor, gamma: &[f32], beta: &[f32], eps: f32) -> Result<Tensor> {
    let c = channels(x)?;
    let rows = x.len() / c;
    let mut y = vec![0.0f32; x.len()];
    for ch in 0..c {
        let values: Vec<f64> = (0..rows).map(|r| x.data()[r * c + ch] as f64).collect();
        let mean = values.iter().sum::<f64>() / rows as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
        for (r, v) in values.iter().enumerate() {
            y[r * c + ch] = gamma[ch] * ((v - mean) / (var + eps as f64).sqrt()) as f32 + beta[ch];
        }
    }
    Tensor::from_vec(x.shape(), y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward's shifted sums, blocked as `grad_sums`, against a plain loop down each
    /// channel's rows, bit for bit.
    #[test]
    fn shifted_sums_equal_each_channels_sums_down_the_rows_bit_for_bit() {
        let value = |i: usize| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0;
        for c in [5, 8, 16, 24, 40, 45, 72] {
            let rows = 37;
            let x: Vec<f32> = (0..rows * c).map(|i| value(i) * 3.0 + 100.0).collect();
            let shift = x[..c].to_vec();
            let mut sums = vec![f32::NAN; 2 * c];
            shifted_sums(&x, &shift, &mut sums);
            for ch in 0..c {
                let (mut s1, mut s2) = (0.0f32, 0.0f32);
                for row in x.chunks_exact(c) {
                    let d = row[ch] - shift[ch];
                    s1 += d;
                    s2 += d * d;
                }
                assert_eq!((sums[ch].to_bits(), sums[c + ch].to_bits()), (s1.to_bits(), s2.to_bits()), "{c} channels, channel {ch}");
            }
        }
    }

    /// The blocked sums (groups of 4, 2 and 1 blocks of LANES channels, then the rest one at
    /// a time) against a plain loop down each channel's rows, bit for bit, with and without
    /// the fused ReLU's mask, at every SIMD level this CPU has (`grad_sums` dispatches).
    #[test]
    fn grad_sums_equal_each_channels_sum_down_the_rows_bit_for_bit() {
        let value = |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.0 - 1.0;
        for c in [5, 8, 16, 24, 40, 45, 72] {
            let rows = 37;
            let x: Vec<f32> = (0..rows * c).map(|i| value(i, 1) * 3.0).collect();
            let dy: Vec<f32> = (0..rows * c).map(|i| value(i, 2)).collect();
            let per_channel = |salt| (0..c).map(|ch| value(ch, salt)).collect::<Vec<f32>>();
            let (mean, a, b) = (per_channel(3), per_channel(4), per_channel(5));
            for relu in [None, Some(Affine { m: &mean, a: &a, b: &b })] {
                let k = Channels { mean: &mean, relu };
                let mut sums = vec![f32::NAN; 2 * c];
                grad_sums(&x, &dy, k, &mut sums);
                for ch in 0..c {
                    let (mut s1, mut s2) = (0.0f32, 0.0f32);
                    for r in 0..rows {
                        let (xv, dyv) = (x[r * c + ch], dy[r * c + ch]);
                        let dz = if relu.is_some() && (xv - mean[ch]) * a[ch] + b[ch] <= 0.0 { 0.0 } else { dyv };
                        s1 += dz;
                        s2 += dz * (xv - mean[ch]);
                    }
                    let label = format!("{c} channels, channel {ch}, relu {}", relu.is_some());
                    assert_eq!(sums[ch].to_bits(), s1.to_bits(), "sum of dz, {label}");
                    assert_eq!(sums[c + ch].to_bits(), s2.to_bits(), "sum of dz (x - mean), {label}");
                }
                let cut = |r: &[f32]| (0..c).filter(|&ch| (r[ch] - mean[ch]) * a[ch] + b[ch] <= 0.0).count();
                let cuts: usize = x.chunks_exact(c).map(cut).sum();
                assert!(cuts > 0 && cuts < rows * c, "the mask cuts some dy and keeps some: {cuts} of {}", rows * c);
            }
        }
    }

    /// Every row in exactly one chunk, in order; no chunk over ROWS rows, none holding part of
    /// an image with part of another, none spanning two groups of IMAGES_PER_CHUNK images.
    #[test]
    fn row_chunks_cover_the_rows_and_keep_to_images_and_groups() {
        for (images, rows_per_image) in [(20, 1), (20, 9), (19, 30), (9, 64), (5, 256), (3, 300), (4, 784), (2, 1024)] {
            let chunks = RowChunks::new(images * rows_per_image, rows_per_image);
            let ranges: Vec<_> = (0..chunks.count()).map(|i| chunks.range(i)).collect();
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, images * rows_per_image);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{rows_per_image} rows an image");
            }
            let group = IMAGES_PER_CHUNK * rows_per_image;
            for r in &ranges {
                assert!(!r.is_empty() && r.len() <= ROWS, "{r:?} of {rows_per_image}-row images");
                let (first, last) = (r.start / rows_per_image, (r.end - 1) / rows_per_image);
                let whole = r.start % rows_per_image == 0 && r.end % rows_per_image == 0;
                assert!(first == last || whole, "{r:?} cuts an image of {rows_per_image} rows");
                assert_eq!(r.start / group, (r.end - 1) / group, "{r:?} spans two groups of {rows_per_image}-row images");
            }
        }
        // As many small images a chunk as the largest power of two that fits, at most 8.
        assert_eq!(RowChunks::new(360, 9).range(0), 0..72);
        assert_eq!(RowChunks::new(640, 64).range(1), 256..512);
        assert_eq!(RowChunks::new(600, 300).range(1), 256..300);
    }
}
