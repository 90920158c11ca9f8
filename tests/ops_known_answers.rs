//! The tutorial's worked examples, computed by hand.
mod common;

use convnet::ops::conv2d::conv2d_forward;
use convnet::ops::conv2d_ref::conv_forward;
use convnet::ops::{Padding, Window};
use convnet::Tensor;

#[test]
fn horizontal_edge_kernel_on_the_tutorial_patch_gives_377() {
    // kernel [[1,1,1],[0,0,0],[-1,-1,-1]] on [[200,199,189],[203,23,34],[177,12,22]]:
    // 200 + 199 + 189 - 177 - 12 - 22 = 588 - 211 = 377 (the tutorial's text says 328: a slip).
    let x = Tensor::from_vec(&[1, 3, 3, 1], vec![200., 199., 189., 203., 23., 34., 177., 12., 22.]).unwrap();
    let w = Tensor::from_vec(&[3, 3, 1, 1], vec![1., 1., 1., 0., 0., 0., -1., -1., -1.]).unwrap();
    let b = Tensor::zeros(&[1]);
    let win = Window::new(3, 3, 1, 1, Padding::Valid);
    assert_eq!(conv2d_forward(&x, &w, &b, &win, false).unwrap().data(), [377.0]);
    assert_eq!(conv_forward(&x, &w, &b, &win).unwrap().data(), [377.0]);
}

#[test]
fn output_sizes_follow_the_formula() {
    let b = Tensor::zeros(&[1]);
    let w = Tensor::zeros(&[3, 3, 1, 1]);
    // 6x8 input, 3x3 kernel, no padding, stride 1: (6 - 3)/1 + 1 = 4, (8 - 3)/1 + 1 = 6.
    let y = conv2d_forward(&Tensor::zeros(&[1, 6, 8, 1]), &w, &b, &Window::new(3, 3, 1, 1, Padding::Valid), false).unwrap();
    assert_eq!(y.shape(), [1, 4, 6, 1]);
    // SAME keeps the size at stride 1.
    let y = conv2d_forward(&Tensor::zeros(&[1, 6, 8, 1]), &w, &b, &Window::new(3, 3, 1, 1, Padding::Same), false).unwrap();
    assert_eq!(y.shape(), [1, 6, 8, 1]);
    // Explicit p = 1, stride 2 on 7x7: floor((7 + 2 - 3)/2) + 1 = 4.
    let y = conv2d_forward(&Tensor::zeros(&[1, 7, 7, 1]), &w, &b, &Window::new(3, 3, 2, 2, Padding::symmetric(1)), false).unwrap();
    assert_eq!(y.shape(), [1, 4, 4, 1]);
    // The seed network: 5x5 SAME on 32x32x3 -> 32x32x64.
    let y = conv2d_forward(
        &Tensor::zeros(&[1, 32, 32, 3]),
        &Tensor::zeros(&[5, 5, 3, 64]),
        &Tensor::zeros(&[64]),
        &Window::new(5, 5, 1, 1, Padding::Same),
        false,
    )
    .unwrap();
    assert_eq!(y.shape(), [1, 32, 32, 64]);
}

#[test]
fn vertical_edge_detector_responds_only_at_the_edge() {
    // The tutorial's 6x6 image: left half 10, right half 0; kernel [[1,0,-1]] x 3 rows.
    // Output 4x4: columns [0, 30, 30, 0] in every row.
    let mut img = vec![0.0; 36];
    for r in 0..6 {
        for c in 0..3 {
            img[r * 6 + c] = 10.0;
        }
    }
    let x = Tensor::from_vec(&[1, 6, 6, 1], img).unwrap();
    let w = Tensor::from_vec(&[3, 3, 1, 1], vec![1., 0., -1., 1., 0., -1., 1., 0., -1.]).unwrap();
    let y = conv2d_forward(&x, &w, &Tensor::zeros(&[1]), &Window::new(3, 3, 1, 1, Padding::Valid), false).unwrap();
    assert_eq!(y.data(), [0., 30., 30., 0.].repeat(4));
}
