//! conv2d of the seed network's second layer (batch 64, 16x16x64 input, 5x5x64 kernel, SAME):
//! the fast paths against the plain reference loops. The forward pass takes Winograd
//! F(4x4, 5x5) (`fast_forward`; F(2x2, 5x5) before 2026-12-04); `im2col_forward` is the
//! im2col + GEMM path it replaced for this shape. The backward pass computes dX by Winograd too
//! (a convolution of dY with the flipped kernel), dW by Winograd F(5x5, 4x4) and db as a sum
//! (`fast_backward`). Run: cargo bench --bench conv

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

use convnet::ops::conv2d::{
    conv2d_backward_into, conv2d_forward_im2col_into, conv2d_forward_into, Conv2dGradsMut, ConvScratch, OutputGrad,
};
use convnet::ops::conv2d_ref::{conv_backward, conv_forward};
use convnet::ops::Precision;
use convnet::ops::{Padding, Window};
use convnet::Tensor;

fn ramp(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()).unwrap()
}

fn bench(c: &mut Criterion) {
    let win = Window::new(5, 5, 1, 1, Padding::Same);
    let x = ramp(&[64, 16, 16, 64]);
    let w = ramp(&[5, 5, 64, 64]);
    let b = ramp(&[64]);
    let dy = ramp(&[64, 16, 16, 64]);

    let mut g = c.benchmark_group("conv2d_seed_layer2");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    // The fast path as training runs it: output, gradients and scratch reused across calls.
    let (mut y, mut dx, mut dw, mut db, mut s) =
        (Tensor::empty(), Tensor::empty(), Tensor::empty(), Tensor::empty(), ConvScratch::default());
    g.bench_function("fast_forward", |bch| {
        bch.iter(|| conv2d_forward_into(&x, &w, &b, &win, false, Precision::F32, &mut y, &mut s).unwrap())
    });
    g.bench_function("im2col_forward", |bch| {
        bch.iter(|| conv2d_forward_im2col_into(&x, &w, &b, &win, false, Precision::F32, &mut y, &mut s).unwrap())
    });
    g.bench_function("fast_backward", |bch| {
        bch.iter(|| {
            let grads = Conv2dGradsMut { d_input: Some(&mut dx), d_weight: &mut dw, d_bias: &mut db };
            conv2d_backward_into(&x, &w, OutputGrad::Plain(&dy), &win, Precision::F32, grads, &mut s).unwrap()
        })
    });
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("reference_forward", |bch| bch.iter(|| conv_forward(&x, &w, &b, &win).unwrap()));
    g.bench_function("reference_backward", |bch| bch.iter(|| conv_backward(&x, &w, &dy, &win).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
