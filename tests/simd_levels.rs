//! Every instruction-set level of our kernels on this CPU (`convnet::ops::simd`): the portable
//! copies and the vector ones give the same bits, and agree with the plain reference loops.
//! Without this, only the best level the CPU has would ever run in the tests.
//!
//! The level is process-wide, so this file holds one test that walks the levels in turn (a
//! second test here could run while the level is forced).
mod common;

use common::*;
use convnet::model::{Loss, Network};
use convnet::ops::batch_norm::{batch_norm_forward_eval, batch_norm_gelu_forward_eval};
use convnet::ops::conv2d::{algorithm, conv2d_backward, conv2d_forward, Algorithm};
use convnet::ops::conv2d_ref::{conv_backward, conv_forward};
use convnet::ops::gelu::{gelu, gelu_backward_into, gelu_derivative, gelu_forward_into};
use convnet::ops::lrn::{lrn_backward, lrn_backward_ref, lrn_forward, lrn_forward_ref, LrnParams};
use convnet::ops::pool::{max_pool2d_backward, max_pool2d_forward};
use convnet::ops::pool_ref::{pool_backward, pool_forward, PoolMode};
use convnet::ops::simd::{available_simd_levels, detected_simd_level, set_simd_level, simd_level, SimdLevel};
use convnet::ops::{Padding, Window};
use convnet::optim::Optimizer;
use convnet::{Config, Tensor};
use std::process::Command;

/// Everything the SIMD kernels compute, as raw bits: Winograd forward (with and without the
/// fused ReLU) and input gradient, the direct weight gradient and convolution, LRN forward and backward, max pool forward (with ties) and
/// backward, GELU forward and backward, and three training steps of a network that uses all of them.
fn kernel_outputs() -> Vec<(&'static str, Vec<u32>)> {
    let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let mut out = Vec::new();

    // 5x5 stride-1 convolutions with 16 input channels (SAME and VALID) and 3x3 ones with 32
    // on both sides go by Winograd.
    for (name, k, c) in [("same", 5, [16, 8]), ("valid", 5, [16, 8]), ("3x3 same", 3, [32, 32])] {
        let window = Window::new(k, k, 1, 1, if name == "valid" { Padding::Valid } else { Padding::Same });
        assert_eq!(algorithm(&window, c[0], c[1]), Algorithm::Winograd, "the test must reach the Winograd kernels");
        let x = random(&[2, 9, 11, c[0]], 1);
        let w = random(&[k, k, c[0], c[1]], 2);
        let b = random(&[c[1]], 3);
        let y = conv2d_forward(&x, &w, &b, &window, false).unwrap();
        assert_close(&y, &conv_forward(&x, &w, &b, &window).unwrap(), 1e-4, &format!("winograd {name} at {:?}", simd_level()));
        let y_relu = conv2d_forward(&x, &w, &b, &window, true).unwrap();
        let dy = random(y.shape(), 4);
        let g = conv2d_backward(&x, &w, &dy, &window).unwrap();
        let r = conv_backward(&x, &w, &dy, &window).unwrap();
        assert_close(&g.d_input, &r.d_input, 1e-4, &format!("winograd {name} dX at {:?}", simd_level()));
        out.extend([("winograd y", bits(&y)), ("winograd y relu", bits(&y_relu)), ("winograd dX", bits(&g.d_input))]);
    }

    // The direct weight gradient (`conv_dw_direct`): 27 input channels (blocks of 12, 8, 6,
    // 4, 2, 1 across the copies) and 37 output channels (full and masked vectors), stride 2 both
    // ways (found by cargo mutants: a column stride of 1 hid a wrong step in the portable copy).
    {
        use convnet::ops::conv_dw_direct::{weight_grad_direct, weight_grad_direct_ref, DirectShape};
        let window = Window::new(3, 3, 2, 2, Padding::Same);
        let g = convnet::ops::Geometry::new("test", 9, 10, &window).unwrap();
        let x = random(&[2, 9, 10, 27], 11);
        let dz = random(&[2, g.oh, g.ow, 37], 12);
        let s = DirectShape { g: &g, images: 2, c_in: 27, c_out: 37 };
        let (mut dw, mut dw_ref) = (Tensor::zeros(&[3, 3, 27, 37]), Tensor::zeros(&[3, 3, 27, 37]));
        weight_grad_direct(x.data(), dz.data(), s, dw.data_mut());
        weight_grad_direct_ref(x.data(), dz.data(), s, dw_ref.data_mut());
        assert!(bits(&dw) == bits(&dw_ref), "direct dW at {:?} differs from its plain loops", simd_level());
        out.push(("direct dW", bits(&dw)));
    }

    // The direct convolution (`conv_direct`): 3 input channels (a constant in the vector
    // copies) and 5 (read at run time), 37 output channels (blocks of 3 and of 2 + 2 + 1
    // vectors, masked lanes), a 7x6 image smaller than some tiles, with and without ReLU.
    for c_in in [3, 5] {
        use convnet::ops::conv_direct::{forward_direct_ref, forward_direct_rows, DirectConv};
        let window = Window::new(3, 3, 1, 1, Padding::Same);
        let g = convnet::ops::Geometry::new("test", 7, 6, &window).unwrap();
        let x = random(&[1, 7, 6, c_in], 13);
        let (w, b) = (random(&[3, 3, c_in, 37], 14), random(&[37], 15));
        for relu in [false, true] {
            let s = DirectConv { g: &g, c_in, c_out: 37, w: w.data(), b: b.data(), relu };
            let (mut y, mut y_ref) = (Tensor::zeros(&[1, 7, 6, 37]), Tensor::zeros(&[1, 7, 6, 37]));
            forward_direct_rows(x.data(), s, 0..7, &mut Vec::new(), y.data_mut());
            forward_direct_ref(x.data(), s, y_ref.data_mut());
            assert!(bits(&y) == bits(&y_ref), "direct conv at {:?} differs from its plain loops", simd_level());
            out.push(("direct conv", bits(&y)));
        }
    }

    // LRN over 13 channels (one full 8-lane vector and a remainder), the tutorial's settings.
    let p = LrnParams { depth_radius: 4, bias: 1.0, alpha: 0.001 / 9.0, beta: 0.75 };
    let x = random(&[3, 4, 5, 13], 5);
    let (y, scale) = lrn_forward(&x, &p).unwrap();
    assert_close(&y, &lrn_forward_ref(&x, &p).unwrap(), 1e-5, &format!("lrn at {:?}", simd_level()));
    let dy = random(y.shape(), 6);
    let dx = lrn_backward(&x, &y, &scale, &dy, &p).unwrap();
    assert_close(&dx, &lrn_backward_ref(&x, &dy, &p).unwrap(), 1e-4, &format!("lrn dX at {:?}", simd_level()));
    out.extend([("lrn y", bits(&y)), ("lrn dX", bits(&dx))]);

    // Max pool 3x3/2 SAME over 19 channels, on values with ties (rounded to a coarse grid), so
    // the vector path must also pick the first of equal cells, as the plain loop does.
    let window = Window::new(3, 3, 2, 2, Padding::Same);
    let mut x = random(&[2, 7, 6, 19], 7);
    x.data_mut().iter_mut().for_each(|v| *v = (*v * 3.0).round());
    let (y, argmax) = max_pool2d_forward(&x, &window).unwrap();
    assert_eq!(y.data(), pool_forward(&x, &window, PoolMode::Max).unwrap().data(), "max pool at {:?}", simd_level());
    let dy = random(y.shape(), 8);
    let dx = max_pool2d_backward(&dy, &argmax, x.shape(), &window).unwrap();
    assert_close(&dx, &pool_backward(&x, &dy, &window, PoolMode::Max).unwrap(), 1e-6, &format!("max pool dX at {:?}", simd_level()));
    out.extend([("max pool y", bits(&y)), ("max pool argmax", argmax), ("max pool dX", bits(&dx))]);
    // 2x2/2 windows lie apart: dX written cell by cell (`route_apart`) instead of scattered.
    let window = Window::new(2, 2, 2, 2, Padding::Valid);
    let mut x = random(&[2, 6, 8, 19], 10);
    x.data_mut().iter_mut().for_each(|v| *v = (*v * 3.0).round());
    let (y, argmax) = max_pool2d_forward(&x, &window).unwrap();
    let dy = random(y.shape(), 9);
    let dx = max_pool2d_backward(&dy, &argmax, x.shape(), &window).unwrap();
    assert_close(&dx, &pool_backward(&x, &dy, &window, PoolMode::Max).unwrap(), 1e-6, &format!("tiled max pool dX at {:?}", simd_level()));
    out.push(("tiled max pool dX", bits(&dx)));

    // GELU over [-15, 15] (both tails, the exp cutoff) and a length that is no multiple of a
    // vector, against the libm reference.
    let x: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) * 0.03).collect();
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    gelu_forward_into(&x, &mut y);
    gelu_backward_into(&x, &vec![1.0; x.len()], &mut dx);
    for ((&x, &y), &d) in x.iter().zip(&y).zip(&dx) {
        let tol = 6e-7 * x.abs().max(1.0);
        assert!((y - gelu(x)).abs() <= tol && (d - gelu_derivative(x)).abs() <= tol, "gelu({x}) at {:?}: {y}, {d}", simd_level());
    }
    out.extend([("gelu y", y.iter().map(|v| v.to_bits()).collect()), ("gelu dX", dx.iter().map(|v| v.to_bits()).collect())]);
    // Evaluation's batch norm with the GELU after it in one pass: the two one after the other's
    // bits (19 channels: no multiple of a vector).
    let x = random(&[3, 5, 4, 19], 11);
    let (gamma, beta, mean) = (random(&[19], 12), random(&[19], 13), random(&[19], 14));
    let var: Vec<f32> = random(&[19], 15).data().iter().map(|v| 1.0 + v).collect();
    let (mut norm, mut fused) = (Tensor::empty(), Tensor::empty());
    batch_norm_forward_eval(&x, gamma.data(), beta.data(), mean.data(), &var, 1e-3, false, &mut norm).unwrap();
    let mut y = vec![0.0; norm.len()];
    gelu_forward_into(norm.data(), &mut y);
    batch_norm_gelu_forward_eval(&x, gamma.data(), beta.data(), mean.data(), &var, 1e-3, &mut fused).unwrap();
    assert!(fused.data().iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()), "norm + gelu at {:?}", simd_level());
    out.push(("norm + gelu", bits(&fused)));

    // Three training steps of a small seed-like network (Winograd conv, max pool, LRN).
    let cfg = Config::from_toml(&seed_like(), "seed-like").unwrap();
    let mut net = Network::build(&cfg.model, 4).unwrap();
    let mut opt = Optimizer::new(cfg.run.optimizer.clone()).unwrap();
    let x = random(&[4, 12, 12, 3], 9);
    for step in 0..3 {
        net.set_step_seed(1, step);
        net.compute_gradients(&x, &[0, 1, 2, 1], Loss { label_smoothing: 0.0 }).unwrap();
        net.apply_gradients(&mut opt, 1e-3).unwrap();
    }
    for p in net.params() {
        out.push(("trained weights", bits(&p.value)));
    }
    out
}

/// A small seed-like network: Winograd convolutions (5x5, 16 channels), max pool, LRN.
fn seed_like() -> String {
    model_config(
        "seed-like",
        "[12, 12, 3]",
        r#"
[[layers]]
type = "conv2d"
filters = 16
kernel = 5
padding = "same"
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
size = 3
stride = 2
padding = "same"
[[layers]]
type = "lrn"
depth_radius = 4
[[layers]]
type = "conv2d"
filters = 16
kernel = 5
padding = "same"
[[layers]]
type = "relu"
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 3
"#,
    )
}

#[test]
fn every_simd_level_gives_the_same_bits_and_matches_the_reference_loops() {
    let levels = available_simd_levels();
    eprintln!("SIMD levels on this CPU: {levels:?}");
    assert_eq!(levels[0], SimdLevel::Portable);
    // Forcing a level the CPU lacks is refused and changes nothing.
    if detected_simd_level() < SimdLevel::Avx2 {
        assert!(set_simd_level(SimdLevel::Avx2).is_err());
    }
    let mut first: Option<Vec<(&str, Vec<u32>)>> = None;
    for &level in &levels {
        set_simd_level(level).unwrap();
        assert_eq!(simd_level(), level);
        let outputs = kernel_outputs();
        match &first {
            None => first = Some(outputs),
            Some(portable) => {
                assert_eq!(portable.len(), outputs.len());
                for ((what, a), (_, b)) in portable.iter().zip(&outputs) {
                    assert!(a == b, "{what}: {level:?} differs from the portable copy in the last bits");
                }
            }
        }
    }
    set_simd_level(detected_simd_level()).unwrap();

    // CONVNET_SIMD lowers the level of a whole process; `convnet bench` reports what ran, and
    // a level that is not one is named in a warning and ignored.
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("seed-like.toml");
    std::fs::write(&cfg, seed_like()).unwrap();
    let bench = |simd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_convnet"))
            .args(["bench", "--config", cfg.to_str().unwrap(), "--mode", "infer", "--batch-size", "2", "--steps", "1"])
            .args(["--reps", "1", "--warmup", "0", "--json"])
            .env("CONVNET_SIMD", simd)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (r["simd_level"].as_str().unwrap().to_string(), stderr)
    };
    assert_eq!(bench("portable").0, "portable");
    let (level, stderr) = bench("sse9");
    assert_eq!(level, detected_simd_level().name());
    assert!(stderr.contains("CONVNET_SIMD=\"sse9\" is not a level (portable, avx2, avx512bf16, amx)"), "{stderr}");
}
