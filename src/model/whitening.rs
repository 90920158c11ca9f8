//! The frozen patch-whitening layer of the fast CIFAR-10 recipe (Keller Jordan's airbench,
//! arXiv 2404.00498): a first convolution whose filters decorrelate the input's patches,
//! computed once from the training images when a run starts.
//!
//! ```text
//! C = (1 / P) sum over every kh x kw patch x of the images:  x x^T      (d x d, d = kh kw c;
//!                                                                       about the origin: the
//!                                                                       images are normalised)
//! C = V diag(lambda) V^T                     (eigenvalues largest first: `sym_eigen`)
//! filter o     =  v_o / sqrt(lambda_o + eps)     o = 0 .. d-1
//! filter d + o = -v_o / sqrt(lambda_o + eps)     (the negatives, so that a following GELU
//!                                                 keeps both signs of every direction)
//! ```
//!
//! so the first d outputs have covariance diag(lambda / (lambda + eps)), nearly the identity.
//! The weights are then saved in checkpoints like any other; they are not trained.

use rayon::prelude::*;

use super::sym_eigen::symmetric_eigen;
use super::{LayerConfig, Network};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Added to every eigenvalue before its inverse square root, so that a direction the images
/// hardly vary in is not blown up (the recipe's value, for images normalised per channel).
pub const WHITENING_EPS: f64 = 5e-4;

/// The training images the covariance is estimated from: the first this many.
pub const WHITENING_IMAGES: usize = 5000;

/// Images per chunk of the covariance sum: fixed, so that the sum (and the weights) are the same
/// bits for any number of threads.
const IMAGES_PER_CHUNK: usize = 16;

/// The patch covariance (about the origin) of a batch of images [N, H, W, C] for a kh x kw
/// window, stride 1, no padding: d x d, row-major, d = kh kw c, the patch's values in the
/// order of HWIO weights (row, column, channel).
pub fn patch_covariance(images: &Tensor, kh: usize, kw: usize) -> Result<Vec<f64>> {
    let [n, h, w, c] = images.shape()[..] else {
        return Err(Error::shape("whitening", "images [N, H, W, C]", format!("{:?}", images.shape())));
    };
    if kh > h || kw > w || n == 0 {
        return Err(Error::invalid("whitening", format!("a {kh}x{kw} patch needs {n} > 0 images of at least that size, got {h}x{w}")));
    }
    let d = kh * kw * c;
    let (oh, ow) = (h - kh + 1, w - kw + 1);
    let sums: Vec<Vec<f64>> = images
        .data()
        .par_chunks(IMAGES_PER_CHUNK * h * w * c)
        .map(|chunk| {
            let mut sum = vec![0.0f64; d * d];
            let mut patch = vec![0.0f64; d];
            for img in chunk.chunks_exact(h * w * c) {
                for y in 0..oh {
                    for x in 0..ow {
                        for ky in 0..kh {
                            let row = &img[((y + ky) * w + x) * c..][..kw * c];
                            for (dst, &v) in patch[ky * kw * c..][..kw * c].iter_mut().zip(row) {
                                *dst = f64::from(v);
                            }
                        }
                        // The upper triangle only; mirrored below.
                        for i in 0..d {
                            let pi = patch[i];
                            for j in i..d {
                                sum[i * d + j] += pi * patch[j];
                            }
                        }
                    }
                }
            }
            sum
        })
        .collect();
    let count = (n * oh * ow) as f64;
    let mut cov = vec![0.0f64; d * d];
    for sum in &sums {
        cov.iter_mut().zip(sum).for_each(|(a, b)| *a += b);
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / count;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    Ok(cov)
}

/// Whitening weights, HWIO [kh, kw, c, 2d], from the patch covariance `cov` (d x d).
pub fn whitening_weights(cov: &[f64], kh: usize, kw: usize, c: usize, eps: f64) -> Tensor {
    let d = kh * kw * c;
    let (values, vectors) = symmetric_eigen(cov, d);
    let mut w = vec![0.0f32; d * 2 * d];
    for (o, (lambda, v)) in values.iter().zip(&vectors).enumerate() {
        // A covariance is positive semi-definite; rounding may leave a tiny negative value.
        let scale = 1.0 / (lambda.max(0.0) + eps).sqrt();
        for (i, &vi) in v.iter().enumerate() {
            w[i * 2 * d + o] = (vi * scale) as f32;
            w[i * 2 * d + d + o] = (-vi * scale) as f32;
        }
    }
    Tensor::from_vec(&[kh, kw, c, 2 * d], w).expect("the shape holds d x 2d values")
}

/// Sets the weights of `net`'s first layer, a `whiten = true` convolution, from `images`
/// (normalised, [N, H, W, C]); does nothing for a network without one. Returns whether it did.
pub fn whiten_first_layer(net: &mut Network, images: &Tensor) -> Result<bool> {
    let Some(LayerConfig::Conv2d { kernel, whiten: true, .. }) = net.spec().layers.first() else { return Ok(false) };
    let (kh, kw) = kernel.hw();
    let c = net.spec().input[2];
    let weights = whitening_weights(&patch_covariance(images, kh, kw)?, kh, kw, c, WHITENING_EPS);
    let param = net
        .params_mut()
        .into_iter()
        .find(|p| p.name == "0.conv2d.weight")
        .ok_or_else(|| Error::invalid("whitening", "the first layer has no parameter 0.conv2d.weight"))?;
    if param.value.shape() != weights.shape() {
        return Err(Error::shape("whitening", format!("{:?}", param.value.shape()), format!("{:?}", weights.shape())));
    }
    param.value = weights;
    Ok(true)
}
