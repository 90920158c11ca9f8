//! conv2d: finite-difference gradients of the fast path, and fast == reference loops.
mod common;

use common::*;
use convnet::ops::conv2d::{conv2d_backward, conv2d_forward};
use convnet::ops::conv2d_ref::{conv_backward, conv_forward};
use convnet::ops::Precision;
use convnet::ops::{Padding, Window};
use convnet::Tensor;

/// (name, input [n, h, w, c_in], c_out, window): stride 1 and 2, SAME, VALID and explicit,
/// odd and even sizes, square and non-square kernels, several channels, batch > 1, dW by
/// im2col + GEMM and by the direct kernel.
fn cases() -> Vec<(&'static str, [usize; 4], usize, Window)> {
    vec![
        ("3x3 s1 same", [2, 5, 5, 3], 4, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x2 s2 valid even", [2, 6, 7, 2], 3, Window::new(3, 2, 2, 2, Padding::Valid)),
        ("5x5 s(2,1) same odd", [3, 7, 6, 3], 2, Window::new(5, 5, 2, 1, Padding::Same)),
        ("4x4 s2 same even kernel", [2, 8, 8, 4], 5, Window::new(4, 4, 2, 2, Padding::Same)),
        ("3x3 s(1,2) explicit", [2, 5, 6, 2], 3, Window::new(3, 3, 1, 2, Padding::Explicit { top: 1, bottom: 2, left: 0, right: 1 })),
        ("1x1 s1 valid", [2, 4, 3, 5], 3, Window::new(1, 1, 1, 1, Padding::Valid)),
        ("1x5 s1 same", [9, 3, 6, 2], 2, Window::new(1, 5, 1, 1, Padding::Same)),
        // dW by the direct kernel (8 input channels or more, rows of 8 or more), dX by col2im.
        ("3x3 s1 same, dW direct", [2, 9, 10, 16], 12, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 s2 same, dW direct", [2, 17, 18, 8], 5, Window::new(3, 3, 2, 2, Padding::Same)),
    ]
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    for (seed, (name, xs, c_out, win)) in cases().into_iter().enumerate() {
        let seed = seed as u64 * 10;
        let x = random(&xs, seed);
        let w = random(&[win.kh, win.kw, xs[3], c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        let y = conv2d_forward(&x, &w, &b, &win, false).unwrap();
        let r = random(y.shape(), seed + 3);
        let g = conv2d_backward(&x, &w, &r, &win).unwrap();
        let (eps, tol) = (1e-2, 2e-3);
        check_gradient(&format!("conv2d {name} dX"), &x, &r, eps, tol, &g.d_input, |x| conv2d_forward(x, &w, &b, &win, false).unwrap());
        check_gradient(&format!("conv2d {name} dW"), &w, &r, eps, tol, &g.d_weight, |w| conv2d_forward(&x, w, &b, &win, false).unwrap());
        check_gradient(&format!("conv2d {name} db"), &b, &r, eps, tol, &g.d_bias, |b| conv2d_forward(&x, &w, b, &win, false).unwrap());
    }
}

#[test]
fn conv2d_fast_matches_reference_loops() {
    for (seed, (name, xs, c_out, win)) in cases().into_iter().enumerate() {
        let seed = seed as u64 * 10 + 100;
        let x = random(&xs, seed);
        let w = random(&[win.kh, win.kw, xs[3], c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        let fast = conv2d_forward(&x, &w, &b, &win, false).unwrap();
        let slow = conv_forward(&x, &w, &b, &win).unwrap();
        assert_close(&fast, &slow, 1e-4, &format!("{name} forward"));
        let dy = random(fast.shape(), seed + 3);
        let f = conv2d_backward(&x, &w, &dy, &win).unwrap();
        let s = conv_backward(&x, &w, &dy, &win).unwrap();
        assert_close(&f.d_input, &s.d_input, 1e-4, &format!("{name} dX"));
        assert_close(&f.d_weight, &s.d_weight, 1e-4, &format!("{name} dW"));
        assert_close(&f.d_bias, &s.d_bias, 1e-4, &format!("{name} db"));
    }
}

#[test]
fn conv2d_fast_matches_reference_at_seed_network_shape_with_batch_over_one_chunk() {
    // 19 images: more than two backward chunks of 8, the last one partial.
    let win = Window::new(5, 5, 1, 1, Padding::Same);
    let x = random(&[19, 8, 8, 16], 7);
    let w = random(&[5, 5, 16, 8], 8);
    let b = random(&[8], 9);
    let fast = conv2d_forward(&x, &w, &b, &win, false).unwrap();
    assert_close(&fast, &conv_forward(&x, &w, &b, &win).unwrap(), 1e-4, "forward");
    let dy = random(fast.shape(), 10);
    let f = conv2d_backward(&x, &w, &dy, &win).unwrap();
    let s = conv_backward(&x, &w, &dy, &win).unwrap();
    assert_close(&f.d_input, &s.d_input, 1e-4, "dX");
    assert_close(&f.d_weight, &s.d_weight, 1e-4, "dW");
    assert_close(&f.d_bias, &s.d_bias, 1e-4, "db");
}

#[test]
fn conv2d_fused_relu_equals_relu_of_output() {
    let win = Window::new(3, 3, 1, 1, Padding::Same);
    let x = random(&[2, 5, 5, 3], 1);
    let w = random(&[3, 3, 3, 4], 2);
    let b = random(&[4], 3);
    let plain = conv2d_forward(&x, &w, &b, &win, false).unwrap();
    let fused = conv2d_forward(&x, &w, &b, &win, true).unwrap();
    assert!(plain.data().iter().any(|&v| v < 0.0), "test needs negative outputs");
    for (p, f) in plain.data().iter().zip(fused.data()) {
        assert_eq!(p.max(0.0), *f);
    }
}

#[test]
fn conv2d_invalid_configurations_are_errors_naming_the_op() {
    let x = random(&[1, 4, 4, 3], 1);
    let b = random(&[2], 2);
    let stride0 = conv2d_forward(&x, &random(&[3, 3, 3, 2], 3), &b, &Window::new(3, 3, 0, 1, Padding::Same), false);
    let msg = stride0.unwrap_err().to_string();
    assert!(msg.contains("conv2d") && msg.contains("stride"), "{msg}");

    let too_big = conv2d_forward(&x, &random(&[5, 5, 3, 2], 3), &b, &Window::new(5, 5, 1, 1, Padding::Valid), false);
    let msg = too_big.unwrap_err().to_string();
    assert!(msg.contains("conv2d") && msg.contains("larger than the padded input"), "{msg}");

    let channels = conv2d_forward(&x, &random(&[3, 3, 2, 2], 3), &b, &Window::new(3, 3, 1, 1, Padding::Same), false);
    let msg = channels.unwrap_err().to_string();
    assert!(msg.contains("conv2d") && msg.contains("channel mismatch") && msg.contains("[1, 4, 4, 3]"), "{msg}");

    let bias = conv2d_forward(&x, &random(&[3, 3, 3, 2], 3), &random(&[3], 4), &Window::new(3, 3, 1, 1, Padding::Same), false);
    assert!(bias.unwrap_err().to_string().contains("bias"));
}

#[test]
fn conv2d_small_batch_forward_split_into_row_blocks_matches_reference_on_any_thread_count() {
    // Batches under 16 images split each image into blocks of output rows (batch-1 latency).
    // 20x12 SAME: 240 output pixels per image -> 2 blocks of 11 rows; stride 2 gives 10x6 = 60
    // pixels, one block; 36x36 gives 4 blocks of 9 rows. Each checked against the reference,
    // and bit for bit across thread counts and against the same images inside a batch of 16,
    // which runs whole images.
    let cases = [
        ([1, 20, 12, 3], 5, Window::new(5, 5, 1, 1, Padding::Same)),
        ([3, 20, 12, 4], 6, Window::new(3, 3, 2, 2, Padding::Same)),
        ([2, 36, 36, 3], 4, Window::new(5, 5, 1, 1, Padding::Same)),
        ([1, 23, 9, 2], 3, Window::new(3, 2, 1, 1, Padding::Valid)),
    ];
    for (i, (xs, c_out, win)) in cases.into_iter().enumerate() {
        let seed = 500 + i as u64 * 10;
        let x = random(&xs, seed);
        let w = random(&[win.kh, win.kw, xs[3], c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| conv2d_forward(&x, &w, &b, &win, true).unwrap())
        };
        let one = on(1);
        let mut slow = conv_forward(&x, &w, &b, &win).unwrap();
        slow.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
        assert_close(&one, &slow, 1e-4, &format!("case {i} forward"));
        for threads in [2, 3, 4] {
            assert_eq!(on(threads).data(), one.data(), "case {i}: {threads} threads differ from 1");
        }
        // The same images at the front of a batch of 16 (whole-image tasks).
        let per_image = xs[1] * xs[2] * xs[3];
        let big_x = Tensor::from_vec(
            &[16, xs[1], xs[2], xs[3]],
            (0..16).flat_map(|k| x.data()[(k % xs[0]) * per_image..][..per_image].to_vec()).collect(),
        )
        .unwrap();
        let big = conv2d_forward(&big_x, &w, &b, &win, true).unwrap();
        let mut front = big.data()[..one.len()].to_vec();
        let slice = Tensor::from_vec(one.shape(), std::mem::take(&mut front)).unwrap();
        assert_close(&slice, &one, 1e-5, &format!("case {i} batch of 16"));
    }
}

#[test]
fn conv2d_weight_gradient_by_groups_of_images_matches_reference_loops() {
    // dW is one product per group of images inside each 8-image chunk, as many images as keep
    // their columns within 2^20 values: 24x24 images with 3x3x60 patches (311,040 values)
    // make groups of 3, so chunk 0 runs groups of 3, 3 and 2 and chunk 1 one image; with the
    // fused ReLU the masked gradient of a whole group is built at once.
    use convnet::ops::conv2d::{conv2d_backward_into, ConvScratch, OutputGrad};
    let win = Window::new(3, 3, 1, 1, Padding::Same);
    let x = random(&[9, 24, 24, 60], 61);
    let w = random(&[3, 3, 60, 4], 62);
    let b = random(&[4], 63);
    let y = conv2d_forward(&x, &w, &b, &win, true).unwrap();
    let dy = random(y.shape(), 64);
    let mut masked = dy.clone();
    masked.data_mut().iter_mut().zip(y.data()).for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 });
    let reference = conv_backward(&x, &w, &masked, &win).unwrap();
    let (mut dx, mut dw, mut db, mut s) = (Tensor::empty(), Tensor::empty(), Tensor::empty(), ConvScratch::default());
    let through_relu = OutputGrad::ThroughRelu { dy: &dy, y: &y };
    conv2d_backward_into(&x, &w, through_relu, &win, Precision::F32, grads(&mut dx, &mut dw, &mut db), &mut s).unwrap();
    assert_close(&dw, &reference.d_weight, 1e-4, "dW");
    assert_close(&db, &reference.d_bias, 1e-4, "db");
    assert_close(&dx, &reference.d_input, 1e-4, "dX");
}

#[test]
fn conv2d_relu_backward_equals_backward_of_the_masked_gradient() {
    // The fused-ReLU backward masks dy by y > 0 inside its loop; it must give exactly what the
    // plain backward gives on a masked dy. 19 images: several chunks, the last one partial.
    use convnet::ops::conv2d::{conv2d_backward_into, Conv2dGradsMut, ConvScratch, OutputGrad};
    let win = Window::new(3, 3, 1, 1, Padding::Same);
    let x = random(&[19, 6, 5, 3], 41);
    let w = random(&[3, 3, 3, 4], 42);
    let b = random(&[4], 43);
    let y = conv2d_forward(&x, &w, &b, &win, true).unwrap();
    assert!(y.data().iter().filter(|&&v| v == 0.0).count() > y.len() / 10, "test needs the ReLU to cut");
    let dy = random(y.shape(), 44);
    let mut masked = dy.clone();
    masked.data_mut().iter_mut().zip(y.data()).for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 });
    let run = |relu: bool| {
        let (mut dx, mut dw, mut db, mut s) = (Tensor::empty(), Tensor::empty(), Tensor::empty(), ConvScratch::default());
        if relu {
            conv2d_backward_into(
                &x,
                &w,
                OutputGrad::ThroughRelu { dy: &dy, y: &y },
                &win,
                Precision::F32,
                grads(&mut dx, &mut dw, &mut db),
                &mut s,
            )
            .unwrap();
        } else {
            conv2d_backward_into(&x, &w, OutputGrad::Plain(&masked), &win, Precision::F32, grads(&mut dx, &mut dw, &mut db), &mut s)
                .unwrap();
        }
        (dx, dw, db)
    };
    let (fused, plain) = (run(true), run(false));
    assert_eq!(fused.0.data(), plain.0.data(), "dX");
    assert_eq!(fused.1.data(), plain.1.data(), "dW");
    assert_eq!(fused.2.data(), plain.2.data(), "db");
    // A y of the wrong shape is an error, not a panic.
    let (mut dw, mut db) = (Tensor::empty(), Tensor::empty());
    let no_dx = Conv2dGradsMut { d_input: None, d_weight: &mut dw, d_bias: &mut db };
    let err =
        conv2d_backward_into(&x, &w, OutputGrad::ThroughRelu { dy: &dy, y: &b }, &win, Precision::F32, no_dx, &mut ConvScratch::default())
            .unwrap_err();
    assert!(err.to_string().contains("conv2d backward"), "{err}");
}

#[test]
fn conv2d_winograd_path_matches_reference_loops_on_any_padding_batch_and_thread_count() {
    // 5x5 and 3x3 stride-1 kernels with at least 16 input channels run by Winograd: F(4x4, 5x5)
    // (8x8 tiles), or F(2x2, 5x5) (6x6 tiles) for outputs it covers with fewer transformed
    // values (2 rows, or 2x2), and F(4x4, 3x3). Batches under 16, and small images with wide
    // layers, split each stage over the threads, larger ones take chunks of 8 images; output sizes that the tile's output (2 or 4)
    // does not divide leave part-used tiles. Checked against the plain loops, and bit for bit
    // across thread counts.
    use convnet::ops::conv2d::{algorithm, Algorithm};
    let cases = [
        ("same 16x16 batch 1", [1, 16, 16, 16], 8, Window::new(5, 5, 1, 1, Padding::Same)),
        ("same 7x9 batch 3", [3, 7, 9, 17], 5, Window::new(5, 5, 1, 1, Padding::Same)),
        ("valid 9x8 batch 2", [2, 9, 8, 16], 4, Window::new(5, 5, 1, 1, Padding::Valid)),
        ("explicit uneven batch 1", [1, 6, 11, 20], 3, Window::new(5, 5, 1, 1, Padding::Explicit { top: 0, bottom: 3, left: 4, right: 1 })),
        ("same 5x6 batch 17 (chunks)", [17, 5, 6, 16], 6, Window::new(5, 5, 1, 1, Padding::Same)),
        // 100 tiles per image: chunks of 8 images in groups of 5 and 3, then a chunk of 1.
        ("same 20x20 batch 17 (groups)", [17, 20, 20, 16], 3, Window::new(5, 5, 1, 1, Padding::Same)),
        // 4,225 tiles: too many for the stage-by-stage path even at batch 1.
        ("same 130x130 batch 1 (large image)", [1, 130, 130, 16], 2, Window::new(5, 5, 1, 1, Padding::Same)),
        // A 2x6 and a 2x2 output: F(2x2, 5x5) (3 and 1 tiles of 36 against 2 and 1 of 64).
        ("valid 6x10 batch 3 (F(2x2, 5x5))", [3, 6, 10, 16], 5, Window::new(5, 5, 1, 1, Padding::Valid)),
        ("same 2x2 batch 17 (F(2x2, 5x5), chunks)", [17, 2, 2, 16], 4, Window::new(5, 5, 1, 1, Padding::Same)),
        // F(4x4, 3x3): 16x16 is 4x4 whole tiles; 7x9 leaves 3 rows and 1 column of the last.
        ("3x3 same 16x16 batch 1", [1, 16, 16, 32], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same 7x9 batch 3", [3, 7, 9, 33], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 valid 10x9 batch 2", [2, 10, 9, 32], 35, Window::new(3, 3, 1, 1, Padding::Valid)),
        (
            "3x3 explicit uneven batch 1",
            [1, 6, 11, 40],
            32,
            Window::new(3, 3, 1, 1, Padding::Explicit { top: 0, bottom: 2, left: 2, right: 1 }),
        ),
        ("3x3 same 5x6 batch 17 (chunks)", [17, 5, 6, 32], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same 12x12 batch 17", [17, 12, 12, 32], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same 8x8 batch 64", [64, 8, 8, 32], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same 9x9 batch 2, 24 -> 40 channels", [2, 9, 9, 24], 40, Window::new(3, 3, 1, 1, Padding::Same)),
        // 128 x 128 weights per position and 8 images under 512 tiles: the staged path in
        // groups of 256 tiles, here 64 images of 4 tiles and a group of 6; 5x5 kernels too.
        ("3x3 same 7x7 batch 70, 128 -> 128 (staged groups)", [70, 7, 7, 128], 128, Window::new(3, 3, 1, 1, Padding::Same)),
        ("5x5 same 3x3 batch 20, 128 -> 130 (staged)", [20, 3, 3, 128], 130, Window::new(5, 5, 1, 1, Padding::Same)),
    ];
    for (i, (name, xs, c_out, win)) in cases.into_iter().enumerate() {
        assert_eq!(algorithm(&win, xs[3], c_out), Algorithm::Winograd, "{name}: should take the Winograd path");
        let seed = 900 + i as u64 * 10;
        let x = random(&xs, seed);
        let w = random(&[win.kh, win.kw, xs[3], c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        let slow = conv_forward(&x, &w, &b, &win).unwrap();
        for relu in [false, true] {
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| conv2d_forward(&x, &w, &b, &win, relu).unwrap())
            };
            let one = on(1);
            let mut expected = slow.clone();
            if relu {
                expected.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
            }
            assert_close(&one, &expected, 2e-5, &format!("{name} relu {relu}"));
            for threads in [2, 3] {
                assert_eq!(on(threads).data(), one.data(), "{name} relu {relu}: {threads} threads differ from 1");
            }
        }
    }
}

#[test]
fn conv2d_winograd_weight_cache_follows_every_change_of_the_weights() {
    // The transformed weights are kept between calls and recomputed when the weight tensor's
    // version changes: after an in-place update, and for another weight tensor.
    use convnet::ops::conv2d::{conv2d_forward_into, ConvScratch};
    let win = Window::new(5, 5, 1, 1, Padding::Same);
    let x = random(&[1, 8, 8, 16], 31);
    let mut w = random(&[5, 5, 16, 4], 32);
    let other = random(&[5, 5, 16, 4], 33);
    let b = random(&[4], 34);
    let (mut y, mut scratch) = (Tensor::empty(), ConvScratch::default());
    let mut run = |w: &Tensor| {
        conv2d_forward_into(&x, w, &b, &win, false, Precision::F32, &mut y, &mut scratch).unwrap();
        let expected = conv_forward(&x, w, &b, &win).unwrap();
        assert_close(&y, &expected, 2e-5, "cached weights");
    };
    run(&w);
    run(&w);
    w.data_mut().iter_mut().for_each(|v| *v *= -0.5);
    run(&w);
    run(&other);
    run(&w);
}

#[test]
fn conv2d_backward_with_winograd_input_gradient_matches_reference_loops() {
    // A 5x5 or 3x3 stride-1 kernel with at least 16 output channels computes dX as a convolution of
    // dY with the flipped kernel, by Winograd; dW and db by im2col or the direct kernel. Paddings SAME,
    // VALID, uneven explicit, and one larger than the kernel (which falls back to col2im);
    // batches 1, 3 and 17; with and without the fused ReLU; bit for bit across threads.
    use convnet::ops::conv2d::{conv2d_backward_into, ConvScratch, OutputGrad};
    let cases = [
        ("same batch 3", [3, 9, 8, 4], 16, Window::new(5, 5, 1, 1, Padding::Same)),
        ("valid batch 1", [1, 10, 9, 3], 17, Window::new(5, 5, 1, 1, Padding::Valid)),
        ("explicit uneven batch 2", [2, 7, 11, 2], 16, Window::new(5, 5, 1, 1, Padding::Explicit { top: 0, bottom: 3, left: 4, right: 1 })),
        ("padding beyond the kernel", [1, 4, 4, 2], 16, Window::new(5, 5, 1, 1, Padding::symmetric(5))),
        ("same batch 17", [17, 6, 6, 3], 16, Window::new(5, 5, 1, 1, Padding::Same)),
        // dX of a 2x6 input: F(2x2, 5x5); the cases above take F(4x4, 5x5).
        ("same 2x6 batch 3 (dX by F(2x2, 5x5))", [3, 2, 6, 4], 16, Window::new(5, 5, 1, 1, Padding::Same)),
        // 3x3 takes Winograd for dX with 24 channels or more on both sides.
        ("3x3 same batch 3", [3, 9, 8, 32], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 valid batch 1", [1, 10, 9, 32], 33, Window::new(3, 3, 1, 1, Padding::Valid)),
        (
            "3x3 explicit uneven batch 2",
            [2, 7, 11, 32],
            32,
            Window::new(3, 3, 1, 1, Padding::Explicit { top: 0, bottom: 2, left: 2, right: 1 }),
        ),
        ("3x3 padding beyond the kernel", [1, 4, 4, 32], 32, Window::new(3, 3, 1, 1, Padding::symmetric(3))),
        ("3x3 same batch 64", [64, 8, 8, 32], 32, Window::new(3, 3, 1, 1, Padding::Same)),
    ];
    for (i, (name, xs, c_out, win)) in cases.into_iter().enumerate() {
        let seed = 1300 + i as u64 * 10;
        let x = random(&xs, seed);
        let w = random(&[win.kh, win.kw, xs[3], c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        let y = conv2d_forward(&x, &w, &b, &win, true).unwrap();
        let dy = random(y.shape(), seed + 3);
        for relu in [false, true] {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let (mut dx, mut dw, mut db, mut s) = (Tensor::empty(), Tensor::empty(), Tensor::empty(), ConvScratch::default());
                    if relu {
                        conv2d_backward_into(
                            &x,
                            &w,
                            OutputGrad::ThroughRelu { dy: &dy, y: &y },
                            &win,
                            Precision::F32,
                            grads(&mut dx, &mut dw, &mut db),
                            &mut s,
                        )
                        .unwrap();
                    } else {
                        conv2d_backward_into(
                            &x,
                            &w,
                            OutputGrad::Plain(&dy),
                            &win,
                            Precision::F32,
                            grads(&mut dx, &mut dw, &mut db),
                            &mut s,
                        )
                        .unwrap();
                    }
                    (dx, dw, db)
                })
            };
            let mut dz = dy.clone();
            if relu {
                dz.data_mut().iter_mut().zip(y.data()).for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 });
            }
            let slow = conv_backward(&x, &w, &dz, &win).unwrap();
            let one = run(1);
            assert_close(&one.0, &slow.d_input, 2e-5, &format!("{name} relu {relu} dX"));
            assert_close(&one.1, &slow.d_weight, 1e-4, &format!("{name} relu {relu} dW"));
            assert_close(&one.2, &slow.d_bias, 1e-4, &format!("{name} relu {relu} db"));
            for threads in [2, 3] {
                let other = run(threads);
                assert_eq!(other.0.data(), one.0.data(), "{name} relu {relu}: dX on {threads} threads");
                assert_eq!(other.1.data(), one.1.data(), "{name} relu {relu}: dW on {threads} threads");
            }
        }
    }
}

#[test]
fn conv2d_weight_gradient_by_winograd_matches_reference_loops() {
    // A 5x5 stride-1 convolution with 16 or more input channels whose output suits the 8x8
    // tile computes dW by Winograd F(5x5, 4x4), chunk by chunk of 8 images, when dX is not
    // wanted (a first layer) or goes by Winograd itself (16 or more output channels); else dW
    // stays with im2col. Outputs that 4 does not divide leave part-used blocks; batch 17 leaves
    // a chunk of one image. Against the reference loops, bit for bit across thread counts.
    let cases = [
        ("same 16x16 batch 3, dX by Winograd", [3, 16, 16, 16], 16, Window::new(5, 5, 1, 1, Padding::Same)),
        ("same 9x7 batch 17, dX by Winograd", [17, 9, 7, 16], 20, Window::new(5, 5, 1, 1, Padding::Same)),
        ("valid 12x10 batch 2", [2, 12, 10, 17], 16, Window::new(5, 5, 1, 1, Padding::Valid)),
        (
            "explicit uneven batch 1",
            [1, 7, 11, 16],
            18,
            Window::new(5, 5, 1, 1, Padding::Explicit { top: 0, bottom: 3, left: 4, right: 1 }),
        ),
        // dX by col2im (5 output channels): dW by im2col with it; without dX, by Winograd.
        ("same 8x8 batch 9, 5 outputs", [9, 8, 8, 16], 5, Window::new(5, 5, 1, 1, Padding::Same)),
    ];
    let combinations = [(false, true), (true, true), (false, false), (true, false)];
    check_weight_gradients_against_reference(&cases, 1700, &combinations);
}

#[test]
fn conv2d_weight_gradient_by_winograd_summed_over_the_batch_matches_reference_loops() {
    // A 3x3 stride-1 convolution with 64 or more channels on each side computes dW by Winograd
    // F(3x3, 4x4), the products summed over the whole batch in groups of 32, 16 or 8 images
    // (by the tiles per image) before one output transform, when dX is not wanted or goes by
    // Winograd itself; with dX by col2im (a padding over kh - 1), dW goes chunk by chunk with
    // it. Batches that leave a short last group, outputs of one tile and of part-used tiles.
    // Against the reference loops, bit for bit across thread counts and on a reused scratch.
    let cases = [
        ("same 7x7 batch 37: groups of 32 and 5", [37, 7, 7, 64], 64, Window::new(3, 3, 1, 1, Padding::Same)),
        ("same 15x13 batch 17: groups of 16 and 1", [17, 15, 13, 64], 66, Window::new(3, 3, 1, 1, Padding::Same)),
        ("valid 5x6 batch 3: a 3x4 output", [3, 5, 6, 65], 64, Window::new(3, 3, 1, 1, Padding::Valid)),
        ("same 3x3 batch 2: one tile", [2, 3, 3, 64], 64, Window::new(3, 3, 1, 1, Padding::Same)),
        ("explicit uneven batch 2", [2, 6, 9, 64], 64, Window::new(3, 3, 1, 1, Padding::Explicit { top: 0, bottom: 2, left: 2, right: 1 })),
        ("padding 3: dX by col2im", [2, 5, 5, 64], 64, Window::new(3, 3, 1, 1, Padding::Explicit { top: 3, bottom: 0, left: 1, right: 1 })),
    ];
    check_weight_gradients_against_reference(&cases, 2700, &[(false, true), (true, false), (false, false)]);
}

/// For each case and each (fused ReLU, dX wanted) combination: the backward pass (twice on one
/// scratch, so that the second reuses its buffers) against the reference loops, and its dW and
/// db bit for bit on 1, 2 and 3 threads.
fn check_weight_gradients_against_reference(cases: &[(&str, [usize; 4], usize, Window)], seed_base: u64, combinations: &[(bool, bool)]) {
    use convnet::ops::conv2d::{conv2d_backward_into, Conv2dGradsMut, ConvScratch, OutputGrad};
    for (i, &(name, xs, c_out, win)) in cases.iter().enumerate() {
        let seed = seed_base + i as u64 * 10;
        let x = random(&xs, seed);
        let w = random(&[win.kh, win.kw, xs[3], c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        let y = conv2d_forward(&x, &w, &b, &win, true).unwrap();
        let dy = random(y.shape(), seed + 3);
        for &(relu, want_dx) in combinations {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let (mut dx, mut dw, mut db, mut s) = (Tensor::empty(), Tensor::empty(), Tensor::empty(), ConvScratch::default());
                    let dy = if relu { OutputGrad::ThroughRelu { dy: &dy, y: &y } } else { OutputGrad::Plain(&dy) };
                    for _ in 0..2 {
                        let grads = Conv2dGradsMut { d_input: want_dx.then_some(&mut dx), d_weight: &mut dw, d_bias: &mut db };
                        conv2d_backward_into(&x, &w, dy, &win, Precision::F32, grads, &mut s).unwrap();
                    }
                    (dx, dw, db)
                })
            };
            let mut dz = dy.clone();
            if relu {
                dz.data_mut().iter_mut().zip(y.data()).for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 });
            }
            let slow = conv_backward(&x, &w, &dz, &win).unwrap();
            let what = format!("{name} relu {relu} dX {want_dx}");
            let one = run(1);
            assert_close(&one.1, &slow.d_weight, 2e-5, &format!("{what}: dW"));
            assert_close(&one.2, &slow.d_bias, 1e-5, &format!("{what}: db"));
            if want_dx {
                assert_close(&one.0, &slow.d_input, 2e-5, &format!("{what}: dX"));
            }
            for threads in [2, 3] {
                let other = run(threads);
                assert_eq!(other.1.data(), one.1.data(), "{what}: dW on {threads} threads");
                assert_eq!(other.2.data(), one.2.data(), "{what}: db on {threads} threads");
            }
        }
    }
}

#[test]
fn a_scratch_reused_for_more_channels_grows_its_winograd_weight_gradient_buffers() {
    // The per-thread tile buffers of dW by Winograd are sized by the channels of the first
    // convolution that used them; a later one with more channels must get larger ones (not
    // reuse the small ones, nor fail).
    use convnet::ops::conv2d::{conv2d_backward_into, Conv2dGradsMut, ConvScratch, OutputGrad};
    let win = Window::new(5, 5, 1, 1, Padding::Same);
    let mut scratch = ConvScratch::default();
    for (i, (c_in, c_out)) in [(16, 16), (16, 40), (48, 8)].into_iter().enumerate() {
        let x = random(&[2, 8, 8, c_in], 1800 + i as u64);
        let w = random(&[5, 5, c_in, c_out], 1810 + i as u64);
        let dy = random(&[2, 8, 8, c_out], 1820 + i as u64);
        let (mut dw, mut db) = (Tensor::empty(), Tensor::empty());
        let grads = Conv2dGradsMut { d_input: None, d_weight: &mut dw, d_bias: &mut db };
        conv2d_backward_into(&x, &w, OutputGrad::Plain(&dy), &win, Precision::F32, grads, &mut scratch).unwrap();
        let slow = conv_backward(&x, &w, &dy, &win).unwrap();
        assert_close(&dw, &slow.d_weight, 2e-5, &format!("{c_in} -> {c_out}: dW"));
    }
}

/// The buffers of a backward pass that computes every gradient.
fn grads<'a>(dx: &'a mut Tensor, dw: &'a mut Tensor, db: &'a mut Tensor) -> convnet::ops::conv2d::Conv2dGradsMut<'a> {
    convnet::ops::conv2d::Conv2dGradsMut { d_input: Some(dx), d_weight: dw, d_bias: db }
}

#[test]
fn winograd_is_chosen_for_3x3_and_5x5_stride_1_with_enough_channels_only() {
    use convnet::ops::conv2d::{algorithm, Algorithm};
    let five = Window::new(5, 5, 1, 1, Padding::Same);
    let three = Window::new(3, 3, 1, 1, Padding::Same);
    assert_eq!(algorithm(&five, 16, 1), Algorithm::Winograd);
    assert_eq!(algorithm(&three, 32, 32), Algorithm::Winograd);
    assert_eq!(algorithm(&Window::new(5, 5, 1, 1, Padding::symmetric(7)), 64, 64), Algorithm::Winograd, "any padding");
    assert_eq!(algorithm(&five, 15, 64), Algorithm::Im2col, "too few channels (an RGB input has 3)");
    assert_eq!(algorithm(&three, 3, 64), Algorithm::Im2col, "too few channels (an RGB input has 3)");
    assert_eq!(algorithm(&three, 23, 64), Algorithm::Im2col, "3x3 needs 24 input channels");
    assert_eq!(algorithm(&three, 64, 23), Algorithm::Im2col, "3x3 needs 24 output channels");
    assert_eq!(algorithm(&three, 24, 64), Algorithm::Winograd, "the airbench network's first 3x3 convolution");
    assert_eq!(algorithm(&Window::new(3, 3, 2, 2, Padding::Same), 64, 64), Algorithm::Im2col, "3x3 stride 2");
    assert_eq!(algorithm(&Window::new(4, 4, 1, 1, Padding::Same), 64, 64), Algorithm::Im2col, "4x4: no variant");
    assert_eq!(algorithm(&Window::new(1, 1, 1, 1, Padding::Valid), 64, 64), Algorithm::Im2col, "1x1");
    assert_eq!(algorithm(&Window::new(5, 5, 2, 2, Padding::Same), 64, 64), Algorithm::Im2col, "stride 2");
    assert_eq!(algorithm(&Window::new(5, 3, 1, 1, Padding::Same), 64, 64), Algorithm::Im2col, "5x3");
    // Stride 1 with at most 32 channels each side, where Winograd is not taken: directly.
    assert_eq!(algorithm(&three, 3, 16), Algorithm::Direct, "the ResNet's first layer");
    assert_eq!(algorithm(&three, 16, 32), Algorithm::Direct, "the ResNet's 16 -> 32");
    assert_eq!(algorithm(&three, 32, 16), Algorithm::Direct, "... and its input gradient");
    assert_eq!(algorithm(&Window::new(2, 2, 1, 1, Padding::Valid), 3, 24), Algorithm::Direct, "airbench's 2x2");
    assert_eq!(algorithm(&Window::new(1, 1, 1, 1, Padding::Valid), 32, 32), Algorithm::Direct, "1x1, 32 channels");
    assert_eq!(algorithm(&five, 3, 33), Algorithm::Im2col, "33 output channels");
    assert_eq!(algorithm(&three, 33, 16), Algorithm::Im2col, "33 input channels");
    assert_eq!(algorithm(&Window::new(3, 3, 2, 2, Padding::Same), 3, 16), Algorithm::Im2col, "stride 2");
    assert_eq!(algorithm(&Window::new(3, 3, 1, 2, Padding::Same), 3, 16), Algorithm::Im2col, "stride 2 across");
}

#[test]
fn bf16_on_the_tiles_takes_them_at_stride_1_from_16_channels_unless_winograd_costs_less_else_float32s_choice() {
    use convnet::ops::conv2d::{algorithm_in, Algorithm};
    use convnet::ops::window::Geometry;
    let three = Window::new(3, 3, 1, 1, Padding::Same);
    let choice = |precision, side: usize, window: &Window, c_in, c_out| {
        let g = Geometry::new("test", side, side, window).unwrap();
        algorithm_in(precision, &g, window, c_in, c_out)
    };
    let bf16 = Precision::Bf16Tiles;
    assert_eq!(choice(bf16, 31, &three, 24, 64), Algorithm::Tiles, "airbench 24 -> 64 at 31x31");
    assert_eq!(choice(bf16, 15, &three, 64, 256), Algorithm::Tiles, "airbench 64 -> 256 at 15x15");
    assert_eq!(choice(bf16, 32, &three, 16, 32), Algorithm::Tiles, "the ResNet's 16 -> 32 (direct in f32)");
    assert_eq!(choice(bf16, 7, &three, 256, 256), Algorithm::Tiles, "airbench 256 -> 256 at 7x7");
    assert_eq!(choice(bf16, 4, &three, 128, 128), Algorithm::Tiles, "the ResNet's 128 at 4x4");
    assert_eq!(choice(bf16, 7, &three, 1024, 1024), Algorithm::Winograd, "far wider: Winograd's transforms pay");
    assert_eq!(choice(bf16, 4, &three, 16, 16), Algorithm::Tiles, "small, but no Winograd (under 24 channels)");
    // Under 16 input channels, float32's choice; the direct kernel on operands rounded to bf16.
    assert_eq!(choice(bf16, 32, &three, 15, 32), Algorithm::Direct, "15 -> 32");
    assert_eq!(choice(bf16, 32, &three, 3, 16), Algorithm::Direct, "the ResNet's first layer");
    assert_eq!(choice(bf16, 32, &Window::new(5, 5, 1, 1, Padding::Same), 3, 33), Algorithm::Im2col, "33 output channels");
    assert_eq!(choice(bf16, 32, &Window::new(3, 3, 2, 2, Padding::Same), 64, 64), Algorithm::Im2col, "stride 2");
    assert_eq!(choice(bf16, 6, &Window::new(1, 1, 1, 1, Padding::Valid), 64, 64), Algorithm::Tiles, "1x1 pads nothing");
    // Float32, and bf16 by float32's algorithms, are `algorithm`'s choice.
    for p in [Precision::F32, Precision::Bf16Winograd] {
        assert_eq!(choice(p, 32, &three, 16, 32), Algorithm::Direct, "{p}");
        assert_eq!(choice(p, 31, &three, 24, 64), Algorithm::Winograd, "{p}");
        assert_eq!(choice(p, 15, &three, 64, 256), Algorithm::Winograd, "{p}");
        assert_eq!(choice(p, 6, &Window::new(1, 1, 1, 1, Padding::Valid), 64, 64), Algorithm::Im2col, "{p}");
    }
    // Plain bf16 takes the tiles where the CPU has AMX.
    let amx = convnet::ops::simd::detected_simd_level() == convnet::ops::simd::SimdLevel::Amx;
    let airbench = choice(Precision::Bf16, 31, &three, 24, 64);
    assert_eq!(airbench == Algorithm::Tiles, amx, "plain bf16 here: {airbench:?}");
}

#[test]
fn the_benches_im2col_path_matches_the_reference_where_winograd_would_be_taken() {
    use convnet::ops::conv2d::{algorithm, conv2d_forward_im2col_into, Algorithm, ConvScratch};
    let win = Window::new(5, 5, 1, 1, Padding::Same);
    let (x, w, b) = (random(&[2, 7, 6, 16], 71), random(&[5, 5, 16, 5], 72), random(&[5], 73));
    assert_eq!(algorithm(&win, 16, 5), Algorithm::Winograd, "conv2d_forward would not take im2col here");
    let mut y = Tensor::empty();
    conv2d_forward_im2col_into(&x, &w, &b, &win, false, Precision::F32, &mut y, &mut ConvScratch::default()).unwrap();
    assert_close(&y, &conv_forward(&x, &w, &b, &win).unwrap(), 1e-5, "im2col path");
}

/// The direct weight-gradient kernel (`conv_dw_direct`) against its plain loops, bit for bit
/// (every dW value is the same chain of fused multiply-adds), and against the reference
/// convolution's dW: input channels that fill 12-, 8-, 6-, 4-, 2- and 1-channel blocks, output
/// channels below, at and above the vector widths, strides 1 and 2, every padding, tall images
/// that take several tiles of rows and small ones whose tiles hold rows of several images.
#[test]
fn direct_weight_gradient_equals_its_plain_loops_bit_for_bit() {
    use convnet::ops::conv_dw_direct::{weight_grad_direct, weight_grad_direct_ref, DirectShape};
    use convnet::ops::window::Geometry;
    let cases = [
        ("3x3 same, 32 -> 32", [2, 9, 8, 32], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same, 13 -> 17", [3, 8, 10, 13], 17, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 valid, 27 -> 40", [1, 10, 9, 27], 40, Window::new(3, 3, 1, 1, Padding::Valid)),
        ("5x5 same, 3 -> 7", [2, 9, 11, 3], 7, Window::new(5, 5, 1, 1, Padding::Same)),
        ("3x3 stride 2, 8 -> 16", [2, 11, 12, 8], 16, Window::new(3, 3, 2, 2, Padding::Same)),
        ("3x2 explicit, 1 -> 1", [2, 7, 9, 1], 1, Window::new(3, 2, 1, 2, Padding::Explicit { top: 2, bottom: 0, left: 1, right: 3 })),
        ("3x3 tall, 40 -> 69 (several row tiles)", [1, 40, 12, 40], 69, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 4x4 images, 16 -> 16 (a tile of five images)", [5, 4, 4, 16], 16, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 3x5 images, 40 -> 69 (tiles across images)", [7, 3, 5, 40], 69, Window::new(3, 3, 1, 1, Padding::Same)),
    ];
    for (seed, (name, xs, c_out, win)) in cases.into_iter().enumerate() {
        let seed = 500 + seed as u64 * 10;
        let g = Geometry::new("test", xs[1], xs[2], &win).unwrap();
        let x = random(&xs, seed);
        let dz = random(&[xs[0], g.oh, g.ow, c_out], seed + 1);
        let s = DirectShape { g: &g, images: xs[0], c_in: xs[3], c_out };
        let len = win.kh * win.kw * xs[3] * c_out;
        let (mut fast, mut slow) = (vec![f32::NAN; len], vec![0.0; len]);
        weight_grad_direct(x.data(), dz.data(), s, &mut fast);
        weight_grad_direct_ref(x.data(), dz.data(), s, &mut slow);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        assert!(bits(&fast) == bits(&slow), "{name}: the kernel differs from its plain loops");
        let w = random(&[win.kh, win.kw, xs[3], c_out], seed + 2);
        let reference = conv_backward(&x, &w, &dz, &win).unwrap().d_weight;
        assert_close(&Tensor::from_vec(reference.shape(), fast).unwrap(), &reference, 1e-4, name);
    }
}

/// The direct forward kernel (`conv_direct`) against its plain loops, bit for bit (every output
/// is the same chain of fused multiply-adds, then + b and ReLU), and against the reference
/// convolution: input channels the kernel knows as constants (1, 3, 16, 32) and others (5, 7),
/// output channels below, at and above the vector widths and the 32 the layers use it for
/// (every block of 1-4 vectors, masked lanes), 1x1 to 5x5 kernels with SAME, VALID and
/// uneven explicit padding, images smaller than a tile (tiles across rows), and blocks of rows
/// from the middle and the end of an image.
#[test]
fn direct_convolution_equals_its_plain_loops_bit_for_bit() {
    use convnet::ops::conv_direct::{forward_direct_ref, forward_direct_rows, DirectConv};
    use convnet::ops::window::Geometry;
    let explicit = Padding::Explicit { top: 2, bottom: 0, left: 1, right: 3 };
    let cases = [
        ("3x3 same, 3 -> 16", [7, 9, 3], 16, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same, 16 -> 32", [6, 11, 16], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same, 32 -> 16", [5, 8, 32], 16, Window::new(3, 3, 1, 1, Padding::Same)),
        ("5x5 same, 1 -> 37", [9, 6, 1], 37, Window::new(5, 5, 1, 1, Padding::Same)),
        ("2x2 valid, 3 -> 24", [8, 7, 3], 24, Window::new(2, 2, 1, 1, Padding::Valid)),
        ("3x2 explicit, 5 -> 70", [6, 9, 5], 70, Window::new(3, 2, 1, 1, explicit)),
        ("1x1, 7 -> 9", [4, 5, 7], 9, Window::new(1, 1, 1, 1, Padding::Valid)),
        ("3x3 valid, 16 -> 49", [5, 6, 16], 49, Window::new(3, 3, 1, 1, Padding::Valid)),
        ("3x3 same 2x3 image, 32 -> 3", [2, 3, 32], 3, Window::new(3, 3, 1, 1, Padding::Same)),
    ];
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    for (seed, (name, [ih, iw, c_in], c_out, win)) in cases.into_iter().enumerate() {
        let seed = 700 + seed as u64 * 10;
        let g = Geometry::new("test", ih, iw, &win).unwrap();
        let x = random(&[1, ih, iw, c_in], seed);
        let w = random(&[win.kh, win.kw, c_in, c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        for relu in [false, true] {
            let s = DirectConv { g: &g, c_in, c_out, w: w.data(), b: b.data(), relu };
            let mut slow = vec![0.0; g.oh * g.ow * c_out];
            forward_direct_ref(x.data(), s, &mut slow);
            let row_len = g.ow * c_out;
            let mut buf = Vec::new();
            for rows in [0..g.oh, 0..1, g.oh / 2..g.oh, 1..g.oh.min(3)] {
                let mut fast = vec![f32::NAN; rows.len() * row_len];
                forward_direct_rows(x.data(), s, rows.clone(), &mut buf, &mut fast);
                let want = &slow[rows.start * row_len..rows.end * row_len];
                assert!(bits(&fast) == bits(want), "{name} relu {relu} rows {rows:?}: the kernel differs from its plain loops");
            }
            let reference = conv_forward(&x, &w, &b, &win).unwrap();
            let reference = reference.data().iter().map(|&v| if relu { v.max(0.0) } else { v }).collect();
            let reference = Tensor::from_vec(&[1, g.oh, g.ow, c_out], reference).unwrap();
            assert_close(&Tensor::from_vec(&[1, g.oh, g.ow, c_out], slow).unwrap(), &reference, 1e-4, name);
        }
    }
}

/// A weight gradient large enough (3x3x64x64 = 36,864 values) for the chunks' partials to be
/// added on all threads at once, block by block: the same bits on 1, 2 and 3 threads (every
/// value gets the partials of its 3 chunks in chunk order), and the reference's values.
#[test]
fn a_large_weight_gradient_is_summed_in_parallel_to_the_same_bits_on_any_thread_count() {
    let win = Window::new(3, 3, 1, 1, Padding::Same);
    // 48 input channels: dW by the direct kernel, chunk by chunk (64 would sum by Winograd).
    let (x, w) = (random(&[20, 4, 4, 48], 901), random(&[3, 3, 48, 96], 902));
    let dy = random(&[20, 4, 4, 96], 903);
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| conv2d_backward(&x, &w, &dy, &win).unwrap())
    };
    let one = on(1);
    assert!(one.d_weight.len() > 2 * (1 << 14), "the test must reach the parallel sum");
    assert_close(&one.d_weight, &conv_backward(&x, &w, &dy, &win).unwrap().d_weight, 1e-4, "dW");
    for threads in [2, 3] {
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&on(threads).d_weight), bits(&one.d_weight), "dW on {threads} threads");
    }
}
