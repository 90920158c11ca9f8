//! 2-D convolution, the fast path: im2col + GEMM, parallel over the batch.
//!
//! Shapes: x [N, H, W, C_in], w [kh, kw, C_in, C_out] (HWIO), b [C_out] -> y [N, oh, ow, C_out].
//!   forward:  y[n, i, j, o] = b[o] + sum_{ki, kj, c} x_pad[n, i*sh + ki, j*sw + kj, c] * w[ki, kj, c, o]
//!             per image: Y[oh*ow, C_out] = col(x)[oh*ow, K] · W[K, C_out],  K = kh*kw*C_in
//!   backward: dW = sum_n col(x_n)^T · dY_n     (sum of dZ times the input patch)
//!             db = sum over n, i, j of dY      (sum of dZ)
//!             dX = col2im(dY_n · W^T)          (scatter of W times dZ)
//! The backward pass recomputes col(x) instead of keeping it: it is kh*kw times the input.
//! The plain-loop twin, used by the tests as the oracle, is `conv2d_ref`.

use rayon::prelude::*;

use super::activation::Activation;
use super::gemm::gemm;
use super::im2col::{col2im, im2col, im2col_rows};
use super::window::{Geometry, Padding, Window};
use super::winograd::{self, WinogradScratch};
use crate::chunks::IMAGES_PER_CHUNK as CHUNK;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::threads::PerThread;

/// Gradients of a convolution.
#[derive(Debug)]
pub struct Conv2dGrads {
    pub d_input: Tensor,
    pub d_weight: Tensor,
    pub d_bias: Tensor,
}

/// Checks the shapes of input, weight and bias against each other and resolves the window.
/// Returns the geometry and (n, c_in, c_out).
pub fn conv2d_geometry(x: &[usize], w: &[usize], b: Option<&[usize]>, window: &Window) -> Result<(Geometry, usize, usize, usize)> {
    let op = "conv2d";
    let [n, ih, iw, c_in] = x[..] else {
        return Err(Error::shape(op, "input of rank 4 [N, H, W, C_in]", format!("{x:?}")));
    };
    let [kh, kw, wc_in, c_out] = w[..] else {
        return Err(Error::shape(op, "weight of rank 4 [kh, kw, C_in, C_out]", format!("{w:?}")));
    };
    if (kh, kw) != (window.kh, window.kw) {
        return Err(Error::shape(op, format!("weight kernel {}x{}", window.kh, window.kw), format!("{kh}x{kw}")));
    }
    if wc_in != c_in {
        return Err(Error::invalid(op, format!("channel mismatch: input {x:?} has {c_in} channels but weight {w:?} expects {wc_in}")));
    }
    if let Some(b) = b {
        if b != [c_out] {
            return Err(Error::shape(op, format!("bias [{c_out}]"), format!("{b:?}")));
        }
    }
    let g = Geometry::new(op, ih, iw, window)?;
    Ok((g, n, c_in, c_out))
}

/// Reusable buffers of one convolution: a column matrix and partial gradients per chunk of
/// images for the backward pass, and one column matrix per worker thread for the forward pass.
/// Kept by the layer so that a training step allocates nothing once warmed up.
#[derive(Default)]
pub struct ConvScratch {
    chunks: Vec<ChunkScratch>,
    thread_cols: PerThread<Vec<f32>>,
    winograd: WinogradScratch,
    dx_winograd: DxByWinograd,
}

/// The input gradient of a 5x5 stride-1 convolution as a convolution itself (see
/// `dx_window`): the masked output gradient, the flipped weights, a zero bias.
#[derive(Default)]
struct DxByWinograd {
    dz: Tensor,
    w_flipped: Tensor,
    zero_bias: Tensor,
    winograd: WinogradScratch,
}

#[derive(Default)]
struct ChunkScratch {
    col: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
    /// One image's output gradient masked by a fused ReLU.
    dz: Vec<f32>,
}

/// The backward pass's scratch for `n` images in chunks of `CHUNK`: a column matrix of
/// `col_len` and partial gradients of `dw_len` and `db_len` each.
fn prepare_chunks(store: &mut Vec<ChunkScratch>, n: usize, col_len: usize, dw_len: usize, db_len: usize) -> &mut [ChunkScratch] {
    let chunks = n.div_ceil(CHUNK);
    if store.len() < chunks {
        store.resize_with(chunks, ChunkScratch::default);
    }
    for c in &mut store[..chunks] {
        c.col.resize(col_len, 0.0);
        c.dw.resize(dw_len, 0.0);
        c.db.resize(db_len, 0.0);
    }
    &mut store[..chunks]
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
    conv2d_forward_into(x, w, b, window, relu, &mut y, &mut ConvScratch::default())?;
    Ok(y)
}

/// `conv2d_forward` into a reused output buffer. Each task computes a block of output rows of
/// one image: the im2col of those rows, then one GEMM with the bias already in place.
pub fn conv2d_forward_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    window: &Window,
    relu: bool,
    y: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    let (g, n, c_in, c_out) = conv2d_geometry(x.shape(), w.shape(), Some(b.shape()), window)?;
    y.resize(&[n, g.oh, g.ow, c_out]);
    if winograd::applies(window, c_in) {
        winograd::conv5x5_forward_into(x, w, b, &g, c_in, c_out, relu, y, &mut scratch.winograd);
        return Ok(());
    }
    im2col_forward(x, w, b, &g, c_in, c_out, relu, y, scratch);
    Ok(())
}

/// `conv2d_forward_into` always by im2col + GEMM, even where the Winograd path would be taken
/// (for the benches that compare the two).
pub fn conv2d_forward_im2col_into(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    window: &Window,
    relu: bool,
    y: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    let (g, n, c_in, c_out) = conv2d_geometry(x.shape(), w.shape(), Some(b.shape()), window)?;
    y.resize(&[n, g.oh, g.ow, c_out]);
    im2col_forward(x, w, b, &g, c_in, c_out, relu, y, scratch);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn im2col_forward(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    g: &Geometry,
    c_in: usize,
    c_out: usize,
    relu: bool,
    y: &mut Tensor,
    scratch: &mut ConvScratch,
) {
    let (n, k) = (x.shape()[0], g.kh * g.kw * c_in);
    let (in_size, out_size) = (g.ih * g.iw * c_in, g.oh * g.ow * c_out);
    let rows = forward_rows_per_task(n, g.oh, g.ow);
    let cols = scratch.thread_cols.for_current_pool();
    let tasks =
        y.data_mut().par_chunks_mut(out_size).enumerate().flat_map(|(img, y_img)| {
            y_img.par_chunks_mut(rows * g.ow * c_out).enumerate().map(move |(block, y_block)| (img, block, y_block))
        });
    tasks.for_each(|(img, block, y_block)| {
        let first = block * rows;
        let m = y_block.len() / c_out;
        let mut col = cols.get();
        col.resize(rows * g.ow * k, 0.0);
        im2col_rows(&x.data()[img * in_size..][..in_size], g, c_in, first..first + m / g.ow, &mut col);
        for row in y_block.chunks_exact_mut(c_out) {
            row.copy_from_slice(b.data());
        }
        gemm(m, k, c_out, &col, false, w.data(), false, 1.0, y_block);
        if relu {
            Activation::Relu.forward(y_block);
        }
    });
}

/// For a convolution where Winograd applies to its input gradient, the window of that
/// gradient as a convolution of its own: for stride 1,
///   dX[i, j, ci] = sum over ki, kj, co of dY[i + pt - ki, j + pl - kj, co] W[ki, kj, ci, co]
/// is the correlation of dY, padded by (kh - 1 - pt) before and (kh - 1 - pb) after (likewise
/// for the columns), with the kernel flipped in both axes and its channels swapped. None when
/// the kernel is not 5x5 at stride 1, dY has too few channels, or the padding exceeds kh - 1.
fn dx_window(g: &Geometry, window: &Window, c_out: usize) -> Option<Window> {
    if !winograd::applies(window, c_out) {
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

/// wf[ki][kj][co][ci] = w[kh-1-ki][kw-1-kj][ci][co]: the kernel of the input gradient.
fn flip_weights(w: &Tensor, wf: &mut Tensor) {
    let [kh, kw, c_in, c_out] = w.shape()[..] else { unreachable!("checked by conv2d_geometry") };
    wf.resize(&[kh, kw, c_out, c_in]);
    let (src, dst) = (w.data(), wf.data_mut());
    for ki in 0..kh {
        for kj in 0..kw {
            let from = &src[((kh - 1 - ki) * kw + (kw - 1 - kj)) * c_in * c_out..][..c_in * c_out];
            let to = &mut dst[(ki * kw + kj) * c_out * c_in..][..c_out * c_in];
            for ci in 0..c_in {
                for co in 0..c_out {
                    to[co * c_in + ci] = from[ci * c_out + co];
                }
            }
        }
    }
}

/// Gradients of a convolution given its input `x`, weight `w` and the output gradient `dy`.
pub fn conv2d_backward(x: &Tensor, w: &Tensor, dy: &Tensor, window: &Window) -> Result<Conv2dGrads> {
    let (mut d_input, mut d_weight, mut d_bias) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
    conv2d_backward_into(x, w, dy, window, Some(&mut d_input), &mut d_weight, &mut d_bias, &mut ConvScratch::default())?;
    Ok(Conv2dGrads { d_input, d_weight, d_bias })
}

/// `conv2d_backward` into reused buffers; with `d_input` None the input gradient is not
/// computed at all (the first layer of a network does not need it).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_into(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    window: &Window,
    d_input: Option<&mut Tensor>,
    d_weight: &mut Tensor,
    d_bias: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    backward(x, w, dy, None, window, d_input, d_weight, d_bias, scratch)
}

/// The backward pass of a convolution with its ReLU fused (`conv2d_forward` with `relu`), given
/// the layer's output `y`: the gradient only flows where the ReLU passed the value,
/// dz = dy where y > 0, else 0. The mask is applied image by image inside the parallel loop
/// rather than in a pass of its own over the whole batch.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_relu_backward_into(
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    window: &Window,
    d_input: Option<&mut Tensor>,
    d_weight: &mut Tensor,
    d_bias: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    if y.shape() != dy.shape() {
        return Err(Error::shape("conv2d backward", format!("y {:?} (the shape of dy)", dy.shape()), format!("{:?}", y.shape())));
    }
    backward(x, w, dy, Some(y), window, d_input, d_weight, d_bias, scratch)
}

#[allow(clippy::too_many_arguments)]
fn backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    relu_y: Option<&Tensor>,
    window: &Window,
    d_input: Option<&mut Tensor>,
    d_weight: &mut Tensor,
    d_bias: &mut Tensor,
    scratch: &mut ConvScratch,
) -> Result<()> {
    let (g, n, c_in, c_out) = conv2d_geometry(x.shape(), w.shape(), None, window)?;
    if dy.shape() != [n, g.oh, g.ow, c_out] {
        return Err(Error::shape("conv2d backward", format!("dy {:?}", [n, g.oh, g.ow, c_out]), format!("{:?}", dy.shape())));
    }
    let (m, k) = (g.oh * g.ow, g.kh * g.kw * c_in);
    let (in_size, out_size) = (g.ih * g.iw * c_in, m * c_out);
    let ConvScratch { chunks: chunk_store, dx_winograd: dx_scratch, .. } = scratch;
    let (mut d_input, mut dy, mut relu_y) = (d_input, dy, relu_y);
    if let (Some(dx), Some(dx_window)) = (d_input.as_deref_mut(), dx_window(&g, window, c_out)) {
        // dX by Winograd; the loop below then computes dW and db only, from the masked dy.
        let d = &mut *dx_scratch;
        if let Some(y) = relu_y {
            d.dz.resize(dy.shape());
            d.dz.data_mut()
                .par_chunks_mut(out_size)
                .zip(dy.data().par_chunks(out_size))
                .zip(y.data().par_chunks(out_size))
                .for_each(|((dz, dy), y)| Activation::Relu.backward_into(y, dy, dz));
        }
        let dz = if relu_y.is_some() { &d.dz } else { dy };
        flip_weights(w, &mut d.w_flipped);
        d.zero_bias.resize(&[c_in]);
        d.zero_bias.data_mut().fill(0.0);
        let gt = Geometry::new("conv2d backward", g.oh, g.ow, &dx_window)?;
        dx.resize(x.shape());
        winograd::conv5x5_forward_into(dz, &d.w_flipped, &d.zero_bias, &gt, c_out, c_in, false, dx, &mut d.winograd);
        (d_input, dy, relu_y) = (None, dz, None);
    }
    let chunks = prepare_chunks(chunk_store, n, m * k, k * c_out, c_out);

    // Each chunk of images yields its own partial dW and db, summed below in chunk order.
    let chunk_grads = |chunk: usize, s: &mut ChunkScratch, dx_chunk: Option<&mut [f32]>| {
        s.dw.fill(0.0);
        s.db.fill(0.0);
        let images = CHUNK.min(n - chunk * CHUNK);
        let mut dx_imgs = dx_chunk.map(|d| d.chunks_exact_mut(in_size));
        for i in 0..images {
            let img = chunk * CHUNK + i;
            let mut dy_img = &dy.data()[img * out_size..][..out_size];
            if let Some(y) = relu_y {
                s.dz.resize(out_size, 0.0);
                Activation::Relu.backward_into(&y.data()[img * out_size..][..out_size], dy_img, &mut s.dz);
                dy_img = &s.dz;
            }
            im2col(&x.data()[img * in_size..][..in_size], &g, c_in, &mut s.col);
            gemm(k, m, c_out, &s.col, true, dy_img, false, 1.0, &mut s.dw);
            for row in dy_img.chunks_exact(c_out) {
                s.db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
            }
            if let Some(dx_img) = dx_imgs.as_mut().and_then(|it| it.next()) {
                // col now becomes d(col) = dY · W^T, then scatters back onto the image.
                gemm(m, c_out, k, dy_img, false, w.data(), true, 0.0, &mut s.col);
                dx_img.fill(0.0);
                col2im(&s.col, &g, c_in, dx_img);
            }
        }
    };
    match d_input {
        Some(dx) => {
            dx.resize(x.shape());
            dx.data_mut()
                .par_chunks_mut(CHUNK * in_size)
                .zip(chunks.par_iter_mut())
                .enumerate()
                .for_each(|(chunk, (dx_chunk, s))| chunk_grads(chunk, s, Some(dx_chunk)));
        }
        None => chunks.par_iter_mut().enumerate().for_each(|(chunk, s)| chunk_grads(chunk, s, None)),
    }

    d_weight.resize(w.shape());
    d_bias.resize(&[c_out]);
    d_weight.data_mut().fill(0.0);
    d_bias.data_mut().fill(0.0);
    for s in chunks.iter() {
        d_weight.data_mut().iter_mut().zip(&s.dw).for_each(|(a, v)| *a += v);
        d_bias.data_mut().iter_mut().zip(&s.db).for_each(|(a, v)| *a += v);
    }
    Ok(())
}
