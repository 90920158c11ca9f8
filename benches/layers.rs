//! Every layer of the seed network, forward and backward, at its shapes in a batch of 64, and
//! the 3x3 convolutions and batch norms of the ResNet config at batch 128, so that a regression
//! in one kernel shows up by name. The ResNet's 3x3 convolutions run both ways where Winograd
//! F(4x4, 3x3) is taken (`.../forward`) and by im2col (`.../im2col_forward`). GELU (the fast
//! CIFAR-10 network's activation) runs both as the vector kernels and as the libm reference.
//! The ResNet's and the airbench network's 3x3 convolutions also run with bf16 products
//! (`.../bf16/forward`, `.../bf16/backward`; on AVX512-BF16 where the CPU has it, else emulated).
//! The direct dW kernel runs alone on one chunk of 8 images (`.../dw_direct`), and so does the
//! direct forward kernel (`.../direct`, one thread).
//! Run: cargo bench --bench layers

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

use convnet::layers::{BatchNormLayer, Layer, Mode};
use convnet::ops::conv2d::{
    conv2d_backward_into, conv2d_forward_im2col_into, conv2d_forward_into, Conv2dGradsMut, ConvScratch, OutputGrad,
};
use convnet::ops::dense::{dense_backward_into, dense_forward_into};
use convnet::ops::gelu::{gelu, gelu_backward_into, gelu_derivative, gelu_forward_into};
use convnet::ops::lrn::{lrn_backward_into, lrn_forward_into, LrnParams};
use convnet::ops::pool::{max_pool2d_backward_into, max_pool2d_forward_into};
use convnet::ops::Precision;
use convnet::ops::{Padding, Window};
use convnet::Tensor;

fn ramp(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()).unwrap()
}

fn conv(c: &mut Criterion, name: &str, x_shape: [usize; 4], c_out: usize, k: usize, need_dx: bool) {
    conv_in(c, name, x_shape, c_out, k, need_dx, Precision::F32)
}

fn conv_in(c: &mut Criterion, name: &str, x_shape: [usize; 4], c_out: usize, k: usize, need_dx: bool, precision: Precision) {
    let win = Window::new(k, k, 1, 1, Padding::Same);
    let x = ramp(&x_shape);
    let w = ramp(&[k, k, x_shape[3], c_out]);
    let b = ramp(&[c_out]);
    let dy = ramp(&[x_shape[0], x_shape[1], x_shape[2], c_out]);
    let (mut y, mut dx, mut dw, mut db, mut s) =
        (Tensor::empty(), Tensor::empty(), Tensor::empty(), Tensor::empty(), ConvScratch::default());
    c.bench_function(&format!("{name}/forward"), |bch| {
        bch.iter(|| conv2d_forward_into(&x, &w, &b, &win, true, precision, &mut y, &mut s).unwrap())
    });
    c.bench_function(&format!("{name}/backward"), |bch| {
        bch.iter(|| {
            let grads = Conv2dGradsMut { d_input: if need_dx { Some(&mut dx) } else { None }, d_weight: &mut dw, d_bias: &mut db };
            conv2d_backward_into(&x, &w, OutputGrad::Plain(&dy), &win, precision, grads, &mut s).unwrap()
        })
    });
    if need_dx {
        c.bench_function(&format!("{name}/dw_only"), |bch| {
            bch.iter(|| {
                let grads = Conv2dGradsMut { d_input: None, d_weight: &mut dw, d_bias: &mut db };
                conv2d_backward_into(&x, &w, OutputGrad::Plain(&dy), &win, precision, grads, &mut s).unwrap()
            })
        });
    }
}

fn pool(c: &mut Criterion, name: &str, x_shape: [usize; 4], win: Window) {
    let x = ramp(&x_shape);
    let (mut y, mut arg, mut dx) = (Tensor::empty(), Vec::new(), Tensor::empty());
    max_pool2d_forward_into(&x, &win, &mut y, &mut arg).unwrap();
    let dy = ramp(y.shape());
    c.bench_function(&format!("{name}/forward"), |bch| bch.iter(|| max_pool2d_forward_into(&x, &win, &mut y, &mut arg).unwrap()));
    c.bench_function(&format!("{name}/backward"), |bch| {
        bch.iter(|| max_pool2d_backward_into(&dy, &arg, x.shape(), &win, &mut dx).unwrap())
    });
}

fn lrn(c: &mut Criterion, name: &str, x_shape: [usize; 4]) {
    let p = LrnParams { depth_radius: 4, bias: 1.0, alpha: 0.001 / 9.0, beta: 0.75 };
    let x = ramp(&x_shape);
    let (mut y, mut scale, mut dx) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
    lrn_forward_into(&x, &p, &mut y, &mut scale).unwrap();
    let dy = ramp(&x_shape);
    c.bench_function(&format!("{name}/forward"), |bch| bch.iter(|| lrn_forward_into(&x, &p, &mut y, &mut scale).unwrap()));
    c.bench_function(&format!("{name}/backward"), |bch| bch.iter(|| lrn_backward_into(&x, &y, &scale, &dy, &p, &mut dx).unwrap()));
}

fn dense(c: &mut Criterion, name: &str, n: usize, fin: usize, fout: usize) {
    let (x, w, b, dy) = (ramp(&[n, fin]), ramp(&[fin, fout]), ramp(&[fout]), ramp(&[n, fout]));
    let (mut y, mut dx, mut dw, mut db) = (Tensor::empty(), Tensor::empty(), Tensor::empty(), Tensor::empty());
    c.bench_function(&format!("{name}/forward"), |bch| bch.iter(|| dense_forward_into(&x, &w, Some(&b), Precision::F32, &mut y).unwrap()));
    c.bench_function(&format!("{name}/backward"), |bch| {
        bch.iter(|| dense_backward_into(&x, &w, &dy, Precision::F32, Some(&mut dx), &mut dw, Some(&mut db)).unwrap())
    });
}

/// A 3x3 SAME convolution by the path `conv2d` picks, and its forward by im2col for comparison.
fn conv3x3(c: &mut Criterion, name: &str, x_shape: [usize; 4], c_out: usize) {
    conv(c, name, x_shape, c_out, 3, true);
    let win = Window::new(3, 3, 1, 1, Padding::Same);
    let (x, w, b) = (ramp(&x_shape), ramp(&[3, 3, x_shape[3], c_out]), ramp(&[c_out]));
    let (mut y, mut s) = (Tensor::empty(), ConvScratch::default());
    c.bench_function(&format!("{name}/im2col_forward"), |bch| {
        bch.iter(|| conv2d_forward_im2col_into(&x, &w, &b, &win, true, Precision::F32, &mut y, &mut s).unwrap())
    });
}

/// Training-mode batch norm with its ReLU folded in, forward and backward.
/// The direct dW kernel alone (`conv_dw_direct`) on one chunk of 8 images, as `conv2d`'s
/// backward pass calls it: `.../dw_direct`.
fn dw_direct(c: &mut Criterion, name: &str, x_shape: [usize; 4], c_out: usize) {
    use convnet::ops::conv_dw_direct::{weight_grad_direct, DirectShape};
    let g = convnet::ops::Geometry::new("bench", x_shape[1], x_shape[2], &Window::new(3, 3, 1, 1, Padding::Same)).unwrap();
    let x = ramp(&x_shape);
    let dz = ramp(&[x_shape[0], g.oh, g.ow, c_out]);
    let s = DirectShape { g: &g, images: x_shape[0], c_in: x_shape[3], c_out };
    let mut dw = vec![0.0; 9 * x_shape[3] * c_out];
    c.bench_function(&format!("{name}/dw_direct"), |bch| bch.iter(|| weight_grad_direct(x.data(), dz.data(), s, &mut dw)));
}

/// The direct forward kernel alone (`conv_direct`) on one thread, 8 images one after another,
/// as `conv2d`'s forward pass (and its stride-1 dX) calls it: `.../direct`.
fn direct(c: &mut Criterion, name: &str, x_shape: [usize; 4], c_out: usize, win: Window) {
    use convnet::ops::conv_direct::{forward_direct_rows, DirectConv};
    let g = convnet::ops::Geometry::new("bench", x_shape[1], x_shape[2], &win).unwrap();
    let x = ramp(&x_shape);
    let (w, b) = (ramp(&[win.kh, win.kw, x_shape[3], c_out]), ramp(&[c_out]));
    let s = DirectConv { g: &g, c_in: x_shape[3], c_out, w: w.data(), b: b.data(), relu: true };
    let (in_len, out_len) = (x_shape[1] * x_shape[2] * x_shape[3], g.oh * g.ow * c_out);
    let (mut y, mut buf) = (vec![0.0; x_shape[0] * out_len], Vec::new());
    c.bench_function(&format!("{name}/direct"), |bch| {
        bch.iter(|| {
            for (x_img, y_img) in x.data().chunks_exact(in_len).zip(y.chunks_exact_mut(out_len)) {
                forward_direct_rows(x_img, s, 0..g.oh, &mut buf, y_img);
            }
        })
    });
}

fn batch_norm_relu(c: &mut Criterion, name: &str, x_shape: [usize; 4]) {
    let x = ramp(&x_shape);
    let dy = ramp(&x_shape);
    let mut bn = BatchNormLayer::new(name.to_string(), &x_shape[1..], 0.1, 1e-5);
    bn.relu = true;
    c.bench_function(&format!("{name}/forward"), |bch| bch.iter(|| bn.forward(&x, Mode::Train).unwrap()));
    // The backward pass reads the forward's statistics: one forward first, so that the
    // backward can be measured (or profiled) on its own.
    bn.forward(&x, Mode::Train).unwrap();
    c.bench_function(&format!("{name}/backward"), |bch| bch.iter(|| bn.backward(&x, &dy, true).unwrap()));
}

/// GELU on one thread: the vector kernels and the libm reference loop, side by side.
fn gelu_both(c: &mut Criterion, name: &str, x_shape: [usize; 4]) {
    let x = ramp(&x_shape);
    let dy = ramp(&x_shape);
    let (mut y, mut dx) = (Tensor::zeros(&x_shape), Tensor::zeros(&x_shape));
    c.bench_function(&format!("{name}/forward"), |bch| bch.iter(|| gelu_forward_into(x.data(), y.data_mut())));
    c.bench_function(&format!("{name}/forward_reference"), |bch| {
        bch.iter(|| y.data_mut().iter_mut().zip(x.data()).for_each(|(y, &x)| *y = gelu(x)))
    });
    c.bench_function(&format!("{name}/backward"), |bch| bch.iter(|| gelu_backward_into(x.data(), dy.data(), dx.data_mut())));
    c.bench_function(&format!("{name}/backward_reference"), |bch| {
        bch.iter(|| dx.data_mut().iter_mut().zip(dy.data()).zip(x.data()).for_each(|((dx, &dy), &x)| *dx = dy * gelu_derivative(x)))
    });
}

fn bench(c: &mut Criterion) {
    let n = 128;
    conv3x3(c, "resnet/conv_3x3x16x32_32x32", [n, 32, 32, 16], 32);
    conv3x3(c, "resnet/conv_3x3x32x32_16x16", [n, 16, 16, 32], 32);
    conv3x3(c, "resnet/conv_3x3x32x64_16x16", [n, 16, 16, 32], 64);
    conv3x3(c, "resnet/conv_3x3x64x128_8x8", [n, 8, 8, 64], 128);
    conv3x3(c, "resnet/conv_3x3x128x128_4x4", [n, 4, 4, 128], 128);
    for (name, x_shape, c_out) in [
        ("resnet/conv_3x3x16x32_32x32", [8, 32, 32, 16], 32),
        ("resnet/conv_3x3x32x32_16x16", [8, 16, 16, 32], 32),
        ("resnet/conv_3x3x64x128_8x8", [8, 8, 8, 64], 128),
        ("resnet/conv_3x3x128x128_4x4", [8, 4, 4, 128], 128),
        ("airbench/conv_3x3x256x256_8x8", [8, 8, 8, 256], 256),
    ] {
        dw_direct(c, name, x_shape, c_out);
    }
    let same = |k| Window::new(k, k, 1, 1, Padding::Same);
    for (name, x_shape, c_out, win) in [
        ("resnet/conv_3x3x3x16_32x32", [8, 32, 32, 3], 16, same(3)),
        ("resnet/conv_3x3x16x32_32x32", [8, 32, 32, 16], 32, same(3)),
        ("resnet/conv_3x3x16x32_32x32/dx", [8, 32, 32, 32], 16, same(3)),
        ("fashion/conv_3x3x1x32_28x28", [8, 28, 28, 1], 32, same(3)),
        ("seed/conv1_5x5x3x64", [8, 32, 32, 3], 64, same(5)),
        ("airbench/conv_2x2x3x24_32x32", [8, 32, 32, 3], 24, Window::new(2, 2, 1, 1, Padding::Valid)),
    ] {
        direct(c, name, x_shape, c_out, win);
    }
    pool(c, "resnet/pool_2x2s2_32x32x32", [n, 32, 32, 32], Window::new(2, 2, 2, 2, Padding::Valid));
    batch_norm_relu(c, "resnet/batch_norm_relu_32x32x32", [n, 32, 32, 32]);
    batch_norm_relu(c, "resnet/batch_norm_relu_16x16x64", [n, 16, 16, 64]);

    gelu_both(c, "airbench/gelu_16x16x64", [64, 16, 16, 64]);

    // bf16 products, the same shapes (batch 128 for the ResNet, 64 for airbench's widths).
    conv_in(c, "resnet/conv_3x3x3x16_32x32/bf16", [128, 32, 32, 3], 16, 3, false, Precision::Bf16);
    conv_in(c, "resnet/conv_3x3x16x32_32x32/bf16", [128, 32, 32, 16], 32, 3, true, Precision::Bf16);
    conv_in(c, "resnet/conv_3x3x32x32_16x16/bf16", [128, 16, 16, 32], 32, 3, true, Precision::Bf16);
    conv_in(c, "resnet/conv_3x3x32x64_16x16/bf16", [128, 16, 16, 32], 64, 3, true, Precision::Bf16);
    conv_in(c, "resnet/conv_3x3x64x128_8x8/bf16", [128, 8, 8, 64], 128, 3, true, Precision::Bf16);
    conv_in(c, "resnet/conv_3x3x128x128_4x4/bf16", [128, 4, 4, 128], 128, 3, true, Precision::Bf16);
    for precision in [Precision::F32, Precision::Bf16] {
        conv_in(c, &format!("airbench/conv_3x3x64x256_15x15/{precision}"), [64, 15, 15, 64], 256, 3, true, precision);
        conv_in(c, &format!("airbench/conv_3x3x256x256_7x7/{precision}"), [64, 7, 7, 256], 256, 3, true, precision);
    }

    let n = 64;
    conv(c, "seed/conv1_5x5x3x64", [n, 32, 32, 3], 64, 5, false);
    pool(c, "seed/pool1_3x3s2_same", [n, 32, 32, 64], Window::new(3, 3, 2, 2, Padding::Same));
    lrn(c, "seed/lrn1", [n, 16, 16, 64]);
    conv(c, "seed/conv2_5x5x64x64", [n, 16, 16, 64], 64, 5, true);
    pool(c, "seed/pool2_2x2s2", [n, 16, 16, 64], Window::new(2, 2, 2, 2, Padding::Valid));
    lrn(c, "seed/lrn2", [n, 8, 8, 64]);
    dense(c, "seed/dense1_4096x256", n, 4096, 256);
    dense(c, "seed/dense2_256x10", n, 256, 10);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
