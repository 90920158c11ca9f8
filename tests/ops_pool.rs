//! Max and average pooling: gradients, fast == reference, TensorFlow SAME semantics.
mod common;

use common::*;
use convnet::ops::pool::{avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward};
use convnet::ops::pool_ref::{pool_backward, pool_forward, PoolMode};
use convnet::ops::{Padding, Window};

fn cases() -> Vec<(&'static str, [usize; 4], Window)> {
    vec![
        ("2x2 s2 valid", [2, 4, 6, 3], Window::new(2, 2, 2, 2, Padding::Valid)),
        ("3x3 s2 same (seed pool1)", [2, 8, 8, 3], Window::new(3, 3, 2, 2, Padding::Same)),
        ("3x3 s2 same odd", [2, 7, 5, 2], Window::new(3, 3, 2, 2, Padding::Same)),
        ("3x2 s1 same", [3, 5, 4, 2], Window::new(3, 2, 1, 1, Padding::Same)),
        ("2x3 s(1,2) valid", [2, 5, 7, 2], Window::new(2, 3, 1, 2, Padding::Valid)),
        ("3x3 s2 explicit 1", [2, 6, 5, 2], Window::new(3, 3, 2, 2, Padding::symmetric(1))),
        // 19 channels: two 8-wide SIMD blocks and 3 channels of the scalar tail.
        ("3x3 s2 same, 19 channels", [2, 7, 6, 19], Window::new(3, 3, 2, 2, Padding::Same)),
    ]
}

#[test]
fn max_pool_gradients_match_finite_differences() {
    for (seed, (name, xs, win)) in cases().into_iter().enumerate() {
        let x = distinct(&xs, seed as u64);
        let (y, arg) = max_pool2d_forward(&x, &win).unwrap();
        let r = random(y.shape(), seed as u64 + 50);
        let dx = max_pool2d_backward(&r, &arg, x.shape(), &win).unwrap();
        check_gradient(&format!("max_pool {name}"), &x, &r, 1e-3, 1e-3, &dx, |x| max_pool2d_forward(x, &win).unwrap().0);
    }
}

#[test]
fn avg_pool_gradients_match_finite_differences() {
    for (seed, (name, xs, win)) in cases().into_iter().enumerate() {
        let x = random(&xs, seed as u64);
        let y = avg_pool2d_forward(&x, &win).unwrap();
        let r = random(y.shape(), seed as u64 + 50);
        let dx = avg_pool2d_backward(&r, x.shape(), &win).unwrap();
        check_gradient(&format!("avg_pool {name}"), &x, &r, 1e-2, 1e-3, &dx, |x| avg_pool2d_forward(x, &win).unwrap());
    }
}

#[test]
fn pool_fast_matches_reference_loops() {
    for (seed, (name, xs, win)) in cases().into_iter().enumerate() {
        // Random values with deliberate ties (rounded to 0.25) to pin down the tie rule.
        let mut x = random(&xs, seed as u64 + 7);
        x.data_mut().iter_mut().for_each(|v| *v = (*v * 4.0).round() / 4.0);
        let (y, arg) = max_pool2d_forward(&x, &win).unwrap();
        assert_close(&y, &pool_forward(&x, &win, PoolMode::Max).unwrap(), 1e-6, &format!("max {name} forward"));
        let dy = random(y.shape(), seed as u64 + 8);
        let fast = max_pool2d_backward(&dy, &arg, x.shape(), &win).unwrap();
        assert_close(&fast, &pool_backward(&x, &dy, &win, PoolMode::Max).unwrap(), 1e-6, &format!("max {name} backward"));

        let y = avg_pool2d_forward(&x, &win).unwrap();
        assert_close(&y, &pool_forward(&x, &win, PoolMode::Average).unwrap(), 1e-5, &format!("avg {name} forward"));
        let fast = avg_pool2d_backward(&dy, x.shape(), &win).unwrap();
        assert_close(&fast, &pool_backward(&x, &dy, &win, PoolMode::Average).unwrap(), 1e-5, &format!("avg {name} backward"));
    }
}

#[test]
fn max_pool_2x2_stride_2_on_a_4x4_example() {
    // [[1, 3, 2, 1],
    //  [4, 2, 0, 1],        max of each 2x2 block:  [[4, 2],
    //  [5, 6, 1, 8],                                 [7, 8]]
    //  [7, 0, 3, 2]]
    let x = convnet::Tensor::from_vec(&[1, 4, 4, 1], vec![1., 3., 2., 1., 4., 2., 0., 1., 5., 6., 1., 8., 7., 0., 3., 2.]).unwrap();
    let win = Window::new(2, 2, 2, 2, Padding::Valid);
    let (y, arg) = max_pool2d_forward(&x, &win).unwrap();
    assert_eq!(y.shape(), [1, 2, 2, 1]);
    assert_eq!(y.data(), [4., 2., 7., 8.]);
    // The gradient goes to the max positions only: indices 4 (the 4), 2 (the 2), 12 (7), 11 (8).
    let dy = convnet::Tensor::from_vec(&[1, 2, 2, 1], vec![1., 2., 3., 4.]).unwrap();
    let dx = max_pool2d_backward(&dy, &arg, x.shape(), &win).unwrap();
    let mut expected = vec![0.0; 16];
    expected[4] = 1.;
    expected[2] = 2.;
    expected[12] = 3.;
    expected[11] = 4.;
    assert_eq!(dx.data(), expected);
    // Average pool of the same blocks: (1+3+4+2)/4, (2+1+0+1)/4, (5+6+7+0)/4, (1+8+3+2)/4.
    let avg = avg_pool2d_forward(&x, &win).unwrap();
    assert_eq!(avg.data(), [2.5, 1.0, 4.5, 3.5]);
}

#[test]
fn same_pooling_follows_tensorflow() {
    // 3x3 stride 2 SAME on 4 columns: out = ceil(4/2) = 2, padding (1*2 + 3 - 4) = 1, all of it
    // after. Windows cover columns {0,1,2} and {2,3,pad}.
    let x = convnet::Tensor::from_vec(&[1, 1, 4, 1], vec![1., 2., 3., -4.]).unwrap();
    let win = Window::new(1, 3, 1, 2, Padding::Same);
    let (y, _) = max_pool2d_forward(&x, &win).unwrap();
    assert_eq!(y.data(), [3., 3.]);
    // The average divides by the cells inside the image: (3 - 4) / 2, not / 3.
    let avg = avg_pool2d_forward(&x, &win).unwrap();
    assert_eq!(avg.data(), [2., -0.5]);
    // Padded cells never win, even against negative values.
    let neg = convnet::Tensor::from_vec(&[1, 1, 4, 1], vec![-1., -2., -3., -4.]).unwrap();
    assert_eq!(max_pool2d_forward(&neg, &win).unwrap().0.data(), [-1., -3.]);
    // The seed network's pool1: 32 -> 16.
    let (y, _) = max_pool2d_forward(&random(&[1, 32, 32, 2], 1), &Window::new(3, 3, 2, 2, Padding::Same)).unwrap();
    assert_eq!(y.shape(), [1, 16, 16, 2]);
}

#[test]
fn pool_invalid_configurations_are_errors() {
    let x = random(&[1, 4, 4, 1], 1);
    let msg = max_pool2d_forward(&x, &Window::new(2, 2, 0, 2, Padding::Valid)).unwrap_err().to_string();
    assert!(msg.contains("max_pool2d") && msg.contains("stride"), "{msg}");
    let msg = avg_pool2d_forward(&x, &Window::new(5, 5, 1, 1, Padding::Valid)).unwrap_err().to_string();
    assert!(msg.contains("avg_pool2d") && msg.contains("larger"), "{msg}");
    let msg = max_pool2d_forward(&x, &Window::new(2, 2, 1, 1, Padding::symmetric(2))).unwrap_err().to_string();
    assert!(msg.contains("padding"), "{msg}");
}

#[test]
fn a_nan_wins_its_window_in_every_channel_block() {
    // NaN at channel 3 (SIMD block) and channel 17 (scalar tail) of one cell: both outputs of that
    // window are NaN, the other channels are untouched, and the argmax points at the NaN.
    let mut x = random(&[1, 4, 4, 18], 1);
    let at = |r: usize, c: usize, ch: usize| (r * 4 + c) * 18 + ch;
    x.data_mut()[at(1, 1, 3)] = f32::NAN;
    x.data_mut()[at(1, 1, 17)] = f32::NAN;
    let win = Window::new(2, 2, 2, 2, Padding::Valid);
    let (y, arg) = max_pool2d_forward(&x, &win).unwrap();
    assert!(y.data()[3].is_nan() && y.data()[17].is_nan());
    assert_eq!(arg[3] as usize, at(1, 1, 3));
    assert!(y.data().iter().enumerate().all(|(i, v)| i == 3 || i == 17 || v.is_finite()));
    assert!(pool_forward(&x, &win, PoolMode::Max).unwrap().data()[17].is_nan());
}
