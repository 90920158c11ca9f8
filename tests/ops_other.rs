//! LRN, activations, dense, softmax cross-entropy and L2: gradients and known answers.
mod common;

use common::*;
use convnet::ops::activation::Activation;
use convnet::ops::dense::{dense_backward, dense_forward};
use convnet::ops::gelu::{gelu, gelu_backward_into, gelu_derivative, gelu_forward_into};
use convnet::ops::l2::{l2_backward, l2_penalty};
use convnet::ops::lrn::{lrn_backward, lrn_backward_ref, lrn_forward, lrn_forward_ref, LrnParams};
use convnet::ops::softmax::softmax_cross_entropy;
use convnet::Tensor;

const SEED_LRN: LrnParams = LrnParams { depth_radius: 4, bias: 1.0, alpha: 0.001 / 9.0, beta: 0.75 };
const STRONG_LRN: LrnParams = LrnParams { depth_radius: 2, bias: 1.0, alpha: 0.3, beta: 0.75 };
const ODD_LRN: LrnParams = LrnParams { depth_radius: 1, bias: 2.0, alpha: 0.5, beta: 0.6 };

#[test]
fn lrn_gradients_match_finite_differences() {
    for (i, p) in [SEED_LRN, STRONG_LRN, ODD_LRN].iter().enumerate() {
        // 3x3 values over 20 channels (window wider and narrower than the channel count).
        let mut x = random(&[2, 3, 3, 20], i as u64);
        x.data_mut().iter_mut().for_each(|v| *v *= 3.0);
        let (y, scale) = lrn_forward(&x, p).unwrap();
        let r = random(y.shape(), 40 + i as u64);
        let dx = lrn_backward(&x, &y, &scale, &r, p).unwrap();
        check_gradient(&format!("lrn {p:?}"), &x, &r, 1e-2, 2e-3, &dx, |x| lrn_forward(x, p).unwrap().0);
    }
}

#[test]
fn lrn_fast_matches_reference_loops() {
    for (i, p) in [SEED_LRN, STRONG_LRN, ODD_LRN].iter().enumerate() {
        // 64 channels and 300 pixels: several parallel tasks and the running-sum re-anchoring.
        let mut x = random(&[3, 10, 10, 64], 10 + i as u64);
        x.data_mut().iter_mut().for_each(|v| *v *= 5.0);
        let (y, scale) = lrn_forward(&x, p).unwrap();
        assert_close(&y, &lrn_forward_ref(&x, p).unwrap(), 1e-5, "lrn forward");
        let dy = random(x.shape(), 20 + i as u64);
        let fast = lrn_backward(&x, &y, &scale, &dy, p).unwrap();
        assert_close(&fast, &lrn_backward_ref(&x, &dy, p).unwrap(), 1e-4, "lrn backward");
    }
}

#[test]
fn an_lrn_radius_past_every_channel_is_the_whole_channel_window() {
    // 6 channels: radius 6, radius 13 (the reference loops' own windows) and radius 2^40 (which
    // once made the kernels ask for 2^43 bytes of scratch) all sum every channel's square.
    let mut x = random(&[2, 3, 3, 6], 7);
    x.data_mut().iter_mut().for_each(|v| *v *= 3.0);
    let dy = random(x.shape(), 8);
    let with = |r: usize| LrnParams { depth_radius: r, ..STRONG_LRN };
    let (y6, s6) = lrn_forward(&x, &with(6)).unwrap();
    let dx6 = lrn_backward(&x, &y6, &s6, &dy, &with(6)).unwrap();
    assert_close(&y6, &lrn_forward_ref(&x, &with(13)).unwrap(), 1e-5, "lrn forward, radius 6 against the loops' 13");
    assert_close(&dx6, &lrn_backward_ref(&x, &dy, &with(13)).unwrap(), 1e-4, "lrn backward, radius 6 against the loops' 13");
    let (y_huge, s_huge) = lrn_forward(&x, &with(1 << 40)).unwrap();
    assert_eq!(y_huge, y6);
    assert_eq!(lrn_backward(&x, &y_huge, &s_huge, &dy, &with(1 << 40)).unwrap(), dx6);
}

#[test]
fn lrn_known_answer() {
    // Two channels, radius 1: both see x0^2 + x1^2 = 1 + 4 = 5. With bias 1, alpha 0.2, beta 0.5:
    // scale = 1 + 0.2 * 5 = 2, y = x / sqrt(2).
    let p = LrnParams { depth_radius: 1, bias: 1.0, alpha: 0.2, beta: 0.5 };
    let x = Tensor::from_vec(&[1, 1, 1, 2], vec![1.0, 2.0]).unwrap();
    let (y, _) = lrn_forward(&x, &p).unwrap();
    let s = 2f32.sqrt();
    assert!((y.data()[0] - 1.0 / s).abs() < 1e-6 && (y.data()[1] - 2.0 / s).abs() < 1e-6, "{:?}", y.data());
}

#[test]
fn lrn_refuses_parameters_outside_their_domain_naming_the_key() {
    let x = random(&[1, 2, 2, 3], 5);
    let good = LrnParams { depth_radius: 1, bias: 1.0, alpha: 0.1, beta: 0.75 };
    for (bad, key) in [
        (LrnParams { bias: 0.0, ..good }, "bias"),
        (LrnParams { alpha: -0.1, ..good }, "alpha"),
        (LrnParams { beta: f32::NAN, ..good }, "beta"),
    ] {
        let err = lrn_forward(&x, &bad).expect_err("refused").to_string();
        assert!(err.contains("lrn") && err.contains(key), "{err}");
    }
}

#[test]
fn lrn_refuses_a_tensor_without_channels_naming_the_shape() {
    let p = LrnParams { depth_radius: 2, bias: 1.0, alpha: 1e-3, beta: 0.75 };
    for shape in [&[2, 3, 3, 0][..], &[]] {
        let x = Tensor::zeros(shape);
        let err = lrn_forward(&x, &p).unwrap_err().to_string();
        assert!(err.contains("lrn") && err.contains("a tensor with channels last") && err.contains(&format!("{shape:?}")), "{err}");
        let err = lrn_backward(&x, &x, &x, &x, &p).unwrap_err().to_string();
        assert!(err.contains("a tensor with channels last") && err.contains(&format!("{shape:?}")), "{err}");
    }
}

#[test]
fn activation_gradients_match_finite_differences() {
    for (i, act) in [Activation::Relu, Activation::Sigmoid, Activation::Tanh].into_iter().enumerate() {
        // Keep inputs away from relu's kink at 0.
        let mut x = random(&[2, 3, 4, 5], i as u64);
        x.data_mut().iter_mut().for_each(|v| *v = if v.abs() < 0.05 { 0.5 } else { *v * 3.0 });
        let f = |x: &Tensor| {
            let mut y = x.clone();
            act.forward(y.data_mut());
            y
        };
        let y = f(&x);
        let r = random(y.shape(), 9);
        let mut dx = r.clone();
        act.backward(y.data(), dx.data_mut());
        check_gradient(act.name(), &x, &r, 1e-2, 1e-3, &dx, f);
    }
    // Known values: sigmoid(0) = 0.5, tanh(0) = 0, relu(-3) = 0; no overflow at extremes.
    let mut v = [0.0, -3.0, 100.0, -100.0];
    Activation::Sigmoid.forward(&mut v);
    assert_eq!(v[0], 0.5);
    assert!(v.iter().all(|x| x.is_finite()) && v[2] == 1.0 && v[3] < 1e-40);
}

#[test]
fn gelu_is_the_exact_form_and_its_gradient_matches_finite_differences() {
    // Known answers, hand-computed from Phi: Phi(1) = 0.841345, Phi(-1) = 0.158655,
    // Phi(2) = 0.977250; GELU'(x) = Phi(x) + x phi(x), phi(1) = 0.241971, phi(0) = 0.398942.
    let close = |got: f32, want: f64| assert!((got as f64 - want).abs() <= 2e-6 * want.abs().max(1.0), "{got} vs {want}");
    close(gelu(0.0), 0.0);
    close(gelu(1.0), 0.841_344_7);
    close(gelu(-1.0), -0.158_655_3);
    close(gelu(2.0), 2.0 * 0.977_249_9);
    close(gelu_derivative(0.0), 0.5);
    close(gelu_derivative(1.0), 0.841_344_7 + 0.241_970_7);
    close(gelu_derivative(-1.0), 0.158_655_3 - 0.241_970_7);
    // Not the tanh approximation: at x = 1.5 the two differ by about 2e-4.
    let tanh_form = |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
    assert!((gelu(1.5) as f64 - tanh_form(1.5)).abs() > 1e-4);
    // Far out: x itself on the right, 0 on the left, and no NaN.
    assert_eq!((gelu(30.0), gelu(-30.0)), (30.0, -0.0));
    assert_eq!((gelu_derivative(30.0), gelu_derivative(-30.0)), (1.0, 0.0));
    // The slice forms against the plain formula in f64, and the gradient against finite
    // differences (inputs spread over [-6, 6]).
    let mut x = random(&[2, 3, 4, 5], 7);
    x.data_mut().iter_mut().for_each(|v| *v *= 6.0);
    let f = |x: &Tensor| {
        let mut y = Tensor::zeros(x.shape());
        gelu_forward_into(x.data(), y.data_mut());
        y
    };
    let y = f(&x);
    for (&x, &y) in x.data().iter().zip(y.data()) {
        let want = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2));
        assert!((y as f64 - want).abs() <= 1e-6 * want.abs().max(1.0), "gelu({x}) = {y}, want {want}");
    }
    let r = random(y.shape(), 9);
    let mut dx = Tensor::zeros(x.shape());
    gelu_backward_into(x.data(), r.data(), dx.data_mut());
    check_gradient("gelu", &x, &r, 1e-2, 1e-3, &dx, f);
}

#[test]
fn dense_gradients_match_finite_differences() {
    let x = random(&[4, 7], 1);
    let w = random(&[7, 5], 2);
    let b = random(&[5], 3);
    let y = dense_forward(&x, &w, &b).unwrap();
    let r = random(y.shape(), 4);
    let (dx, dw, db) = dense_backward(&x, &w, &r).unwrap();
    check_gradient("dense dX", &x, &r, 1e-2, 1e-3, &dx, |x| dense_forward(x, &w, &b).unwrap());
    check_gradient("dense dW", &w, &r, 1e-2, 1e-3, &dw, |w| dense_forward(&x, w, &b).unwrap());
    check_gradient("dense db", &b, &r, 1e-2, 1e-3, &db, |b| dense_forward(&x, &w, b).unwrap());
}

#[test]
fn dense_known_answer_and_mismatch() {
    // [1, 2] . [[1, 2], [3, 4]] + [10, 20] = [1 + 6 + 10, 2 + 8 + 20] = [17, 30]
    let x = Tensor::from_vec(&[1, 2], vec![1., 2.]).unwrap();
    let w = Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.]).unwrap();
    let b = Tensor::from_vec(&[2], vec![10., 20.]).unwrap();
    assert_eq!(dense_forward(&x, &w, &b).unwrap().data(), [17., 30.]);
    let msg = dense_forward(&x, &random(&[3, 2], 1), &b).unwrap_err().to_string();
    assert!(msg.contains("dense") && msg.contains("3"), "{msg}");
}

#[test]
fn softmax_cross_entropy_gradient_and_known_answer() {
    // logits [1, 2, 3], label 2: loss = -ln(e^3 / (e^1 + e^2 + e^3)) = ln(1 + e^-1 + e^-2)
    //                                = ln(1 + 0.367879 + 0.135335) = ln(1.503214) = 0.407606
    let z = Tensor::from_vec(&[1, 3], vec![1., 2., 3.]).unwrap();
    let (loss, grad) = softmax_cross_entropy(&z, &[2]).unwrap();
    assert!((loss - 0.407606).abs() < 1e-5, "{loss}");
    // p = [0.090031, 0.244728, 0.665241]; grad = p - onehot(2)
    let expected = [0.090031, 0.244728, 0.665241 - 1.0];
    for (g, e) in grad.data().iter().zip(expected) {
        assert!((g - e).abs() < 1e-5, "{:?}", grad.data());
    }
    // Stable for huge logits: [1000, 0] with label 0 is a loss of ~0, not NaN.
    let big = Tensor::from_vec(&[1, 2], vec![1000., 0.]).unwrap();
    assert!(softmax_cross_entropy(&big, &[0]).unwrap().0.abs() < 1e-6);

    let z = random(&[5, 4], 3);
    let labels = [0, 3, 1, 1, 2];
    let (_, grad) = softmax_cross_entropy(&z, &labels).unwrap();
    let one = Tensor::from_vec(&[1], vec![1.0]).unwrap();
    check_gradient("softmax_cross_entropy", &z, &one, 1e-2, 1e-3, &grad, |z| {
        Tensor::from_vec(&[1], vec![softmax_cross_entropy(z, &labels).unwrap().0]).unwrap()
    });
    assert!(softmax_cross_entropy(&z, &[0, 3, 1, 1, 4]).unwrap_err().to_string().contains("label 4"));
}

#[test]
fn l2_penalty_known_answer_and_gradient() {
    // lambda / 2 * (1 + 4 + 9) = 0.1 / 2 * 14 = 0.7
    assert!((l2_penalty(&[1., -2., 3.], 0.1) - 0.7).abs() < 1e-6);
    let w = random(&[10], 1);
    let mut grad = vec![0.0; 10];
    l2_backward(w.data(), 0.004, &mut grad);
    let analytic = Tensor::from_vec(&[10], grad).unwrap();
    let one = Tensor::from_vec(&[1], vec![1.0]).unwrap();
    check_gradient("l2", &w, &one, 1e-2, 1e-3, &analytic, |w| Tensor::from_vec(&[1], vec![l2_penalty(w.data(), 0.004)]).unwrap());
}

#[test]
fn l2_penalty_and_gradient_over_many_parallel_chunks_match_plain_loops() {
    // 40,003 values: several 16,384-value tasks and a remainder that is not a multiple of 8.
    let w: Vec<f32> = (0..40_003).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
    let plain: f64 = w.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() * 0.5 * 0.004f32 as f64;
    let fast = l2_penalty(&w, 0.004) as f64;
    assert!((fast - plain).abs() <= 1e-6 * plain, "{fast} vs {plain}");
    let mut grad: Vec<f32> = (0..w.len()).map(|i| i as f32 * 1e-3).collect();
    let expected: Vec<f32> = grad.iter().zip(&w).map(|(g, v)| g + 0.004 * v).collect();
    l2_backward(&w, 0.004, &mut grad);
    assert_eq!(grad, expected);
}

#[test]
fn dense_with_few_rows_split_by_columns_matches_plain_loops_on_any_thread_count() {
    // Up to 8 rows and a weight of at least 65,536 values: the product is split into blocks
    // of 32 output columns (200 = 6 blocks + 8). Checked against plain loops, and bit for bit
    // across thread counts.
    for n in [1, 3, 8, 9] {
        let (fin, fout) = (512, 200);
        let x = random(&[n, fin], 70 + n as u64);
        let w = random(&[fin, fout], 80);
        let b = random(&[fout], 90);
        let mut expected = vec![0.0f32; n * fout];
        for r in 0..n {
            for o in 0..fout {
                let dot: f64 = (0..fin).map(|i| x.data()[r * fin + i] as f64 * w.data()[i * fout + o] as f64).sum();
                expected[r * fout + o] = (dot + b.data()[o] as f64) as f32;
            }
        }
        let expected = Tensor::from_vec(&[n, fout], expected).unwrap();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| dense_forward(&x, &w, &b).unwrap())
        };
        let one = on(1);
        assert_close(&one, &expected, 1e-4, &format!("dense batch {n}"));
        for threads in [2, 3] {
            assert_eq!(on(threads).data(), one.data(), "batch {n}: {threads} threads differ from 1");
        }
    }
}

#[test]
fn activation_backward_into_equals_the_in_place_backward() {
    // Including y = 0 (ReLU's boundary: no gradient) and a NaN output (passes the gradient on,
    // as the in-place form does).
    let mut y: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 0.1).collect();
    y.push(f32::NAN);
    let dy: Vec<f32> = (0..y.len()).map(|i| 1.0 + i as f32 * 0.25).collect();
    for act in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
        let mut in_place = dy.clone();
        act.backward(&y, &mut in_place);
        let mut out = vec![-7.0f32; dy.len()];
        act.backward_into(&y, &dy, &mut out);
        for (i, (a, b)) in out.iter().zip(&in_place).enumerate() {
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{} at {i}: {a} vs {b}", act.name());
        }
    }
}
