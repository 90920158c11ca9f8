//! bfloat16 products in the layers (the bf16 precisions, both families of convolution
//! algorithms: the tiles' and float32's): convolution and dense forward, dX and
//! dW against exact references (inputs rounded to bf16, products summed in f64) at float32
//! accumulation tolerance; the Winograd convolutions (whose products take the *transformed*
//! values) against the exact convolution at a tolerance derived from bf16's 8-bit mantissa; a
//! small network's gradients against finite differences; whole training steps bit-identical
//! across thread counts and SIMD levels (the emulation included), and different from float32.

mod common;

use common::{random, train_one_by_one};
use convnet::layers::{BatchNormLayer, Conv2dLayer, DenseLayer, FlattenLayer, GeluLayer, Layer, MaxPoolLayer, Mode, Param, Sequential};
use convnet::model::{Loss, Network};
use convnet::ops::batch_norm::{batch_norm_forward_eval, batch_norm_gelu_forward_eval, eval_scale};
use convnet::ops::bf16::round_bf16;
use convnet::ops::conv2d::{
    algorithm_in, conv2d_backward_into, conv2d_forward_into, conv2d_forward_max_pooled_into, conv2d_forward_then_into,
    max_pools_as_finished, Algorithm, Conv2dGradsMut, ConvScratch, OutputGrad,
};
use convnet::ops::dense::{dense_backward_into, dense_forward_into};
use convnet::ops::epilogue::{Activation as Then, ChannelAffine, Epilogue};
use convnet::ops::gelu::gelu_forward_into;
use convnet::ops::gemm_bf16::{gemm_bf16, Chain};
use convnet::ops::pool::max_pool2d_forward;
use convnet::ops::precision::{bf16_hardware, emulation_notice};
use convnet::ops::simd::{available_simd_levels, detected_simd_level, set_simd_level, SimdLevel};
use convnet::ops::{Bf16Convs, Geometry, Padding, Precision, Window};
use convnet::{Config, Tensor};

/// Held by the tests that walk the process's SIMD levels: the bits are the same at every level,
/// but what a test asserts about the level in force (the emulation notice) is not, and another
/// test's walk would change it underneath.
static LEVEL_WALK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn walking_levels() -> std::sync::MutexGuard<'static, ()> {
    LEVEL_WALK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The value and the magnitude (sum of |terms|) of an exact f64 sum.
#[derive(Clone, Copy, Default)]
struct Exact {
    value: f64,
    magnitude: f64,
}

impl Exact {
    fn add(&mut self, term: f64) {
        self.value += term;
        self.magnitude += term.abs();
    }
}

fn rounded(t: &Tensor) -> Vec<f64> {
    t.data().iter().map(|&v| round_bf16(v) as f64).collect()
}

/// Checks `got` against exact sums of `terms` products each: float32 accumulation allows one
/// rounding of at most 2^-24 of the running magnitude per addition.
fn assert_within_accumulation(what: &str, got: &[f32], exact: &[Exact], terms: usize) {
    assert_eq!(got.len(), exact.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(exact).enumerate() {
        let tol = (terms + 2) as f64 * e.magnitude * 2f64.powi(-24) + 1e-30;
        assert!((*g as f64 - e.value).abs() <= tol, "{what}[{i}]: {g} but exactly {} (tolerance {tol:e})", e.value);
    }
}

/// The exact convolution of NHWC `x` with HWIO `w` (f64 values, already rounded as wanted):
/// (y, dX, dW) sums for output gradient `dy`.
struct ExactConv {
    y: Vec<Exact>,
    dx: Vec<Exact>,
    dw: Vec<Exact>,
}

fn exact_conv(x: &[f64], xs: [usize; 4], w: &[f64], ws: [usize; 4], b: &[f32], dy: &[f64], g: &Geometry) -> ExactConv {
    let ([n, ih, iw, ci], [kh, kw, _, co]) = (xs, ws);
    let (oh, ow) = (g.oh, g.ow);
    let mut e = ExactConv {
        y: vec![Exact::default(); n * oh * ow * co],
        dx: vec![Exact::default(); n * ih * iw * ci],
        dw: vec![Exact::default(); kh * kw * ci * co],
    };
    for (yi, o) in e.y.iter_mut().enumerate() {
        o.add(b[yi % co] as f64);
    }
    for img in 0..n {
        for oi in 0..oh {
            for oj in 0..ow {
                for ki in 0..kh {
                    let Some(r) = g.in_row(oi, ki) else { continue };
                    for kj in 0..kw {
                        let Some(s) = g.in_col(oj, kj) else { continue };
                        for c in 0..ci {
                            let xi = ((img * ih + r) * iw + s) * ci + c;
                            for o in 0..co {
                                let (wi, yi) = (((ki * kw + kj) * ci + c) * co + o, ((img * oh + oi) * ow + oj) * co + o);
                                e.y[yi].add(x[xi] * w[wi]);
                                e.dx[xi].add(dy[yi] * w[wi]);
                                e.dw[wi].add(x[xi] * dy[yi]);
                            }
                        }
                    }
                }
            }
        }
    }
    e
}

struct ConvCase {
    n: usize,
    hw: usize,
    ci: usize,
    co: usize,
    k: usize,
    stride: usize,
    padding: Padding,
}

/// A case's window and geometry, and its x, w, b and dy drawn from seeds `seed`, `seed + 10`,
/// `seed + 20` and `seed + 30`.
struct ConvInputs {
    win: Window,
    g: Geometry,
    x: Tensor,
    w: Tensor,
    b: Tensor,
    dy: Tensor,
}

impl ConvCase {
    fn inputs(&self, seed: u64) -> ConvInputs {
        let win = Window::new(self.k, self.k, self.stride, self.stride, self.padding);
        let g = Geometry::new("test", self.hw, self.hw, &win).unwrap();
        let x = random(&[self.n, self.hw, self.hw, self.ci], seed);
        let w = random(&[self.k, self.k, self.ci, self.co], seed + 10);
        let b = random(&[self.co], seed + 20);
        let dy = random(&[self.n, g.oh, g.ow, self.co], seed + 30);
        ConvInputs { win, g, x, w, b, dy }
    }
}
/// Runs the layer's forward and backward in `precision`: (y, dX, dW, db).
fn conv_run(x: &Tensor, w: &Tensor, b: &Tensor, dy: &Tensor, win: &Window, precision: Precision) -> (Tensor, Tensor, Tensor, Tensor) {
    let (mut y, mut s) = (Tensor::empty(), ConvScratch::default());
    conv2d_forward_into(x, w, b, win, false, precision, &mut y, &mut s).unwrap();
    let (mut dx, mut dw, mut db) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
    let grads = Conv2dGradsMut { d_input: Some(&mut dx), d_weight: &mut dw, d_bias: &mut db };
    conv2d_backward_into(x, w, OutputGrad::Plain(dy), win, precision, grads, &mut s).unwrap();
    (y, dx, dw, db)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

/// Runs the layer (inputs x, w, b, dy) in `precision` at every SIMD level the CPU has (the
/// emulation included) on 1 and 3 threads, and holds each run's y, dX, dW and db to
/// `reference`'s bits. The caller holds [`walking_levels`].
fn assert_same_bits_everywhere(
    what: &str,
    (x, w, b, dy): (&Tensor, &Tensor, &Tensor, &Tensor),
    win: &Window,
    precision: Precision,
    reference: [&Tensor; 4],
) {
    let reference = reference.map(bits);
    for level in available_simd_levels() {
        set_simd_level(level).unwrap();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (y, dx, dw, db) = pool.install(|| conv_run(x, w, b, dy, win, precision));
            assert!([&y, &dx, &dw, &db].map(bits) == reference, "{what}: level {level:?}, {threads} threads: other bits");
        }
    }
    set_simd_level(detected_simd_level()).unwrap();
}

#[test]
fn conv_by_im2col_or_direct_in_bf16_is_the_exact_product_of_rounded_inputs() {
    // Few channels (no Winograd nor tiles, for y nor for dX, whose own convolution has the
    // output's channels as input): cases 0 and 2 by the direct kernel on rounded operands
    // (stride 1, at most 32 channels), the others by im2col; strides 1 and 2, SAME and VALID,
    // odd sizes, channel counts under and over the 16-lane vector, batch 1 and over one chunk.
    let cases = [
        ConvCase { n: 1, hw: 7, ci: 3, co: 5, k: 3, stride: 1, padding: Padding::Same },
        ConvCase { n: 9, hw: 9, ci: 5, co: 17, k: 3, stride: 2, padding: Padding::Same },
        ConvCase { n: 2, hw: 8, ci: 15, co: 15, k: 5, stride: 1, padding: Padding::Valid },
        ConvCase { n: 3, hw: 6, ci: 7, co: 64, k: 1, stride: 1, padding: Padding::Valid },
    ];
    for (ci_, c) in cases.iter().enumerate() {
        let win = Window::new(c.k, c.k, c.stride, c.stride, c.padding);
        let g = Geometry::new("test", c.hw, c.hw, &win).unwrap();
        let expected = if ci_ % 2 == 0 { Algorithm::Direct } else { Algorithm::Im2col };
        for family in [Precision::Bf16Tiles, Precision::Bf16Winograd] {
            assert_eq!(algorithm_in(family, &g, &win, c.ci, c.co), expected, "case {ci_}, {family}");
        }
        let x = random(&[c.n, c.hw, c.hw, c.ci], 10 + ci_ as u64);
        let w = random(&[c.k, c.k, c.ci, c.co], 20 + ci_ as u64);
        let b = random(&[c.co], 30 + ci_ as u64);
        let g = Geometry::new("test", c.hw, c.hw, &win).unwrap();
        let dy = random(&[c.n, g.oh, g.ow, c.co], 40 + ci_ as u64);
        let (y, dx, dw, db) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16);
        let e = exact_conv(&rounded(&x), [c.n, c.hw, c.hw, c.ci], &rounded(&w), [c.k, c.k, c.ci, c.co], b.data(), &rounded(&dy), &g);
        let what = format!("case {ci_}");
        assert_within_accumulation(&format!("{what} y"), y.data(), &e.y, c.k * c.k * c.ci);
        assert_within_accumulation(&format!("{what} dX"), dx.data(), &e.dx, c.k * c.k * c.co);
        assert_within_accumulation(&format!("{what} dW"), dw.data(), &e.dw, c.n * g.oh * g.ow);
        // db is a plain float32 sum of dy, as in f32.
        let (_, _, _, db32) = conv_run(&x, &w, &b, &dy, &win, Precision::F32);
        assert_eq!(db.data(), db32.data(), "{what} db");
        // And bf16 really ran: the float32 result differs.
        let (y32, ..) = conv_run(&x, &w, &b, &dy, &win, Precision::F32);
        assert_ne!(y.data(), y32.data(), "{what}: bf16 products should differ from f32 in the last bits");
    }
}

#[test]
fn conv_on_the_tiles_in_bf16_is_the_exact_product_of_rounded_inputs_on_every_kernel_and_thread_count() {
    let _walk = walking_levels();
    // Stride 1 from 16 input channels (`conv_tiles`): the padded image read in place, one
    // shifted view per tap. Channels under and over one block of 32, several images per
    // product (5x5 outputs), batch 1 cut into blocks of rows, 2x2, 5x5 and 1x1 kernels; dX
    // and dW too where dX's own convolution has 16 channels or more.
    let cases = [
        (ConvCase { n: 2, hw: 16, ci: 16, co: 20, k: 3, stride: 1, padding: Padding::Same }, true),
        (ConvCase { n: 17, hw: 5, ci: 17, co: 18, k: 3, stride: 1, padding: Padding::Same }, true),
        (ConvCase { n: 3, hw: 9, ci: 33, co: 16, k: 2, stride: 1, padding: Padding::Valid }, true),
        (ConvCase { n: 1, hw: 30, ci: 16, co: 5, k: 5, stride: 1, padding: Padding::Same }, false),
        (ConvCase { n: 2, hw: 6, ci: 40, co: 7, k: 1, stride: 1, padding: Padding::Valid }, false),
        // dW over 3 x 31 x 32 padded pixels: two passes of 2,048 (the second continues the first).
        (ConvCase { n: 3, hw: 30, ci: 16, co: 16, k: 3, stride: 1, padding: Padding::Same }, true),
        // A 2x2 SAME kernel pads after the image only, its dX before only: the shared padding
        // on one side (`conv_tiles::shared_padding`), an odd width for dW to round up.
        (ConvCase { n: 3, hw: 7, ci: 16, co: 16, k: 2, stride: 1, padding: Padding::Same }, true),
    ];
    for (ci_, (c, dx_on_tiles)) in cases.iter().enumerate() {
        let win = Window::new(c.k, c.k, c.stride, c.stride, c.padding);
        let g = Geometry::new("test", c.hw, c.hw, &win).unwrap();
        assert_eq!(algorithm_in(Precision::Bf16Tiles, &g, &win, c.ci, c.co), Algorithm::Tiles, "case {ci_}");
        let dx_g = Geometry::new("test", g.oh, g.ow, &Window::new(c.k, c.k, 1, 1, Padding::Same)).unwrap();
        let dx_choice = algorithm_in(Precision::Bf16Tiles, &dx_g, &win, c.co, c.ci);
        assert_eq!(dx_choice == Algorithm::Tiles, *dx_on_tiles, "case {ci_}: dX by {dx_choice:?}");
        let x = random(&[c.n, c.hw, c.hw, c.ci], 110 + ci_ as u64);
        let w = random(&[c.k, c.k, c.ci, c.co], 120 + ci_ as u64);
        let b = random(&[c.co], 130 + ci_ as u64);
        let dy = random(&[c.n, g.oh, g.ow, c.co], 140 + ci_ as u64);
        let (y, dx, dw, db) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Tiles);
        let e = exact_conv(&rounded(&x), [c.n, c.hw, c.hw, c.ci], &rounded(&w), [c.k, c.k, c.ci, c.co], b.data(), &rounded(&dy), &g);
        let what = format!("case {ci_}");
        // db sums dy itself (not rounded) in float32.
        let mut exact_db = vec![Exact::default(); c.co];
        for (i, v) in dy.data().iter().enumerate() {
            exact_db[i % c.co].add(*v as f64);
        }
        assert_within_accumulation(&format!("{what} db"), db.data(), &exact_db, c.n * g.oh * g.ow);
        // Each product's chain adds blocks of 32 channels per tap, so k rounds up to them.
        let padded_k = c.k * c.k * c.ci.next_multiple_of(32);
        assert_within_accumulation(&format!("{what} y"), y.data(), &e.y, padded_k);
        assert_within_accumulation(&format!("{what} dX"), dx.data(), &e.dx, c.k * c.k * c.co.next_multiple_of(32));
        assert_within_accumulation(&format!("{what} dW"), dw.data(), &e.dw, c.n * g.oh * g.ow);
        let (y32, ..) = conv_run(&x, &w, &b, &dy, &win, Precision::F32);
        assert_ne!(y.data(), y32.data(), "{what}: bf16 products should differ from f32 in the last bits");
        // The same bits on every kernel (AMX, AVX512-BF16, the emulation) and thread count.
        assert_same_bits_everywhere(&what, (&x, &w, &b, &dy), &win, Precision::Bf16Tiles, [&y, &dx, &dw, &db]);
    }
}

/// The convolution and then max pooling, each on its own (`relu` in the convolution's pass):
/// the pooled output and the winners.
fn conv_then_max_pool(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    win: &Window,
    relu: bool,
    pool: &Window,
    precision: Precision,
) -> (Tensor, Vec<u32>) {
    let mut y = Tensor::empty();
    conv2d_forward_into(x, w, b, win, relu, precision, &mut y, &mut ConvScratch::default()).unwrap();
    max_pool2d_forward(&y, pool).unwrap()
}

/// The convolution pooled as it is finished, if it can be (`conv2d_forward_max_pooled_into`),
/// with the winners kept (stale values in the buffers beforehand) and without.
fn conv_max_pooled(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    win: &Window,
    relu: bool,
    pool: &Window,
    precision: Precision,
) -> Option<(Tensor, Vec<u32>)> {
    let (mut y, mut winners, mut s) = (Tensor::from_vec(&[3], vec![7.0; 3]).unwrap(), vec![9; 5], ConvScratch::default());
    let fused =
        conv2d_forward_max_pooled_into(x, w, b, win, (relu, Epilogue::NONE), precision, pool, &mut y, Some(&mut winners), &mut s).unwrap();
    let mut alone = Tensor::empty();
    let fused_alone =
        conv2d_forward_max_pooled_into(x, w, b, win, (relu, Epilogue::NONE), precision, pool, &mut alone, None, &mut s).unwrap();
    assert_eq!(fused, fused_alone);
    assert!(!fused || bits(&alone) == bits(&y), "with and without the winners: other bits");
    assert_eq!(fused, max_pools_as_finished(x.shape(), w.shape(), win, precision, pool));
    fused.then_some((y, winners))
}

#[test]
fn a_convolution_on_the_tiles_pooled_as_it_is_finished_has_the_bits_of_the_two_layers_one_after_the_other() {
    let _walk = walking_levels();
    let pool2 = Window::new(2, 2, 2, 2, Padding::Valid);
    // (images, side, c_in, c_out, kernel, padding, relu, pool): odd outputs whose last row and
    // column no window takes (7x7, 11x11 from a 2x2 kernel), overlapping windows (3x3 / 2),
    // several images a task (small images) and one (24x24 padded: 576 rows), a NaN.
    let cases = [
        (10, 7, 16, 24, 3, Padding::Same, false, pool2),
        (5, 9, 20, 32, 3, Padding::Same, true, Window::new(3, 3, 2, 2, Padding::Valid)),
        (4, 12, 16, 16, 2, Padding::Valid, false, pool2),
        (16, 23, 16, 16, 3, Padding::Same, true, pool2),
        // 15x15 (256 rows padded): two images a task even at a batch of 3, where a single
        // image would be split into blocks of rows.
        (3, 15, 16, 16, 3, Padding::Same, false, pool2),
        // 86 output channels: a block of 64 pooled at once, one of 16, then 6 one by one; a NaN.
        (4, 7, 16, 86, 3, Padding::Same, true, pool2),
    ];
    for (case, &(n, side, ci, co, k, padding, relu, pool)) in cases.iter().enumerate() {
        let win = Window::new(k, k, 1, 1, padding);
        let mut x = random(&[n, side, side, ci], 700 + case as u64);
        if case == 0 || case == 5 {
            x.data_mut()[5 * ci + 3] = f32::NAN;
        }
        let (w, b) = (random(&[k, k, ci, co], 710 + case as u64), random(&[co], 720 + case as u64));
        let (pooled, winners) = conv_then_max_pool(&x, &w, &b, &win, relu, &pool, Precision::Bf16Tiles);
        let reference = bits(&pooled);
        assert!(![0, 5].contains(&case) || reference.iter().any(|v| f32::from_bits(*v).is_nan()), "the NaN reaches the output");
        for level in available_simd_levels() {
            set_simd_level(level).unwrap();
            for threads in [1, 3] {
                let pool_threads = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let fused = pool_threads.install(|| conv_max_pooled(&x, &w, &b, &win, relu, &pool, Precision::Bf16Tiles));
                let (fused, fused_winners) = fused.unwrap_or_else(|| panic!("case {case}: not pooled as finished"));
                assert!(bits(&fused) == reference, "case {case}: level {level:?}, {threads} threads: other bits");
                assert!(fused_winners == winners, "case {case}: level {level:?}, {threads} threads: other winners");
            }
        }
        set_simd_level(detected_simd_level()).unwrap();
    }
    // Where it cannot, it does nothing: a window reading padding (SAME on 7x7), images split
    // between tasks (2 images of 23x23), the other algorithms (float32, Winograd's family).
    let (x, w, b) = (random(&[2, 7, 7, 16], 730), random(&[3, 3, 16, 16], 731), random(&[16], 732));
    let same3 = Window::new(3, 3, 1, 1, Padding::Same);
    assert!(conv_max_pooled(&x, &w, &b, &same3, false, &pool2, Precision::Bf16Tiles).is_some());
    assert!(conv_max_pooled(&x, &w, &b, &same3, false, &Window::new(2, 2, 2, 2, Padding::Same), Precision::Bf16Tiles).is_none());
    assert!(conv_max_pooled(&x, &w, &b, &same3, false, &pool2, Precision::F32).is_none());
    assert!(conv_max_pooled(&x, &w, &b, &same3, false, &pool2, Precision::Bf16Winograd).is_none());
    let large = random(&[2, 23, 23, 16], 733);
    assert!(conv_max_pooled(&large, &w, &b, &same3, false, &pool2, Precision::Bf16Tiles).is_none());
    // Padding read in one direction only: rows (2x1 / 2x1 SAME on 7x7: the last window's
    // second row is padding) or columns; and padding before the image whose windows end
    // inside it (1 row and column above and to the left, 2x2 / 3 on 8x8: windows at -1..0,
    // 2..3, 5..6).
    for pool in [Window::new(2, 1, 2, 1, Padding::Same), Window::new(1, 2, 1, 2, Padding::Same)] {
        assert!(conv_max_pooled(&x, &w, &b, &same3, false, &pool, Precision::Bf16Tiles).is_none(), "{pool:?}");
    }
    let before = Window::new(2, 2, 3, 3, Padding::Explicit { top: 1, bottom: 0, left: 1, right: 0 });
    let eight = random(&[2, 8, 8, 16], 734);
    assert!(conv_max_pooled(&eight, &w, &b, &same3, false, &before, Precision::Bf16Tiles).is_none());
    assert!(conv_max_pooled(&eight, &w, &b, &same3, false, &Window::new(2, 2, 3, 3, Padding::Valid), Precision::Bf16Tiles).is_some());
}

#[test]
fn the_tiles_keep_their_packed_weights_while_the_weights_keep_their_version() {
    // One scratch across calls, as a layer's: the packed weights are reused for the same
    // weights, and packed again when they change (in place: a new version), or when other
    // weights of the same shape come.
    let win = Window::new(3, 3, 1, 1, Padding::Same);
    let (x, b) = (random(&[3, 7, 7, 16], 750), random(&[24], 751));
    let mut w = random(&[3, 3, 16, 24], 752);
    let fresh = |w: &Tensor| {
        let mut y = Tensor::empty();
        conv2d_forward_into(&x, w, &b, &win, false, Precision::Bf16Tiles, &mut y, &mut ConvScratch::default()).unwrap();
        bits(&y)
    };
    let (mut y, mut scratch) = (Tensor::empty(), ConvScratch::default());
    let mut reused = |w: &Tensor| {
        conv2d_forward_into(&x, w, &b, &win, false, Precision::Bf16Tiles, &mut y, &mut scratch).unwrap();
        bits(&y)
    };
    let first = fresh(&w);
    assert!(reused(&w) == first && reused(&w) == first);
    w.data_mut()[7] += 0.5;
    let changed = fresh(&w);
    assert!(changed != first);
    assert!(reused(&w) == changed, "weights changed in place");
    let other = random(&[3, 3, 16, 24], 753);
    assert!(reused(&other) == fresh(&other), "other weights");
}

/// A conv (16 -> 24, with its relu if `relu`) and a 2x2 max pooling on 8x8 images, as layers.
fn conv_and_pool(precision: Precision, relu: bool) -> (Conv2dLayer, MaxPoolLayer) {
    let weight = Param::new("w", random(&[3, 3, 16, 24], 741), 0.0, true);
    let bias = Param::new("b", random(&[24], 742), 0.0, false);
    let mut conv = Conv2dLayer::new("0".into(), &[8, 8, 16], Window::new(3, 3, 1, 1, Padding::Same), weight, bias).unwrap();
    conv.relu = relu;
    conv.set_precision(precision);
    (conv, MaxPoolLayer::new("1".into(), &[8, 8, 24], Window::new(2, 2, 2, 2, Padding::Valid)).unwrap())
}

fn conv_and_pool_layers(precision: Precision) -> (Conv2dLayer, MaxPoolLayer) {
    conv_and_pool(precision, true)
}

/// conv_and_pool, then GELU, a conv 24 -> 16 on 4x4, flatten and dense 256 -> 5, in bf16 on
/// the tiles.
fn pooling_network(relu: bool) -> Vec<Box<dyn Layer>> {
    let (conv, pool) = conv_and_pool(Precision::Bf16Tiles, relu);
    let weight = Param::new("w", random(&[3, 3, 24, 16], 745), 0.0, true);
    let mut conv2 = Conv2dLayer::new(
        "3".into(),
        &[4, 4, 24],
        Window::new(3, 3, 1, 1, Padding::Same),
        weight,
        Param::new("b", random(&[16], 746), 0.0, false),
    )
    .unwrap();
    conv2.set_precision(Precision::Bf16Tiles);
    let mut dense = DenseLayer::new("5".into(), &[256], Param::new("w", random(&[256, 5], 744), 0.0, true), None).unwrap();
    dense.set_precision(Precision::Bf16Tiles);
    vec![
        Box::new(conv),
        Box::new(pool),
        Box::new(GeluLayer::new("2".into(), &[4, 4, 24])),
        Box::new(conv2),
        Box::new(FlattenLayer::new("4".into(), &[4, 4, 16])),
        Box::new(dense),
    ]
}

#[test]
fn in_training_a_convolution_on_the_tiles_pools_for_the_max_pool_layer_after_it() {
    // The Sequential runs the conv (without relu) and the pooling as one pass in training;
    // the reference runs the same layers one by one. Three steps, the batch changing: the same
    // outputs, input gradient and parameter gradients, and the conv keeps no output.
    let mut net = Sequential::new(pooling_network(false)).unwrap();
    let mut reference = pooling_network(false);
    assert!(net.layers()[0].fuses_in_training(net.layers()[1].as_ref(), 6));
    for (step, n) in [6, 4, 6].into_iter().enumerate() {
        let x = random(&[n, 8, 8, 16], 760 + step as u64);
        let dy = random(&[n, 5], 770 + step as u64);
        net.forward(&x, Mode::Train).unwrap();
        assert!(net.layers()[0].output().is_hollow() && net.layers()[0].output().shape() == [n, 8, 8, 24], "step {step}");
        net.backward(&x, &dy, true).unwrap();
        train_one_by_one(&mut reference, &x, &dy);
        assert!(bits(net.output()) == bits(reference[5].output()), "step {step}: the output");
        assert!(bits(net.layers()[1].output()) == bits(reference[1].output()), "step {step}: the pooling's output");
        assert!(bits(net.input_grad()) == bits(reference[0].input_grad()), "step {step}: the input gradient");
        let grads = |params: Vec<&Param>| params.into_iter().flat_map(|p| bits(&p.grad)).collect::<Vec<_>>();
        assert!(grads(net.params()) == grads(reference.iter().flat_map(|l| l.params()).collect()), "step {step}: the gradients");
    }
    // The pair as layers: the conv fills the pooling's output and winners, its own output
    // hollow; the pooling's backward routes by those winners as by its own.
    let x = random(&[6, 8, 8, 16], 790);
    let (mut conv, mut pool) = conv_and_pool(Precision::Bf16Tiles, false);
    assert!(conv.forward_train_fused(&x, &mut pool).unwrap());
    assert!(conv.output().is_hollow() && conv.output().shape() == [6, 8, 8, 24]);
    let (mut conv_alone, mut pool_alone) = conv_and_pool(Precision::Bf16Tiles, false);
    conv_alone.forward(&x, Mode::Train).unwrap();
    pool_alone.forward(conv_alone.output(), Mode::Train).unwrap();
    assert!(bits(pool.output()) == bits(pool_alone.output()));
    let dy = random(&[6, 4, 4, 24], 791);
    pool.backward(conv.output(), &dy, true).unwrap();
    pool_alone.backward(conv_alone.output(), &dy, true).unwrap();
    assert!(bits(pool.input_grad()) == bits(pool_alone.input_grad()), "routed by other winners");
    // After an evaluation pass (which gives the conv a buffer), training pools as finished again:
    // the pair timed as one pass, its time the conv's.
    let x = random(&[6, 8, 8, 16], 780);
    net.forward(&x, Mode::Eval).unwrap();
    let mut seconds = [1.0; 6];
    net.forward_timed(&x, Mode::Train, &mut seconds).unwrap();
    assert!(net.layers()[0].output().is_hollow());
    assert!(seconds[0] > 0.0 && seconds[1] == 0.0 && seconds[2] > 0.0, "{seconds:?}");
    // Layer by layer (pictures of each layer's output), nothing is fused: the conv keeps its own.
    net.forward_each(&x, Mode::Eval).unwrap();
    assert!(!net.layers()[0].output().is_hollow() && net.layers()[0].output().shape() == [6, 8, 8, 24]);
    // A conv with its relu keeps its output (its backward pass reads it); a layer other than a
    // max pooling takes no fused pass.
    let with_relu = pooling_network(true);
    assert!(!with_relu[0].fuses_in_training(with_relu[1].as_ref(), 6));
    assert!(!net.layers()[0].fuses_in_training(net.layers()[2].as_ref(), 6), "not a max pooling");
}

#[test]
fn in_evaluation_a_convolution_on_the_tiles_pools_for_the_max_pool_layer_after_it() {
    let x = random(&[6, 8, 8, 16], 740);
    let (mut conv, mut pool) = conv_and_pool_layers(Precision::Bf16Tiles);
    conv.forward(&x, Mode::Eval).unwrap();
    pool.forward(conv.output(), Mode::Eval).unwrap();
    let (conv_out, reference) = (conv.output().clone(), pool.output().clone());
    // The pair as one pass: the pooling's output, the same bits.
    let (mut conv, pool) = conv_and_pool_layers(Precision::Bf16Tiles);
    let mut after: Vec<Box<dyn Layer>> = vec![Box::new(pool)];
    assert_eq!(conv.forward_eval_fused(&x, &mut after).unwrap(), 1);
    let pool = &mut after[0];
    assert_eq!(pool.output().shape(), [6, 4, 4, 24]);
    assert!(bits(pool.output()) == bits(&reference), "pooled as finished: other bits");
    // No winners were kept for a backward pass: it is refused, not routed by stale ones; a
    // training pass keeps them again.
    let dy = random(&[6, 4, 4, 24], 743);
    let refused = pool.backward(&conv_out, &dy, true).unwrap_err().to_string();
    assert!(refused.contains("max_pool2d backward"), "{refused}");
    pool.forward(&conv_out, Mode::Train).unwrap();
    pool.backward(&conv_out, &dy, true).unwrap();
    // Float32 convolutions do not pool as they finish: the pair runs as two layers.
    let (mut conv, pool) = conv_and_pool_layers(Precision::F32);
    assert_eq!(conv.forward_eval_fused(&x, &mut [Box::new(pool) as Box<dyn Layer>]).unwrap(), 0);
    // In a Sequential, evaluation pools as the conv finishes, layer by layer (`forward_each`)
    // does not: the same outputs.
    let (conv, pool) = conv_and_pool_layers(Precision::Bf16Tiles);
    let dense = DenseLayer::new("3".into(), &[384], Param::new("w", random(&[384, 5], 744), 0.0, true), None).unwrap();
    let mut net =
        Sequential::new(vec![Box::new(conv), Box::new(pool), Box::new(FlattenLayer::new("2".into(), &[4, 4, 24])), Box::new(dense)])
            .unwrap();
    net.forward_each(&x, Mode::Eval).unwrap();
    let each = net.output().clone();
    // Layer by layer, every output kept: the conv's own too.
    assert!(bits(net.layers()[0].output()) == bits(&conv_out), "forward_each keeps the conv's output");
    net.forward(&x, Mode::Eval).unwrap();
    assert!(bits(net.output()) == bits(&each), "the Sequential's fused pass: other bits");
    assert!(bits(net.layers()[1].output()) == bits(&reference));
}

#[test]
fn conv_by_winograd_in_bf16_is_within_bf16_rounding_of_the_exact_convolution() {
    // 3x3 with 24+ channels and 5x5 with 16+ input channels go by Winograd (forward and dX),
    // whose products take the transformed tiles and weights, rounded to bf16. Each such value
    // is off by at most 2^-9 of itself, so each product by 2^-8; the transforms then add
    // products whose magnitudes exceed the output's. Bound: |error| <= 2^-8 x Winograd's
    // amplification x sum |x||w|, with the amplification measured in float32 on the same
    // shapes (f32 error / (2^-24 x sum|x||w|)) being ~10-30, and the bf16 error measured at
    // 2^-8 x 4-5 of sum |x||w|: we allow 2^-8 x 16.
    let cases = [
        ConvCase { n: 2, hw: 9, ci: 32, co: 33, k: 3, stride: 1, padding: Padding::Same },
        ConvCase { n: 1, hw: 6, ci: 17, co: 16, k: 5, stride: 1, padding: Padding::Same },
    ];
    for (ci_, c) in cases.iter().enumerate() {
        let ConvInputs { win, g, x, w, b, dy } = c.inputs(50 + ci_ as u64);
        let unrounded = |t: &Tensor| t.data().iter().map(|&v| v as f64).collect::<Vec<_>>();
        let e = exact_conv(&unrounded(&x), [c.n, c.hw, c.hw, c.ci], &unrounded(&w), [c.k, c.k, c.ci, c.co], b.data(), &unrounded(&dy), &g);
        let (y, dx, dw, _) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Winograd);
        let (y32, dx32, ..) = conv_run(&x, &w, &b, &dy, &win, Precision::F32);
        for (what, got, got32, exact) in [("y", &y, &y32, &e.y), ("dX", &dx, &dx32, &e.dx)] {
            let (mut worst, mut worst32) = (0.0f64, 0.0f64);
            for ((g, g32), e) in got.data().iter().zip(got32.data()).zip(exact.iter()) {
                worst = worst.max((*g as f64 - e.value).abs() / e.magnitude);
                worst32 = worst32.max((*g32 as f64 - e.value).abs() / e.magnitude);
            }
            eprintln!(
                "case {ci_} {what}: worst error / sum|terms|: bf16 {worst:.2e} (2^-8 x {:.1}), f32 {worst32:.2e} (2^-24 x {:.1})",
                worst * 256.0,
                worst32 * 2f64.powi(24)
            );
            assert!(worst32 * 2f64.powi(24) <= 64.0, "case {ci_} {what}: f32 amplification over the bound's assumption");
            assert!(worst <= 16.0 * 2f64.powi(-8), "case {ci_} {what}: bf16 error {worst:e} x sum|terms|");
            // Not the float32 result: the bf16 products ran.
            assert!(got.data() != got32.data(), "case {ci_} {what}: identical to f32");
        }
        // dW in float32's family: case 0 by im2col, exact in the rounded inputs; case 1 (5x5,
        // 16+ input channels) by float32's Winograd of the rounded inputs (the next test), within
        // its float32 error of them.
        let e_dw = exact_conv(&rounded(&x), [c.n, c.hw, c.hw, c.ci], &rounded(&w), [c.k, c.k, c.ci, c.co], b.data(), &rounded(&dy), &g).dw;
        if ci_ == 0 {
            assert_within_accumulation(&format!("case {ci_} dW"), dw.data(), &e_dw, c.n * g.oh * g.ow);
        } else {
            let worst = dw.data().iter().zip(&e_dw).map(|(&v, e)| (v as f64 - e.value).abs() / e.magnitude).fold(0.0, f64::max);
            assert!(worst <= 512.0 * 2f64.powi(-24), "case {ci_} dW: off by {worst:e} x sum|terms|");
        }
    }
}

/// The backward pass of a convolution in `precision` with dy through a fused ReLU (at `y`) or
/// plain, dX wanted: (dX, dW, db).
fn backward_run(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    relu_at: Option<&Tensor>,
    win: &Window,
    precision: Precision,
) -> (Tensor, Tensor, Tensor) {
    let (mut dx, mut dw, mut db, mut s) = (Tensor::empty(), Tensor::empty(), Tensor::empty(), ConvScratch::default());
    let dy = match relu_at {
        Some(y) => OutputGrad::ThroughRelu { dy, y },
        None => OutputGrad::Plain(dy),
    };
    let grads = Conv2dGradsMut { d_input: Some(&mut dx), d_weight: &mut dw, d_bias: &mut db };
    conv2d_backward_into(x, w, dy, win, precision, grads, &mut s).unwrap();
    (dx, dw, db)
}

#[test]
fn dw_by_winograd_in_the_winograd_family_is_float32s_winograd_of_the_rounded_inputs() {
    let _walk = walking_levels();
    // Where float32 computes dW by Winograd (3x3 with 64+ channels each side, summed over the
    // batch; 5x5 with 16+ input channels, chunk by chunk), float32's family of bf16 does too,
    // on x and dz rounded to bf16 with float32 products: the bits of float32's dW of the
    // rounded inputs, within float32 Winograd's error of the exact product of the rounded
    // inputs (measured 2^-24 x 9-34 of sum |terms|, allowed 256; bf16 products of the
    // transforms would be off by ~2^-8 x 56), and not float32's dW of the inputs themselves. db sums dz itself. Batches
    // over one group (37: groups of 32 and 5) and one chunk (9), with and without a fused ReLU.
    let cases = [
        (ConvCase { n: 37, hw: 7, ci: 64, co: 64, k: 3, stride: 1, padding: Padding::Same }, Algorithm::Winograd),
        (ConvCase { n: 9, hw: 8, ci: 16, co: 16, k: 5, stride: 1, padding: Padding::Same }, Algorithm::Winograd),
    ];
    for (ci_, (c, dx_algorithm)) in cases.iter().enumerate() {
        let ConvInputs { win, g, x, w, b, dy } = c.inputs(310 + ci_ as u64);
        assert_eq!(algorithm_in(Precision::Bf16Winograd, &g, &win, c.co, c.ci), *dx_algorithm, "case {ci_}: dX");
        let y = conv_run(&x, &w, &b, &dy, &win, Precision::F32).0;
        let round = |t: &Tensor| Tensor::from_vec(t.shape(), t.data().iter().map(|&v| round_bf16(v)).collect()).unwrap();
        let (x16, dy16) = (round(&x), round(&dy));
        for relu_at in [None, Some(&y)] {
            let what = format!("case {ci_}, relu {}", relu_at.is_some());
            let (_, dw, db) = backward_run(&x, &w, &dy, relu_at, &win, Precision::Bf16Winograd);
            let (_, dw_of_rounded, _) = backward_run(&x16, &w, &dy16, relu_at, &win, Precision::F32);
            let (_, dw32, db32) = backward_run(&x, &w, &dy, relu_at, &win, Precision::F32);
            assert_eq!(bits(&dw), bits(&dw_of_rounded), "{what}: dW is not float32's of the rounded inputs");
            assert_ne!(bits(&dw), bits(&dw32), "{what}: dW of the inputs themselves (not rounded)");
            assert_eq!(bits(&db), bits(&db32), "{what}: db");
            // The exact dW of the rounded inputs (dz = dy masked where y <= 0).
            let dz16: Vec<f64> = match relu_at {
                Some(y) => dy16.data().iter().zip(y.data()).map(|(&d, &y)| if y > 0.0 { d as f64 } else { 0.0 }).collect(),
                None => dy16.data().iter().map(|&d| d as f64).collect(),
            };
            let e = exact_conv(&rounded(&x), [c.n, c.hw, c.hw, c.ci], &rounded(&w), [c.k, c.k, c.ci, c.co], b.data(), &dz16, &g);
            let worst = dw.data().iter().zip(&e.dw).map(|(&v, e)| (v as f64 - e.value).abs() / e.magnitude).fold(0.0, f64::max);
            eprintln!("{what}: dW's worst error / sum|terms| 2^-24 x {:.1}", worst * 2f64.powi(24));
            assert!(worst <= 256.0 * 2f64.powi(-24), "{what}: dW off by {worst:e} x sum|terms|");
        }
        let (y16, dx16, dw16, db16) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Winograd);
        assert_same_bits_everywhere(&format!("case {ci_}"), (&x, &w, &b, &dy), &win, Precision::Bf16Winograd, [&y16, &dx16, &dw16, &db16]);
    }
}

#[test]
fn bf16_by_float32s_algorithms_gives_the_same_bits_on_every_kernel_and_thread_count_and_not_the_tiles_bits() {
    let _walk = walking_levels();
    // The family for CPUs without AMX (`Bf16Convs::Winograd`) on the shapes where the tiles'
    // family takes the tiles: float32's choice (the direct kernel, on VDPBF16PS's chain;
    // Winograd; im2col), dW on the tiles' layout on the dot chain (cases 0 and 1) or by im2col
    // (case 2, beside a dX by col2im), within float32 accumulation of the exact sums of the
    // rounded inputs, the same bits at every SIMD level (the emulation included) and thread
    // count; and other bits than the tiles', whose chains differ (the tiles add blocks of 32
    // channels per tap).
    let cases = [
        (ConvCase { n: 2, hw: 16, ci: 16, co: 20, k: 3, stride: 1, padding: Padding::Same }, Algorithm::Direct),
        (ConvCase { n: 3, hw: 16, ci: 24, co: 24, k: 3, stride: 1, padding: Padding::Same }, Algorithm::Winograd),
        (ConvCase { n: 3, hw: 9, ci: 33, co: 16, k: 2, stride: 1, padding: Padding::Valid }, Algorithm::Im2col),
    ];
    for (ci_, (c, expected)) in cases.iter().enumerate() {
        let win = Window::new(c.k, c.k, c.stride, c.stride, c.padding);
        let g = Geometry::new("test", c.hw, c.hw, &win).unwrap();
        assert_eq!(algorithm_in(Precision::Bf16Winograd, &g, &win, c.ci, c.co), *expected, "case {ci_}");
        assert_eq!(algorithm_in(Precision::Bf16Tiles, &g, &win, c.ci, c.co), Algorithm::Tiles, "case {ci_}");
        let x = random(&[c.n, c.hw, c.hw, c.ci], 210 + ci_ as u64);
        let w = random(&[c.k, c.k, c.ci, c.co], 220 + ci_ as u64);
        let b = random(&[c.co], 230 + ci_ as u64);
        let dy = random(&[c.n, g.oh, g.ow, c.co], 240 + ci_ as u64);
        let (y, dx, dw, db) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Winograd);
        let what = format!("case {ci_} ({expected:?})");
        let e = exact_conv(&rounded(&x), [c.n, c.hw, c.hw, c.ci], &rounded(&w), [c.k, c.k, c.ci, c.co], b.data(), &rounded(&dy), &g);
        assert_within_accumulation(&format!("{what} dW"), dw.data(), &e.dw, c.n * g.oh * g.ow);
        if *expected != Algorithm::Winograd {
            assert_within_accumulation(&format!("{what} y"), y.data(), &e.y, c.k * c.k * c.ci);
        }
        if *expected == Algorithm::Direct {
            assert_direct_on_the_dot_chain(&what, (&x, &w, &b, &dy), &win, (&y, &dx));
        }
        let (y_tiles, _, dw_tiles, _) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Tiles);
        assert_ne!(bits(&y), bits(&y_tiles), "{what}: y, the same bits as the tiles'");
        assert_ne!(bits(&dw), bits(&dw_tiles), "{what}: dW, the same bits as the tiles'");
        assert_same_bits_everywhere(&what, (&x, &w, &b, &dy), &win, Precision::Bf16Winograd, [&y, &dx, &dw, &db]);
    }
}

/// y and dX of a 3x3 SAME convolution that the winograd family computes directly are the
/// bits of `conv_direct_bf16`'s plain loops, image by image: y of x and w, dX of dy and the
/// flipped weights (dX's own convolution, into the input's channels, no bias).
fn assert_direct_on_the_dot_chain(
    what: &str,
    (x, w, b, dy): (&Tensor, &Tensor, &Tensor, &Tensor),
    win: &Window,
    (y, dx): (&Tensor, &Tensor),
) {
    use convnet::ops::conv_direct::DirectConv;
    use convnet::ops::conv_direct_bf16::forward_direct_bf16_ref;
    let [n, h, wd, ci] = x.shape()[..] else { unreachable!() };
    let [kh, kw, _, co] = w.shape()[..] else { unreachable!() };
    assert!(kh == 3 && kw == 3 && win.padding == Padding::Same, "{what}: 3x3 SAME only");
    let g = Geometry::new("test", h, wd, win).unwrap();
    let mut flipped = vec![0.0f32; w.len()];
    for ki in 0..kh {
        for kj in 0..kw {
            for i in 0..ci {
                for o in 0..co {
                    flipped[(((kh - 1 - ki) * kw + (kw - 1 - kj)) * co + o) * ci + i] = w.data()[((ki * kw + kj) * ci + i) * co + o];
                }
            }
        }
    }
    let zero = vec![0.0f32; ci];
    let (mut y_want, mut dx_want) = (vec![0.0f32; g.oh * g.ow * co], vec![0.0f32; h * wd * ci]);
    for img in 0..n {
        forward_direct_bf16_ref(
            &x.data()[img * h * wd * ci..][..h * wd * ci],
            DirectConv { g: &g, c_in: ci, c_out: co, w: w.data(), b: b.data(), relu: false },
            &mut y_want,
        );
        let dy_img = &dy.data()[img * g.oh * g.ow * co..][..g.oh * g.ow * co];
        forward_direct_bf16_ref(dy_img, DirectConv { g: &g, c_in: co, c_out: ci, w: &flipped, b: &zero, relu: false }, &mut dx_want);
        let bits_of = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        assert!(
            bits_of(&y.data()[img * y_want.len()..][..y_want.len()]) == bits_of(&y_want),
            "{what}: y of image {img} is not the dot chain's direct convolution"
        );
        // dX's zero bias adds +0: a -0 sum comes out +0, as the plain loops' `+ b` gives it.
        assert!(
            bits_of(&dx.data()[img * dx_want.len()..][..dx_want.len()]) == bits_of(&dx_want),
            "{what}: dX of image {img} is not the dot chain's direct convolution"
        );
    }
}

#[test]
fn dw_in_the_winograd_family_under_16_input_channels_is_float32s_direct_dw_of_the_rounded_inputs() {
    // 8 to 15 input channels at stride 1: the tiles' layout does not take them, float32's
    // direct dW kernel does, on x and dy rounded to bf16 (its products exact in float32), the
    // chunk's partial added to zero. One chunk of images; bits at every level and thread count.
    use convnet::ops::conv_dw_direct::{weight_grad_direct, DirectShape};
    let _walk = walking_levels();
    let c = ConvCase { n: 5, hw: 9, ci: 10, co: 20, k: 3, stride: 1, padding: Padding::Same };
    let ConvInputs { win, g, x, w, b, dy } = c.inputs(910);
    let (y, dx, dw, db) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Winograd);
    let round = |t: &Tensor| t.data().iter().map(|&v| round_bf16(v)).collect::<Vec<f32>>();
    let mut want = vec![0.0f32; dw.len()];
    weight_grad_direct(&round(&x), &round(&dy), DirectShape { g: &g, images: c.n, c_in: c.ci, c_out: c.co }, &mut want);
    let want: Vec<u32> = want.iter().map(|v| (0.0 + v).to_bits()).collect();
    assert!(bits(&dw) == want, "dW is not float32's direct dW of the rounded inputs");
    assert_same_bits_everywhere("8-15 input channels", (&x, &w, &b, &dy), &win, Precision::Bf16Winograd, [&y, &dx, &dw, &db]);
}

#[test]
fn dense_in_bf16_is_the_exact_product_of_rounded_inputs() {
    // Batch 1 (the column-split path), 5 and 70 (over two 32-image chunks of dW); widths under
    // and over the vector and the kernel's 32 columns.
    for (case, &(n, fin, fout)) in [(1usize, 300usize, 70usize), (5, 33, 10), (70, 64, 129)].iter().enumerate() {
        let x = random(&[n, fin], 90 + case as u64);
        let w = random(&[fin, fout], 91 + case as u64);
        let b = random(&[fout], 92 + case as u64);
        let dy = random(&[n, fout], 93 + case as u64);
        let mut y = Tensor::empty();
        dense_forward_into(&x, &w, Some(&b), Precision::Bf16, &mut y).unwrap();
        let (mut dx, mut dw, mut db) = (Tensor::empty(), Tensor::empty(), Tensor::empty());
        dense_backward_into(&x, &w, &dy, Precision::Bf16, Some(&mut dx), &mut dw, Some(&mut db)).unwrap();
        let (xr, wr, dyr) = (rounded(&x), rounded(&w), rounded(&dy));
        let (mut ey, mut edx, mut edw) =
            (vec![Exact::default(); n * fout], vec![Exact::default(); n * fin], vec![Exact::default(); fin * fout]);
        for i in 0..n {
            for o in 0..fout {
                ey[i * fout + o].add(b.data()[o] as f64);
                for f in 0..fin {
                    ey[i * fout + o].add(xr[i * fin + f] * wr[f * fout + o]);
                    edx[i * fin + f].add(dyr[i * fout + o] * wr[f * fout + o]);
                    edw[f * fout + o].add(xr[i * fin + f] * dyr[i * fout + o]);
                }
            }
        }
        assert_within_accumulation(&format!("dense {case} y"), y.data(), &ey, fin);
        assert_within_accumulation(&format!("dense {case} dX"), dx.data(), &edx, fout);
        // dW: a chain per 32-image chunk, then the chunks added in order: n + chunks roundings.
        assert_within_accumulation(&format!("dense {case} dW"), dw.data(), &edw, n + n.div_ceil(32));
    }
}

const NET: &str = r#"
name = "bf16-net"
input = [6, 6, 3]
[data]
dataset = "mnist"
[train]
batch_size = 4
epochs = 1
precision = "bf16"
[optimizer]
kind = "adam"
lr = 0.001
[[layers]]
type = "conv2d"
filters = 32
kernel = 3
padding = "same"
[[layers]]
type = "batch_norm"
[[layers]]
type = "tanh"
[[layers]]
type = "conv2d"
filters = 32
kernel = 3
padding = "same"
[[layers]]
type = "tanh"
[[layers]]
type = "avg_pool"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 10
"#;

#[test]
fn each_familys_products_follow_its_own_chain() {
    // A dense layer's y = b + x·W: in the tiles' family TDPBF16PS's chain (blocks of 16 pairs,
    // even and odd k apart), in the winograd family VDPBF16PS's (one chain, pair by pair), each
    // the GEMM of that chain bit for bit. 70 inputs: over one block, so the chains differ.
    let (n, fin, fout) = (5, 70, 20);
    let (x, w, b) = (random(&[n, fin], 501), random(&[fin, fout], 502), random(&[fout], 503));
    let mut outputs = Vec::new();
    for (precision, chain) in [(Precision::Bf16Tiles, Chain::Tiles), (Precision::Bf16Winograd, Chain::Dot)] {
        let mut y = Tensor::empty();
        dense_forward_into(&x, &w, Some(&b), precision, &mut y).unwrap();
        let mut c: Vec<f32> = b.data().iter().copied().cycle().take(n * fout).collect();
        gemm_bf16(n, fin, fout, x.data(), false, w.data(), false, 1.0, &mut c, chain);
        assert!(bits(&y) == c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{precision}: not the {chain:?} chain's bits");
        outputs.push(bits(&y));
    }
    assert_ne!(outputs[0], outputs[1], "the two chains gave the same bits: the test cannot tell them apart");
}

#[test]
fn a_network_in_bf16_has_gradients_within_bf16_rounding_of_finite_differences() {
    // The second convolution (32 -> 32, 3x3) runs by Winograd; the first and the dense layer
    // by im2col / GEMM. Smooth activations (tanh, average pooling), so that the differences
    // see no kink. Finite differences of the float32 loss (the function bf16 approximates)
    // against the bf16 gradients, parameter by parameter, in norm: every operand of a product
    // is off by at most 2^-9 of itself, a product by 2^-8, and the first layer's gradient comes
    // through three layers of products (and sums that cancel, so single components can be off
    // by more of themselves): measured 2^-8 x 0.7-7.9, we allow |g_bf16 - g_numeric| <=
    // 2^-4 |g_numeric| over the coordinates checked (a wrong operand is off by ~1), and check that float32 meets 2^-10 on the same coordinates (so the bound is
    // bf16's, not the finite differences').
    let cfg = Config::from_toml(NET, "bf16-net").unwrap();
    assert_eq!(cfg.run.train.precision, Precision::Bf16);
    let mut net = Network::build(&cfg.model, 5).unwrap();
    let x = random(&[4, 6, 6, 3], 6);
    let labels = [1, 7, 3, 0];
    let loss = Loss { label_smoothing: 0.0 };
    let grads_in = |net: &mut Network, p: Precision| {
        net.set_precision(p);
        net.compute_gradients(&x, &labels, loss).unwrap();
        net.params().iter().map(|q| (q.trainable, q.grad.clone())).collect::<Vec<_>>()
    };
    let g16 = grads_in(&mut net, Precision::Bf16);
    let g32 = grads_in(&mut net, Precision::F32);
    net.set_precision(Precision::F32);
    let names: Vec<String> = net.param_names().into_iter().map(String::from).collect();
    let eps = 1e-2f32;
    let mut checked = 0;
    for (pi, name) in names.iter().enumerate() {
        let (trainable, grad16) = &g16[pi];
        // The conv bias before batch norm has no gradient at all (the norm removes it).
        if !trainable || name == "0.conv2d.bias" {
            continue;
        }
        let len = grad16.len();
        let (mut numeric_sq, mut err16_sq, mut err32_sq) = (0.0f64, 0.0f64, 0.0f64);
        // Up to 40 coordinates per parameter, spread over it.
        for j in (0..len).step_by(len.div_ceil(40)) {
            let mut loss_at = |delta: f32| {
                net.params_mut()[pi].value.data_mut()[j] += delta;
                let l = net.compute_gradients(&x, &labels, loss).unwrap().loss as f64;
                net.params_mut()[pi].value.data_mut()[j] -= delta;
                l
            };
            let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
            let (a16, a32) = (grad16.data()[j] as f64, g32[pi].1.data()[j] as f64);
            numeric_sq += numeric * numeric;
            err16_sq += (a16 - numeric).powi(2);
            err32_sq += (a32 - numeric).powi(2);
            checked += 1;
        }
        let (rel16, rel32) = ((err16_sq / numeric_sq).sqrt(), (err32_sq / numeric_sq).sqrt());
        eprintln!("{name}: relative error in norm: bf16 {rel16:.2e} (2^-8 x {:.1}), f32 {rel32:.2e}", rel16 * 256.0);
        assert!(rel32 <= 2f64.powi(-10), "{name}: f32 gradient {rel32:e} off the differences");
        assert!(rel16 <= 2f64.powi(-4), "{name}: bf16 gradient {rel16:e} off the differences");
    }
    assert!(checked > 150, "{checked} coordinates");
}

/// Two training steps of NET at `threads` threads: every parameter's bits afterwards.
fn two_steps(threads: usize, precision: Precision) -> Vec<u32> {
    let cfg = Config::from_toml(NET, "bf16-net").unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut net = Network::build(&cfg.model, 5).unwrap();
        net.set_precision(precision);
        let mut opt = convnet::optim::Optimizer::new(cfg.run.optimizer.clone()).unwrap();
        for step in 0..2 {
            let x = random(&[20, 6, 6, 3], 100 + step);
            let labels: Vec<usize> = (0..20).map(|i| (i * 7 + step as usize) % 10).collect();
            net.compute_gradients(&x, &labels, Loss { label_smoothing: 0.0 }).unwrap();
            net.apply_gradients(&mut opt, 1e-3).unwrap();
        }
        let y = net.forward(&random(&[3, 6, 6, 3], 9), Mode::Eval).unwrap();
        net.params().iter().flat_map(|p| p.value.data().to_vec()).chain(y.data().to_vec()).map(f32::to_bits).collect()
    })
}

#[test]
fn bf16_training_is_bit_identical_across_threads_and_simd_levels() {
    let _walk = walking_levels();
    // Plain bf16 is the family this CPU's hardware suits, named or not.
    let reference = two_steps(1, Precision::Bf16);
    let here = match Bf16Convs::for_this_cpu() {
        Bf16Convs::Tiles => Precision::Bf16Tiles,
        Bf16Convs::Winograd => Precision::Bf16Winograd,
    };
    assert!(two_steps(1, here) == reference, "bf16 is not {here} here");
    for threads in [2, 3] {
        assert!(two_steps(threads, Precision::Bf16) == reference, "bf16 at {threads} threads differs from 1 thread");
    }
    // The other family, on 1 and 3 threads: its own bits (the 32 -> 32 layer's dW on the tiles
    // or by im2col), the same on any thread count.
    let other = if here == Precision::Bf16Tiles { Precision::Bf16Winograd } else { Precision::Bf16Tiles };
    let other_reference = two_steps(1, other);
    assert!(other_reference != reference, "{other} trained to the same bits as {here}");
    assert!(two_steps(3, other) == other_reference, "{other} at 3 threads differs from 1 thread");
    // The emulation (portable and AVX2 copies) against the hardware kernels, where the CPU has
    // them: the same bits.
    for level in available_simd_levels() {
        set_simd_level(level).unwrap();
        // The AVX512-BF16 and AMX levels count as bf16 hardware; below them the user is told.
        assert_eq!(bf16_hardware(), level >= SimdLevel::Avx512Bf16, "{level:?}");
        let notice = emulation_notice(Precision::Bf16);
        assert_eq!(notice.is_some(), level < SimdLevel::Avx512Bf16, "{level:?}: {notice:?}");
        assert!(notice.is_none_or(|n| n.contains(level.name())), "{level:?}");
        assert_eq!(emulation_notice(Precision::F32), None);
        assert!(two_steps(2, Precision::Bf16) == reference, "bf16 at SIMD level {level:?} differs");
        assert!(two_steps(2, other) == other_reference, "{other} at SIMD level {level:?} differs");
    }
    set_simd_level(detected_simd_level()).unwrap();
    assert!(two_steps(2, Precision::F32) != reference, "f32 and bf16 trained to the same bits");
}

#[test]
fn the_cli_and_the_config_take_the_precision_and_refuse_other_values() {
    use std::process::Command;
    let data = tempfile::tempdir().unwrap();
    common::write_quadrant_idx(data.path(), 64, 16, 3);
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("tiny.toml");
    std::fs::write(&cfg, common::tiny_config(data.path(), 1, "kind = \"adam\"\nlr = 0.01")).unwrap();
    let convnet = || Command::new(env!("CARGO_BIN_EXE_convnet"));
    // Training in bf16 from the command line: the same bits on 1 and 2 threads, and not the
    // float32 run's.
    let train = |precision: &str, threads: &str| {
        let out = work.path().join(format!("run-{precision}-{threads}"));
        let o = convnet()
            .args(["train", "--config", cfg.to_str().unwrap(), "--precision", precision, "--threads", threads, "--quiet", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        common::checkpoint_state(&out.join("last.safetensors"))
            .0
            .iter()
            .flat_map(|t| t.data().to_vec())
            .map(f32::to_bits)
            .collect::<Vec<_>>()
    };
    // Not quiet, the run's first line names the products' precision and its family.
    let o = convnet()
        .args(["train", "--config", cfg.to_str().unwrap(), "--precision", "bf16-tiles", "--threads", "1", "--out"])
        .arg(work.path().join("run-named"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.contains(", bf16-tiles products (convolutions by the tiles family)"), "{stderr}");
    let bf16 = train("bf16", "1");
    assert!(train("bf16", "2") == bf16, "bf16 training differs between 1 and 2 threads");
    assert!(train("f32", "2") != bf16, "--precision bf16 trained the float32 bits");

    // bench reports what it ran; `simd` lowers the SIMD level (CONVNET_SIMD) as on another CPU.
    let bench_at = |precision: &str, simd: Option<&str>| {
        convnet()
            .envs(simd.map(|level| ("CONVNET_SIMD", level)))
            .args(["bench", "--config", cfg.to_str().unwrap(), "--mode", "infer", "--batch-size", "2", "--steps", "2", "--reps", "2"])
            .args(["--warmup", "1", "--json", "--precision", precision])
            .output()
            .unwrap()
    };
    let bench = |precision: &str| bench_at(precision, None);
    let o = bench("bf16");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["precision"], "bf16");
    assert_eq!(r["bf16_convs"], Bf16Convs::for_this_cpu().name(), "{r}");
    // A family named on the command line is the one that runs, whatever the CPU.
    for (precision, family) in [("bf16-tiles", "tiles"), ("bf16-winograd", "winograd")] {
        let o = bench(precision);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!((r["precision"].as_str(), r["bf16_convs"].as_str()), (Some(precision), Some(family)), "{r}");
    }
    let r32: serde_json::Value = serde_json::from_slice(&bench("f32").stdout).unwrap();
    assert!(r32.get("bf16_convs").is_none(), "{r32}");
    let notices = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).matches("is emulated on this CPU").count();
    // The bench runs at the CPU's own level (other tests here may lower this process's).
    let hardware = detected_simd_level() >= SimdLevel::Avx512Bf16;
    assert_eq!(notices(&o), usize::from(!hardware), "{}", String::from_utf8_lossy(&o.stderr));
    // Below the bf16 level (as on a CPU without it) bf16 says once that it is emulated; float32
    // says nothing.
    let below = |precision: &str| bench_at(precision, Some("avx2"));
    let o = below("bf16");
    assert!(o.status.success() && notices(&o) == 1, "{}", String::from_utf8_lossy(&o.stderr));
    let o = below("f32");
    assert!(o.status.success() && notices(&o) == 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = bench("f16");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"f16\"") && stderr.contains("f32, bf16, bf16-tiles, bf16-winograd"), "{stderr}");

    // In the file: train.precision, checked when the config is read.
    let text = common::tiny_config(data.path(), 1, "kind = \"adam\"\nlr = 0.01").replace("seed = 3", "seed = 3\nprecision = \"bf17\"");
    let err = Config::from_toml(&text, "tiny.toml").unwrap_err().to_string();
    assert!(err.contains("tiny.toml") && err.contains("bf17"), "{err}");
}

#[test]
fn the_direct_kernel_on_the_dot_chain_equals_its_plain_loops_on_every_kernel_and_the_exact_sum() {
    let _walk = walking_levels();
    // The winograd family's direct convolution (`conv_direct_bf16`): every output one chain of
    // VDPBF16PS's pairs over (kernel row, input channel pair, tap), then + b (and ReLU). Against its plain
    // loops bit for bit at every SIMD level (the AVX512-BF16 kernel and the emulation), and
    // against the exact sum of the rounded inputs at float32 accumulation tolerance. Pairs per
    // pixel the kernel knows as constants (3, 16, 32 channels: 2, 8, 16 pairs) and others (5,
    // 7, 1 channels, odd ones with a zero channel), output channels below, at and over the
    // 16-lane vector (every block of 1-4 vectors, masked lanes, at each kernel width the
    // vector copy has its own tiles for: 1, 2, 3; 5 takes the any-width copy), SAME, VALID
    // and uneven explicit padding, an image smaller than a tile, blocks of rows.
    use convnet::ops::conv_direct::DirectConv;
    use convnet::ops::conv_direct_bf16::{forward_direct_bf16_ref, forward_direct_bf16_rows, pack_weights};
    let explicit = Padding::Explicit { top: 2, bottom: 0, left: 1, right: 3 };
    let cases = [
        ("3x3 same, 3 -> 16", [7, 9, 3], 16, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same, 16 -> 32", [6, 11, 16], 32, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same, 32 -> 16", [5, 8, 32], 16, Window::new(3, 3, 1, 1, Padding::Same)),
        ("5x5 same, 1 -> 37", [9, 6, 1], 37, Window::new(5, 5, 1, 1, Padding::Same)),
        ("2x2 valid, 3 -> 24", [8, 7, 3], 24, Window::new(2, 2, 1, 1, Padding::Valid)),
        ("3x2 explicit, 5 -> 70", [6, 9, 5], 70, Window::new(3, 2, 1, 1, explicit)),
        ("1x1, 7 -> 9", [4, 5, 7], 9, Window::new(1, 1, 1, 1, Padding::Valid)),
        ("3x3 same 2x3 image, 32 -> 3", [2, 3, 32], 3, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 same, 16 -> 64", [5, 7, 16], 64, Window::new(3, 3, 1, 1, Padding::Same)),
        ("3x3 valid, 32 -> 40", [6, 6, 32], 40, Window::new(3, 3, 1, 1, Padding::Valid)),
        ("2x2 valid, 16 -> 33", [5, 6, 16], 33, Window::new(2, 2, 1, 1, Padding::Valid)),
        ("1x1, 16 -> 50", [3, 5, 16], 50, Window::new(1, 1, 1, 1, Padding::Valid)),
    ];
    for (seed, (name, [ih, iw, c_in], c_out, win)) in cases.into_iter().enumerate() {
        let seed = 800 + seed as u64 * 10;
        let g = Geometry::new("test", ih, iw, &win).unwrap();
        let x = random(&[1, ih, iw, c_in], seed);
        let w = random(&[win.kh, win.kw, c_in, c_out], seed + 1);
        let b = random(&[c_out], seed + 2);
        let dy = Tensor::zeros(&[1, g.oh, g.ow, c_out]);
        let e = exact_conv(&rounded(&x), [1, ih, iw, c_in], &rounded(&w), [win.kh, win.kw, c_in, c_out], b.data(), &rounded(&dy), &g);
        for relu in [false, true] {
            let s = DirectConv { g: &g, c_in, c_out, w: w.data(), b: b.data(), relu };
            let mut slow = vec![0.0; g.oh * g.ow * c_out];
            forward_direct_bf16_ref(x.data(), s, &mut slow);
            if !relu {
                assert_within_accumulation(name, &slow, &e.y, win.kh * win.kw * c_in.next_multiple_of(2));
            }
            let mut packed = Vec::new();
            let row_len = g.ow * c_out;
            for level in available_simd_levels() {
                set_simd_level(level).unwrap();
                pack_weights(&s, &mut packed);
                let mut buf = Vec::new();
                for rows in [0..g.oh, 0..1, g.oh / 2..g.oh, 1..g.oh.min(3)] {
                    let mut fast = vec![f32::NAN; rows.len() * row_len];
                    forward_direct_bf16_rows(x.data(), s, &packed, rows.clone(), &mut buf, &mut fast);
                    let want = &slow[rows.start * row_len..rows.end * row_len];
                    let same = fast.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{name} relu {relu} rows {rows:?} at {level:?}: the kernel differs from its plain loops");
                }
            }
            set_simd_level(detected_simd_level()).unwrap();
        }
    }
}

#[test]
fn dw_in_the_winograd_family_on_the_tiles_layout_is_the_dot_chain_over_each_groups_pixel_pairs() {
    // Stride 1 with 16 channels or more each side, where float32's dW is not Winograd, and
    // under 8 input channels with 16 or more output channels: the winograd family's dW runs
    // `conv_tiles_dw` on its own chain. Written out by hand: the
    // images of each group of 32 laid one after another on an even padded width, pixel pairs
    // (2p, 2p + 1) of the layout, X at the tap's shift and dz (zero where a pixel is not an
    // output), each dW value `chain_dot` from zero over the group's pairs (whole blocks of 16
    // pairs), the groups' sums added in order to zero. 33 images: two groups; 3x3 SAME and 2x2
    // VALID (odd shifts, read unaligned in place); bits at every SIMD level and thread count.
    use convnet::ops::bf16::pair;
    use convnet::ops::gemm_bf16::chain_dot;
    let _walk = walking_levels();
    let cases = [
        ConvCase { n: 33, hw: 7, ci: 17, co: 18, k: 3, stride: 1, padding: Padding::Same },
        ConvCase { n: 33, hw: 6, ci: 16, co: 32, k: 2, stride: 1, padding: Padding::Valid },
        // An RGB first layer: under float32's direct dW (8 channels), the tiles' layout too.
        ConvCase { n: 33, hw: 7, ci: 3, co: 16, k: 3, stride: 1, padding: Padding::Same },
    ];
    for (ci_, c) in cases.iter().enumerate() {
        let ConvInputs { win, g, x, w, b, dy } = c.inputs(610 + ci_ as u64);
        let (y, dx, dw, db) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Winograd);
        // The layout: width Wd (even), S pixels an image, the group's pixels in whole blocks.
        let width = (g.ow + g.kw - 1).next_multiple_of(2);
        let image = (g.oh + g.kh - 1) * width;
        let x_at = |first: usize, images: usize, q: usize, ch: usize| -> f32 {
            let (n, r, col) = (q / image, q % image / width, q % width);
            let (Some(r), Some(col)) = (r.checked_sub(g.pad_top), col.checked_sub(g.pad_left)) else { return 0.0 };
            if n >= images || r >= c.hw || col >= c.hw {
                return 0.0;
            }
            x.data()[(((first + n) * c.hw + r) * c.hw + col) * c.ci + ch]
        };
        let dz_at = |first: usize, images: usize, q: usize, o: usize| -> f32 {
            let (n, i, j) = (q / image, q % image / width, q % width);
            if n >= images || i >= g.oh || j >= g.ow {
                return 0.0;
            }
            dy.data()[(((first + n) * g.oh + i) * g.ow + j) * c.co + o]
        };
        let mut want = vec![0.0f32; dw.len()];
        for first in (0..c.n).step_by(32) {
            let images = 32.min(c.n - first);
            let pixels = (images * image).next_multiple_of(32);
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let shift = ki * width + kj;
                    for ch in 0..c.ci {
                        let a: Vec<u32> = (0..pixels / 2)
                            .map(|p| pair(x_at(first, images, 2 * p + shift, ch), x_at(first, images, 2 * p + 1 + shift, ch)))
                            .collect();
                        for o in 0..c.co {
                            let bp: Vec<u32> =
                                (0..pixels / 2).map(|p| pair(dz_at(first, images, 2 * p, o), dz_at(first, images, 2 * p + 1, o))).collect();
                            want[((ki * g.kw + kj) * c.ci + ch) * c.co + o] += chain_dot(0.0, &a, &bp);
                        }
                    }
                }
            }
        }
        let what = format!("case {ci_}");
        let want_bits: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
        if let Some(i) = (0..want.len()).find(|&i| dw.data()[i].to_bits() != want_bits[i]) {
            panic!("{what}: dW is not the dot chain over the tiles' layout: dW[{i}] = {:e}, the chain gives {:e}", dw.data()[i], want[i]);
        }
        assert_same_bits_everywhere(&what, (&x, &w, &b, &dy), &win, Precision::Bf16Winograd, [&y, &dx, &dw, &db]);
    }
}

#[test]
fn dw_in_the_tiles_family_where_its_tiles_do_not_apply_is_im2cols_product_on_the_tiles_chain() {
    // 10 input channels at stride 1: neither the tiles (16 or more) nor Winograd take dW in
    // the tiles' family, im2col does: one chunk of images, one product col^T · dz on
    // TDPBF16PS's chain, added to zero. Written out: the column matrix by hand, `gemm_bf16`.
    let c = ConvCase { n: 3, hw: 7, ci: 10, co: 20, k: 3, stride: 1, padding: Padding::Same };
    let ConvInputs { win, g, x, w, b, dy } = c.inputs(950);
    let (_, _, dw, _) = conv_run(&x, &w, &b, &dy, &win, Precision::Bf16Tiles);
    let (pixels, k) = (c.n * g.oh * g.ow, c.k * c.k * c.ci);
    let mut col = vec![0.0f32; pixels * k];
    for img in 0..c.n {
        for i in 0..g.oh {
            for j in 0..g.ow {
                let row = (img * g.oh + i) * g.ow + j;
                for ki in 0..c.k {
                    for kj in 0..c.k {
                        let (Some(r), Some(s)) = (g.in_row(i, ki), g.in_col(j, kj)) else { continue };
                        for ch in 0..c.ci {
                            col[row * k + (ki * c.k + kj) * c.ci + ch] = x.data()[((img * c.hw + r) * c.hw + s) * c.ci + ch];
                        }
                    }
                }
            }
        }
    }
    let mut want = vec![0.0f32; k * c.co];
    gemm_bf16(k, pixels, c.co, &col, true, dy.data(), false, 0.0, &mut want, Chain::Tiles);
    let want: Vec<u32> = want.iter().map(|v| (0.0 + v).to_bits()).collect();
    assert!(bits(&dw) == want, "the tiles' family's dW by im2col is not col^T · dz on its chain");
}

/// An evaluation norm's statistics over `c` channels (scales from 1 to 3, variances from 0.2,
/// means and shifts around 0): gamma, beta, running mean, running variance.
fn norm_stats(c: usize, seed: u64) -> [Vec<f32>; 4] {
    let values = |k: u64| random(&[c], seed + k).data().to_vec();
    [values(0).iter().map(|v| 2.0 + 2.0 * v).collect(), values(1), values(2), values(3).iter().map(|v| 0.2 + v.abs()).collect()]
}

/// What the layers after a convolution compute from its output `y` in evaluation mode, by
/// their own kernels: a norm with `stats` (and its relu, or the GELU after it), or a GELU
/// alone.
fn layers_after(y: &Tensor, stats: Option<&[Vec<f32>; 4]>, activation: Then) -> Tensor {
    let mut out = Tensor::empty();
    match (stats, activation) {
        (Some([g, b, m, v]), Then::Gelu) => batch_norm_gelu_forward_eval(y, g, b, m, v, 1e-3, &mut out).unwrap(),
        (Some([g, b, m, v]), act) => batch_norm_forward_eval(y, g, b, m, v, 1e-3, act == Then::Relu, &mut out).unwrap(),
        (None, Then::Gelu) => {
            out.resize(y.shape());
            gelu_forward_into(y.data(), out.data_mut());
        }
        (None, _) => unreachable!("no such case"),
    }
    out
}

#[test]
fn an_epilogue_in_the_convolution_has_the_bits_of_the_norm_and_activation_layers_after_it() {
    let _walk = walking_levels();
    // (images, side, c_in, c_out, kernel, stride, padding, precision): every algorithm, both
    // bf16 families, inputs reaching GELU's tails.
    let cases = [
        (2, 9, 32, 32, 3, 1, Padding::Same, Precision::F32),
        (2, 8, 3, 24, 2, 1, Padding::Valid, Precision::F32),
        (2, 8, 3, 24, 2, 1, Padding::Valid, Precision::Bf16Winograd),
        (2, 8, 3, 24, 2, 1, Padding::Valid, Precision::Bf16Tiles),
        (2, 9, 8, 16, 3, 2, Padding::Same, Precision::Bf16Tiles),
        (3, 8, 16, 24, 3, 1, Padding::Same, Precision::Bf16Tiles),
        (1, 24, 16, 32, 3, 1, Padding::Same, Precision::Bf16Tiles),
    ];
    let mut algorithms = Vec::new();
    for (case, &(n, hw, ci, co, k, stride, padding, precision)) in cases.iter().enumerate() {
        let seed = 900 + 10 * case as u64;
        let win = Window::new(k, k, stride, stride, padding);
        let x = Tensor::from_vec(&[n, hw, hw, ci], random(&[n, hw, hw, ci], seed).data().iter().map(|v| 3.0 * v).collect()).unwrap();
        let (w, b) = (random(&[k, k, ci, co], seed + 1), random(&[co], seed + 2));
        let g = Geometry::new("conv", hw, hw, &win).unwrap();
        algorithms.push(algorithm_in(precision, &g, &win, ci, co));
        let stats = norm_stats(co, seed + 3);
        let a = eval_scale(&stats[0], &stats[3], 1e-3);
        let map = ChannelAffine { m: &stats[2], a: &a, b: &stats[1] };
        for relu in [false, true] {
            let mut y = Tensor::empty();
            conv2d_forward_into(&x, &w, &b, &win, relu, precision, &mut y, &mut ConvScratch::default()).unwrap();
            let epilogues = [
                (Epilogue::activation(Then::Gelu), None),
                (Epilogue { norm: Some(map), activation: Then::Identity }, Some(&stats)),
                (Epilogue { norm: Some(map), activation: Then::Relu }, Some(&stats)),
                (Epilogue { norm: Some(map), activation: Then::Gelu }, Some(&stats)),
            ];
            for (then, stats) in epilogues {
                let reference = bits(&layers_after(&y, stats, then.activation));
                for level in available_simd_levels() {
                    set_simd_level(level).unwrap();
                    for threads in [1, 3] {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                        let mut fused = Tensor::from_vec(&[2], vec![5.0; 2]).unwrap();
                        let mut s = ConvScratch::default();
                        pool.install(|| conv2d_forward_then_into(&x, &w, &b, &win, (relu, then), precision, &mut fused, &mut s)).unwrap();
                        let what = format!("case {case} ({:?}), relu {relu}, {then:?}, {level:?}, {threads} threads", algorithms[case]);
                        assert_eq!(fused.shape(), y.shape(), "{what}");
                        assert!(bits(&fused) == reference, "{what}: other bits");
                    }
                }
                set_simd_level(detected_simd_level()).unwrap();
            }
        }
    }
    for algorithm in [Algorithm::Winograd, Algorithm::Direct, Algorithm::Im2col, Algorithm::Tiles] {
        assert!(algorithms.contains(&algorithm), "no case goes by {algorithm:?}: {algorithms:?}");
    }
}

#[test]
fn a_convolution_pooled_as_it_is_finished_applies_its_epilogue_to_the_pooled_values() {
    let _walk = walking_levels();
    let (win, pool) = (Window::new(3, 3, 1, 1, Padding::Same), Window::new(3, 3, 2, 2, Padding::Valid));
    let x = Tensor::from_vec(&[3, 11, 11, 16], random(&[3, 11, 11, 16], 960).data().iter().map(|v| 3.0 * v).collect()).unwrap();
    let (w, b) = (random(&[3, 3, 16, 24], 961), random(&[24], 962));
    let stats = norm_stats(24, 963);
    let a = eval_scale(&stats[0], &stats[3], 1e-3);
    let map = ChannelAffine { m: &stats[2], a: &a, b: &stats[1] };
    for relu in [false, true] {
        let (pooled, _) = conv_then_max_pool(&x, &w, &b, &win, relu, &pool, Precision::Bf16Tiles);
        let epilogues = [
            (Epilogue::activation(Then::Gelu), None),
            (Epilogue { norm: Some(map), activation: Then::Relu }, Some(&stats)),
            (Epilogue { norm: Some(map), activation: Then::Gelu }, Some(&stats)),
        ];
        for (then, stats) in epilogues {
            let reference = bits(&layers_after(&pooled, stats, then.activation));
            for level in available_simd_levels() {
                set_simd_level(level).unwrap();
                let (mut fused, mut s) = (Tensor::empty(), ConvScratch::default());
                let done =
                    conv2d_forward_max_pooled_into(&x, &w, &b, &win, (relu, then), Precision::Bf16Tiles, &pool, &mut fused, None, &mut s)
                        .unwrap();
                assert!(done, "not pooled as finished");
                assert!(bits(&fused) == reference, "relu {relu}, {then:?}, {level:?}: other bits");
            }
            set_simd_level(detected_simd_level()).unwrap();
        }
    }
}

/// A batch norm over `c` channels on `side` x `side` images, in evaluation mode with the
/// statistics of `norm_stats(c, seed)` (and its relu if `relu`).
fn eval_norm_layer(name: &str, side: usize, c: usize, seed: u64, relu: bool) -> BatchNormLayer {
    let mut bn = BatchNormLayer::new(name.into(), &[side, side, c], 0.9, 1e-3);
    let [g, b, m, v] = norm_stats(c, seed).map(|v| Tensor::from_vec(&[c], v).unwrap());
    (bn.gamma.value, bn.beta.value, bn.running_mean.value, bn.running_var.value) = (g, b, m, v);
    bn.relu = relu;
    bn
}

#[test]
fn in_evaluation_a_convolution_takes_the_pooling_norm_and_gelu_after_it_in_its_pass() {
    let x = Tensor::from_vec(&[6, 8, 8, 16], random(&[6, 8, 8, 16], 970).data().iter().map(|v| 3.0 * v).collect()).unwrap();
    let gelu = |side: usize| -> Box<dyn Layer> { Box::new(GeluLayer::new("g".into(), &[side, side, 24])) };
    let norm = |side: usize, relu: bool| -> Box<dyn Layer> { Box::new(eval_norm_layer("n", side, 24, 971, relu)) };
    let pool = || -> Box<dyn Layer> { Box::new(conv_and_pool(Precision::Bf16Tiles, false).1) };
    let conv = |relu: bool| conv_and_pool(Precision::Bf16Tiles, relu).0;
    // Each layer alone: the reference.
    let one_by_one = |layers: &mut [Box<dyn Layer>]| {
        let mut c = conv(false);
        c.forward(&x, Mode::Eval).unwrap();
        let mut input = c.output().clone();
        for layer in layers.iter_mut() {
            layer.forward(&input, Mode::Eval).unwrap();
            input = layer.output().clone();
        }
        input
    };
    // (the layers after the conv, how many its pass takes): conv, pool, norm, GELU; a norm's
    // relu ends it; a GELU straight after the pooling; the pooling alone before a dense layer.
    let dense = || -> Box<dyn Layer> { Box::new(FlattenLayer::new("f".into(), &[4, 4, 24])) };
    let cases: Vec<(Vec<Box<dyn Layer>>, usize)> = vec![
        (vec![pool(), norm(4, false), gelu(4)], 3),
        (vec![pool(), norm(4, true), gelu(4)], 2),
        (vec![pool(), norm(4, false), dense()], 2),
        (vec![pool(), gelu(4)], 2),
        (vec![pool(), dense()], 1),
        (vec![gelu(8), norm(8, false)], 1),
    ];
    for (case, (mut after, taken)) in cases.into_iter().enumerate() {
        let reference = one_by_one(&mut after[..taken]);
        let mut after_fused: Vec<Box<dyn Layer>> = after;
        assert_eq!(conv(false).forward_eval_fused(&x, &mut after_fused).unwrap(), taken, "case {case}");
        assert!(bits(after_fused[taken - 1].output()) == bits(&reference), "case {case}: other bits");
        assert_eq!(after_fused[taken - 1].output().shape(), reference.shape());
    }
    // The pooling's winners were not kept: a backward pass through it is refused.
    let mut after = vec![pool(), norm(4, false), gelu(4)];
    let mut c = conv(false);
    c.forward(&x, Mode::Train).unwrap();
    let conv_out = c.output().clone();
    after[0].forward(&conv_out, Mode::Train).unwrap();
    assert_eq!(c.forward_eval_fused(&x, &mut after).unwrap(), 3);
    let refused = after[0].backward(&conv_out, &random(&[6, 4, 4, 24], 972), true).unwrap_err().to_string();
    assert!(refused.contains("max_pool2d backward"), "{refused}");
    // A conv with its relu before a GELU or a norm takes nothing; a norm with its relu takes
    // no GELU after it; nothing after the conv, nothing taken.
    assert_eq!(conv(true).forward_eval_fused(&x, &mut [gelu(8)]).unwrap(), 0);
    assert_eq!(conv(true).forward_eval_fused(&x, &mut [norm(8, false), gelu(8)]).unwrap(), 0, "a relu before the norm");
    assert_eq!(conv(false).forward_eval_fused(&x, &mut [norm(8, true), gelu(8)]).unwrap(), 1);
    assert_eq!(conv(false).forward_eval_fused(&x, &mut []).unwrap(), 0);
    // The norm folded into the weights, then the GELU in the epilogue: the bits of the pair
    // (conv + norm) followed by the GELU layer.
    let mut pair: Vec<Box<dyn Layer>> = vec![norm(8, false)];
    assert_eq!(conv(false).forward_eval_fused(&x, &mut pair).unwrap(), 1);
    let mut g = gelu(8);
    g.forward(pair[0].output(), Mode::Eval).unwrap();
    let mut triple = vec![norm(8, false), gelu(8)];
    assert_eq!(conv(false).forward_eval_fused(&x, &mut triple).unwrap(), 2);
    assert!(bits(triple[1].output()) == bits(g.output()), "conv + norm + GELU: other bits");
}

#[test]
fn a_sequentials_evaluation_pass_takes_several_layers_at_once_with_the_bits_of_each_alone() {
    // conv, GELU, conv, pool, norm, GELU, flatten, dense (no norm straight after a conv: those
    // are folded into its weights, other bits than the norm alone).
    let whiten = Conv2dLayer::new(
        "w".into(),
        &[9, 9, 3],
        Window::new(2, 2, 1, 1, Padding::Valid),
        Param::new("w", random(&[2, 2, 3, 16], 980), 0.0, true),
        Param::new("b", random(&[16], 981), 0.0, false),
    )
    .unwrap();
    let (conv, pool) = conv_and_pool(Precision::Bf16Tiles, false);
    let dense = DenseLayer::new("d".into(), &[384], Param::new("w", random(&[384, 5], 982), 0.0, true), None).unwrap();
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(whiten),
        Box::new(GeluLayer::new("g".into(), &[8, 8, 16])),
        Box::new(conv),
        Box::new(pool),
        Box::new(eval_norm_layer("n", 4, 24, 983, false)),
        Box::new(GeluLayer::new("g2".into(), &[4, 4, 24])),
        Box::new(FlattenLayer::new("f".into(), &[4, 4, 24])),
        Box::new(dense),
    ];
    let mut net = Sequential::new(layers).unwrap();
    net.set_precision(Precision::Bf16Tiles);
    let x = random(&[6, 9, 9, 3], 984);
    net.forward_each(&x, Mode::Eval).unwrap();
    let each = net.output().clone();
    let mut seconds = [1.0; 8];
    net.forward_timed(&x, Mode::Eval, &mut seconds).unwrap();
    assert!(bits(net.output()) == bits(&each), "the fused pass: other bits");
    // The first conv took its GELU; the second its pooling, norm and GELU.
    let zero: Vec<bool> = seconds.iter().map(|&s| s == 0.0).collect();
    assert_eq!(zero, [false, true, false, true, true, true, false, false], "{seconds:?}");
}
