//! Features checked end to end against values worked out here: flip test-time augmentation,
//! numeric and per-side padding with [h, w] kernels, image-folder data sets, LRN's defaults,
//! and resuming a run with augmentation and a non-constant learning-rate schedule.
mod common;

use common::*;
use convnet::data::{Dataset, Normalization};
use convnet::model::{LayerConfig, Loss, Network};
use convnet::ops::lrn::{lrn_forward, LrnParams};
use convnet::optim::Optimizer;
use convnet::train::{evaluate, EvalOptions, Evaluation};
use convnet::{Config, Tensor};

// ---------------------------------------------------------------- helpers

/// A config of the given model, for building networks by hand (the run is never used).
fn config(input: &str, layers: &str) -> Config {
    Config::from_toml(&model_config("features", input, layers), "features.toml").unwrap()
}

/// `pixels` (HWC, one image after another) normalised by hand: (p / 255 - mean[c]) / std[c].
fn normalise(pixels: &[u8], norm: &Normalization, shape: &[usize]) -> Tensor {
    let c = norm.mean.len();
    let data = pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| ((f64::from(p) / 255.0 - f64::from(norm.mean[i % c])) / f64::from(norm.std[i % c])) as f32)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// Each image of an NHWC tensor mirrored left-right, by index arithmetic.
fn mirror(x: &Tensor) -> Tensor {
    let [n, h, w, c] = x.shape()[..] else { panic!("not NHWC") };
    let mut out = Vec::with_capacity(x.len());
    for img in 0..n {
        for i in 0..h {
            for j in 0..w {
                let src = ((img * h + i) * w + (w - 1 - j)) * c;
                out.extend_from_slice(&x.data()[src..src + c]);
            }
        }
    }
    Tensor::from_vec(x.shape(), out).unwrap()
}

/// Softmax of one row of logits, in f64.
fn softmax64(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn argmax64(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// The evaluation of per-image class probabilities: mean cross-entropy, accuracy, confusion.
fn evaluation_of(probs: &[Vec<f64>], labels: &[u8], k: usize) -> (f64, f64, Vec<Vec<usize>>) {
    let mut confusion = vec![vec![0; k]; k];
    let mut loss = 0.0;
    for (p, &l) in probs.iter().zip(labels) {
        loss -= p[l as usize].ln();
        confusion[l as usize][argmax64(p)] += 1;
    }
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    (loss / labels.len() as f64, correct as f64 / labels.len() as f64, confusion)
}

fn assert_evaluation(got: &Evaluation, want: &(f64, f64, Vec<Vec<usize>>), what: &str) {
    assert!((f64::from(got.loss) - want.0).abs() <= 1e-5 * want.0.max(1.0), "{what}: loss {} vs {}", got.loss, want.0);
    let n: usize = want.2.iter().flatten().sum();
    assert_eq!(got.accuracy, (want.1 * n as f64).round() as f32 / n as f32, "{what}: accuracy");
    assert_eq!(got.confusion, want.2, "{what}: confusion");
}

fn param_mut<'a>(net: &'a mut Network, name: &str) -> &'a mut Tensor {
    &mut net.params_mut().into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no parameter {name}")).value
}

// ---------------------------------------------------------------- flip test-time augmentation

#[test]
fn tta_flip_averages_the_probabilities_of_each_image_and_its_mirror() {
    let cfg = config(
        "[5, 6, 2]",
        "[[layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel = [3, 2]\npadding = \"valid\"\n[[layers]]\ntype = \"relu\"\n\
         [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 4\n",
    );
    let mut net = Network::build(&cfg.model, 11).unwrap();
    // Biases away from zero, so that they take part.
    for (name, seed) in [("0.conv2d.bias", 1), ("3.dense.bias", 2)] {
        let b = param_mut(&mut net, name);
        *b = random(b.shape(), seed);
    }
    let n = 7;
    let mut r = rng(4);
    let pixels: Vec<u8> = (0..n * 60).map(|_| rand::Rng::gen(&mut r)).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i * 3 % 4) as u8).collect();
    let ds = Dataset::new(pixels.clone(), labels.clone(), 5, 6, 2, (0..4).map(|i| i.to_string()).collect()).unwrap();
    let norm = Normalization { mean: vec![0.3, 0.6], std: vec![0.2, 0.25] };

    // By hand: the images and their mirrors (by index arithmetic) through the library's forward
    // pass, softmax in f64, the mean of the two.
    let x = normalise(&pixels, &norm, &[n, 5, 6, 2]);
    let (plain_logits, mirror_logits) = (net.predict(&x).unwrap(), net.predict(&mirror(&x)).unwrap());
    let plain: Vec<Vec<f64>> = plain_logits.data().chunks(4).map(softmax64).collect();
    let mirrored: Vec<Vec<f64>> = mirror_logits.data().chunks(4).map(softmax64).collect();
    let averaged: Vec<Vec<f64>> = plain.iter().zip(&mirrored).map(|(p, q)| p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect()).collect();
    let (want_plain, want_tta) = (evaluation_of(&plain, &labels, 4), evaluation_of(&averaged, &labels, 4));

    // Batches of 3 (7 = 3 + 3 + 1): evaluation does not depend on the batch size.
    for batch_size in [3, 256] {
        let tta = evaluate(&mut net, &ds, &norm, EvalOptions { batch_size, tta_flip: true, tta_translate: 0 }).unwrap();
        let no_tta = evaluate(&mut net, &ds, &norm, EvalOptions { batch_size, tta_flip: false, tta_translate: 0 }).unwrap();
        assert_evaluation(&tta, &want_tta, &format!("TTA, batches of {batch_size}"));
        assert_evaluation(&no_tta, &want_plain, &format!("no TTA, batches of {batch_size}"));
        // These images are not symmetric: the mirror changes the probabilities.
        assert!((tta.loss - no_tta.loss).abs() > 1e-3, "TTA loss {} = plain loss {}", tta.loss, no_tta.loss);
    }

    // Mirror-symmetric images: the mirror is the image, so TTA changes nothing, bit for bit.
    let symmetric: Vec<u8> = (0..n * 60)
        .map(|i| {
            let (img, j, c) = (i / 60, (i / 2) % 6, i % 2);
            let row = (i / 12) % 5;
            let jj = j.min(5 - j);
            (img * 37 + row * 11 + jj * 29 + c * 53) as u8
        })
        .collect();
    let sym = Dataset::new(symmetric, labels, 5, 6, 2, ds.class_names.clone()).unwrap();
    let a = evaluate(&mut net, &sym, &norm, EvalOptions { batch_size: 4, tta_flip: true, tta_translate: 0 }).unwrap();
    let b = evaluate(&mut net, &sym, &norm, EvalOptions { batch_size: 4, tta_flip: false, tta_translate: 0 }).unwrap();
    assert_eq!((a.loss.to_bits(), a.accuracy, a.confusion), (b.loss.to_bits(), b.accuracy, b.confusion));

    // A run's `tta_flip = true` is what training and `convnet eval` evaluate with.
    let text = model_config("tta", "[5, 6, 2]", "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 4\n");
    let on = Config::from_toml(&text.replace("epochs = 1\n", "epochs = 1\ntta_flip = true\n"), "tta.toml").unwrap();
    assert!(EvalOptions::for_run(&on.run).tta_flip);
    assert!(!EvalOptions::for_run(&Config::from_toml(&text, "tta.toml").unwrap().run).tta_flip);
}

#[test]
fn tta_flip_can_turn_a_wrong_prediction_into_a_right_one() {
    // Two pixels, a dense layer set by hand: logits = x . W with W = [[3, 0, 2.5], [-3, 0, 2.5]].
    let cfg = config("[1, 2, 1]", "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 3\n");
    let mut net = Network::build(&cfg.model, 1).unwrap();
    *param_mut(&mut net, "1.dense.weight") = Tensor::from_vec(&[2, 3], vec![3.0, 0.0, 2.5, -3.0, 0.0, 2.5]).unwrap();
    *param_mut(&mut net, "1.dense.bias") = Tensor::zeros(&[3]);
    // Mean 0, std 1: pixel 255 is 1.0. Image A = [1, 0] (label 2), image B = [0, 1] (label 0),
    // each the other's mirror.
    let ds = Dataset::new(vec![255, 0, 0, 255], vec![2, 0], 1, 2, 1, vec!["x".into(), "y".into(), "z".into()]).unwrap();
    let norm = Normalization { mean: vec![0.0], std: vec![1.0] };

    // A: logits (3, 0, 2.5) -> class 0, wrong; B: (-3, 0, 2.5) -> class 2, wrong. With TTA both
    // average softmax(3, 0, 2.5) and softmax(-3, 0, 2.5), whose largest entry is class 2.
    let soft = |z: [f64; 3]| {
        let s: f64 = z.iter().map(|v| v.exp()).sum();
        z.map(|v| v.exp() / s)
    };
    let (pa, pb) = (soft([3.0, 0.0, 2.5]), soft([-3.0, 0.0, 2.5]));
    let avg = [0, 1, 2].map(|i| (pa[i] + pb[i]) / 2.0);
    assert!(avg[2] > avg[0] && pa[0] > pa[2], "the hand-made case is not what it should be");

    let plain = evaluate(&mut net, &ds, &norm, EvalOptions { batch_size: 2, tta_flip: false, tta_translate: 0 }).unwrap();
    assert_eq!(plain.accuracy, 0.0);
    assert_eq!(plain.confusion, [[0, 0, 1], [0, 0, 0], [1, 0, 0]]);
    let want = -(pa[2].ln() + pb[0].ln()) / 2.0;
    assert!((f64::from(plain.loss) - want).abs() < 1e-5 * want, "{} vs {want}", plain.loss);

    let tta = evaluate(&mut net, &ds, &norm, EvalOptions { batch_size: 2, tta_flip: true, tta_translate: 0 }).unwrap();
    assert_eq!(tta.accuracy, 0.5);
    assert_eq!(tta.confusion, [[0, 0, 1], [0, 0, 0], [0, 0, 1]]);
    let want = -(avg[2].ln() + avg[0].ln()) / 2.0;
    assert!((f64::from(tta.loss) - want).abs() < 1e-5 * want, "{} vs {want}", tta.loss);
}

// ---------------------------------------------------------------- padding and kernel shapes

/// A window cell inside the image: (row, column, kernel row, kernel column).
type Cell = (usize, usize, usize, usize);

/// A window op by hand on NHWC `x`: output (oh, ow) with stride (sh, sw) and the padding `top`
/// and `left` before each axis; `reduce(image, cells)` turns the cells of one output position
/// that lie inside the image into its `c_out` values.
fn window_by_hand(
    x: &Tensor,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (top, left): (usize, usize),
    (oh, ow): (usize, usize),
    c_out: usize,
    reduce: impl Fn(usize, &[Cell]) -> Vec<f32>,
) -> Tensor {
    let [n, h, w, _] = x.shape()[..] else { panic!("not NHWC") };
    let mut out = Vec::new();
    for img in 0..n {
        for oi in 0..oh {
            for oj in 0..ow {
                let mut cells = Vec::new();
                for ki in 0..kh {
                    for kj in 0..kw {
                        let (i, j) = ((oi * sh + ki) as isize - top as isize, (oj * sw + kj) as isize - left as isize);
                        if (0..h as isize).contains(&i) && (0..w as isize).contains(&j) {
                            cells.push((i as usize, j as usize, ki, kj));
                        }
                    }
                }
                let y = reduce(img, &cells);
                assert_eq!(y.len(), c_out);
                out.extend(y);
            }
        }
    }
    Tensor::from_vec(&[n, oh, ow, c_out], out).unwrap()
}

/// The cells of a window reduced by a convolution with weight `w` (HWIO) and bias `b`; cells
/// outside the image (zero padding) add nothing.
fn conv_cells<'a>(input: &'a Tensor, w: &'a Tensor, b: &'a Tensor) -> impl Fn(usize, &[Cell]) -> Vec<f32> + 'a {
    let [_, kw, c_in, c_out] = w.shape()[..] else { panic!("not HWIO") };
    let [_, ih, iw, _] = input.shape()[..] else { panic!("not NHWC") };
    move |img, cells| {
        (0..c_out)
            .map(|o| {
                let mut s = f64::from(b.data()[o]);
                for &(i, j, ki, kj) in cells {
                    for c in 0..c_in {
                        let xv = input.data()[((img * ih + i) * iw + j) * c_in + c];
                        let wv = w.data()[((ki * kw + kj) * c_in + c) * c_out + o];
                        s += f64::from(xv) * f64::from(wv);
                    }
                }
                s as f32
            })
            .collect()
    }
}

/// The cells of a window reduced by their largest value or their mean, channel by channel.
fn pool_cells(input: &Tensor, max: bool) -> impl Fn(usize, &[Cell]) -> Vec<f32> + '_ {
    let [_, ih, iw, c] = input.shape()[..] else { panic!("not NHWC") };
    move |img, cells| {
        (0..c)
            .map(|ch| {
                let vals = cells.iter().map(|&(i, j, _, _)| input.data()[((img * ih + i) * iw + j) * c + ch]);
                if max {
                    vals.fold(f32::NEG_INFINITY, f32::max)
                } else {
                    (vals.map(f64::from).sum::<f64>() / cells.len() as f64) as f32
                }
            })
            .collect()
    }
}

/// out = floor((in + before + after - f) / s) + 1 (docs/model.md, src/ops/window.rs).
fn out_size(input: usize, before: usize, after: usize, f: usize, s: usize) -> usize {
    (input + before + after - f) / s + 1
}

const PADDED: &str = r#"
[[layers]]
type = "conv2d"
filters = 3
kernel = 3
stride = 2
padding = 1

[[layers]]
type = "conv2d"
filters = 2
kernel = [3, 2]
stride = [1, 2]
padding = [2, 0, 1, 3]

[[layers]]
type = "max_pool"
size = [2, 3]
stride = 1
padding = [0, 1, 1, 0]

[[layers]]
type = "avg_pool"
size = 2
padding = 1

[[layers]]
type = "flatten"

[[layers]]
type = "dense"
units = 3
"#;

#[test]
fn numeric_and_per_side_padding_with_hw_kernels_give_the_documented_shapes_values_and_train() {
    let cfg = config("[7, 9, 2]", PADDED);
    let mut net = Network::build(&cfg.model, 3).unwrap();
    for (i, name) in ["0.conv2d.bias", "1.conv2d.bias"].iter().enumerate() {
        let b = param_mut(&mut net, name);
        *b = random(b.shape(), 20 + i as u64);
    }
    // [top, bottom, left, right] with every side different from its opposite.
    let (h0, w0) = (out_size(7, 1, 1, 3, 2), out_size(9, 1, 1, 3, 2));
    let (h1, w1) = (out_size(h0, 2, 0, 3, 1), out_size(w0, 1, 3, 2, 2));
    let (h2, w2) = (out_size(h1, 0, 1, 2, 1), out_size(w1, 1, 0, 3, 1));
    let (h3, w3) = (out_size(h2, 1, 1, 2, 2), out_size(w2, 1, 1, 2, 2));
    assert_eq!([(h0, w0), (h1, w1), (h2, w2), (h3, w3)], [(4, 5), (4, 4), (4, 3), (3, 2)]);
    let shapes: Vec<Vec<usize>> = net.layers().iter().map(|l| l.output_shape().to_vec()).collect();
    assert_eq!(shapes, [vec![h0, w0, 3], vec![h1, w1, 2], vec![h2, w2, 2], vec![h3, w3, 2], vec![h3 * w3 * 2], vec![3]]);

    let x = random(&[2, 7, 9, 2], 7);
    let trace = net.forward_trace(&x).unwrap();
    let names: Vec<&str> = trace.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..4], ["layer 0 (conv2d)", "layer 1 (conv2d)", "layer 2 (max_pool)", "layer 3 (avg_pool)"]);
    let weights: Vec<Tensor> = net.params().iter().map(|p| p.value.clone()).collect();
    let y0 = window_by_hand(&x, (3, 3), (2, 2), (1, 1), (h0, w0), 3, conv_cells(&x, &weights[0], &weights[1]));
    assert_close(&trace[0].1, &y0, 1e-5, "conv2d, padding = 1, stride 2");
    let y1 = window_by_hand(&trace[0].1, (3, 2), (1, 2), (2, 1), (h1, w1), 2, conv_cells(&trace[0].1, &weights[2], &weights[3]));
    assert_close(&trace[1].1, &y1, 1e-5, "conv2d, kernel [3, 2], stride [1, 2], padding [2, 0, 1, 3]");
    // Pools: padded cells neither win a max nor count in an average.
    let y2 = window_by_hand(&trace[1].1, (2, 3), (1, 1), (0, 1), (h2, w2), 2, pool_cells(&trace[1].1, true));
    assert_eq!(trace[2].1, y2, "max_pool, size [2, 3], padding [0, 1, 1, 0]");
    let y3 = window_by_hand(&trace[2].1, (2, 2), (2, 2), (1, 1), (h3, w3), 2, pool_cells(&trace[2].1, false));
    assert_close(&trace[3].1, &y3, 1e-6, "avg_pool, size 2, padding = 1");

    // A few SGD steps on one batch: the loss stays finite and falls, every parameter moves.
    let mut sgd = Optimizer::new(cfg.run.optimizer.clone()).unwrap();
    let labels = [0, 2];
    let mut losses = Vec::new();
    for step in 0..5 {
        let before: Vec<Tensor> = net.params().iter().map(|p| p.value.clone()).collect();
        let stats = net.compute_gradients(&x, &labels, Loss::default()).unwrap();
        assert!(stats.loss.is_finite(), "step {step}: loss {}", stats.loss);
        losses.push(stats.loss);
        net.apply_gradients(&mut sgd, 0.05).unwrap();
        for (p, b) in net.params().iter().zip(&before) {
            assert_ne!(p.value.data(), b.data(), "step {step}: {} did not change", p.name);
        }
    }
    assert!(losses[4] < losses[0], "{losses:?}");
}

#[test]
fn a_hw_kernel_is_height_then_width_and_padding_sides_are_top_bottom_left_right() {
    // One input channel of ones, a kernel of ones, no bias: each output counts the kernel cells
    // inside the image, so padding on one side shows on that side only.
    let layers = "[[layers]]\ntype = \"conv2d\"\nfilters = 1\nkernel = [2, 3]\npadding = [1, 0, 2, 0]\n\
                  [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n";
    let cfg = config("[3, 4, 1]", layers);
    let mut net = Network::build(&cfg.model, 1).unwrap();
    *param_mut(&mut net, "0.conv2d.weight") = Tensor::from_vec(&[2, 3, 1, 1], vec![1.0; 6]).unwrap();
    let trace = net.forward_trace(&Tensor::from_vec(&[1, 3, 4, 1], vec![1.0; 12]).unwrap()).unwrap();
    // out = (3 + 1 + 0 - 2) + 1 = 3 rows, (4 + 2 + 0 - 3) + 1 = 4 columns. The first row has
    // the padding row above it (kernel row 0 outside), the first two columns the padding on
    // the left.
    assert_eq!(trace[0].1.shape(), [1, 3, 4, 1]);
    #[rustfmt::skip]
    let want = [
        1.0, 2.0, 3.0, 3.0,
        2.0, 4.0, 6.0, 6.0,
        2.0, 4.0, 6.0, 6.0,
    ];
    assert_eq!(trace[0].1.data(), want);
}

// ---------------------------------------------------------------- LRN defaults

#[test]
fn an_lrn_layer_without_parameters_gets_tensorflows_defaults() {
    // src/model/spec.rs: "Defaults are TensorFlow's: depth_radius 5, bias 1, alpha 1, beta 0.5"
    // (tf.nn.lrn's own defaults; the tutorial's network sets 4, 1, 0.001 / 9, 0.75 itself).
    let cfg = config("[2, 3, 13]", "[[layers]]\ntype = \"lrn\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n");
    assert_eq!(cfg.model.layers[0], LayerConfig::Lrn { depth_radius: 5, bias: 1.0, alpha: 1.0, beta: 0.5 });
    let mut net = Network::build(&cfg.model, 1).unwrap();
    // Values up to 2 in size, so that alpha * sum(x^2) is not small next to the bias.
    let mut x = random(&[2, 2, 3, 13], 9);
    x.data_mut().iter_mut().for_each(|v| *v *= 2.0);
    let y = net.forward_trace(&x).unwrap().remove(0);
    assert_eq!(y.0, "layer 0 (lrn)");

    // By hand, in f64: y[c] = x[c] / sqrt(1 + sum of x^2 over channels c-5 ..= c+5).
    let want: Vec<f32> = x
        .data()
        .chunks(13)
        .flat_map(|row| {
            (0..13usize).map(move |c| {
                let sq: f64 = row[c.saturating_sub(5)..(c + 6).min(13)].iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                (f64::from(row[c]) / (1.0 + sq).sqrt()) as f32
            })
        })
        .collect();
    assert_close(&y.1, &Tensor::from_vec(x.shape(), want).unwrap(), 1e-5, "lrn with the defaults, by hand");

    // The op called with the defaults spelled out gives the same bits; changing any one of
    // them, or taking the tutorial's values, changes the output.
    let defaults = LrnParams { depth_radius: 5, bias: 1.0, alpha: 1.0, beta: 0.5 };
    assert_eq!(lrn_forward(&x, &defaults).unwrap().0, y.1);
    for other in [
        LrnParams { depth_radius: 4, ..defaults },
        LrnParams { bias: 2.0, ..defaults },
        LrnParams { alpha: 0.5, ..defaults },
        LrnParams { beta: 0.75, ..defaults },
        LrnParams { depth_radius: 4, bias: 1.0, alpha: 0.001 / 9.0, beta: 0.75 },
    ] {
        assert_ne!(lrn_forward(&x, &other).unwrap().0, y.1, "{other:?} gives the same output as the defaults");
    }
    // A partly given layer keeps the defaults for the rest.
    let cfg = config(
        "[2, 3, 13]",
        "[[layers]]\ntype = \"lrn\"\nbeta = 0.75\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n",
    );
    assert_eq!(cfg.model.layers[0], LayerConfig::Lrn { depth_radius: 5, bias: 1.0, alpha: 1.0, beta: 0.75 });
}

// ---------------------------------------------------------------- image folders

/// Class names in sorted order (the labels), and the quadrant each one lights up.
const QUADRANT_CLASSES: [(&str, (u32, u32)); 4] =
    [("bottom-left", (4, 0)), ("bottom-right", (4, 4)), ("top-left", (0, 0)), ("top-right", (0, 4))];

/// An 8x8 RGB image: dark noise, with the 4x4 quadrant whose top-left corner is (row, col)
/// bright.
fn quadrant_image(quadrant: (u32, u32), r: &mut rand_chacha::ChaCha8Rng) -> image::RgbImage {
    use rand::Rng;
    image::RgbImage::from_fn(8, 8, |x, y| {
        let lit = (y / 4 * 4, x / 4 * 4) == quadrant;
        let base: u8 = if lit { 190 } else { 20 };
        image::Rgb([base + r.gen_range(0..60), base + r.gen_range(0..60), base + r.gen_range(0..40)])
    })
}

/// Writes `root/<split>/<class>/img<i>.png|jpg|jpeg` (PNG, JPEG and .jpeg in turn) and returns
/// the images written, by split, class and file-name order.
fn write_image_folder(root: &std::path::Path, per_class: [(&str, usize); 2]) -> Vec<(std::path::PathBuf, image::RgbImage)> {
    let mut r = rng(21);
    let mut written = Vec::new();
    for (split, n) in per_class {
        for (class, quadrant) in QUADRANT_CLASSES {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = quadrant_image(quadrant, &mut r);
                let path = dir.join(format!("img{i:02}.{}", ["png", "jpg", "jpeg"][i % 3]));
                img.save(&path).unwrap();
                written.push((path, img));
            }
        }
    }
    written
}

#[test]
fn an_image_folder_data_set_decodes_exactly_trains_and_evaluates_end_to_end() {
    use convnet::data::load_image_folder;
    use convnet::train::{train, Checkpoint, TrainOptions};

    let data = tempfile::tempdir().unwrap();
    let written = write_image_folder(data.path(), [("train", 24), ("test", 6)]);
    // Files that are not images, and hidden ones, are no part of the data set.
    std::fs::write(data.path().join("train/top-left/notes.txt"), "not an image").unwrap();
    std::fs::create_dir_all(data.path().join("train/.cache")).unwrap();

    // The pixels: a PNG decodes to exactly what was written; a JPEG (lossy) to what the image
    // crate decodes from the file, near what was written.
    let train_ds = load_image_folder(data.path().join("train"), 8, 8, 3).unwrap();
    assert_eq!(train_ds.class_names, QUADRANT_CLASSES.map(|(c, _)| c));
    assert_eq!(train_ds.labels, (0..4u8).flat_map(|k| [k; 24]).collect::<Vec<_>>());
    for (i, (path, img)) in written[..96].iter().enumerate() {
        let got = train_ds.image(i);
        if path.extension().unwrap() == "png" {
            assert_eq!(got, img.as_raw().as_slice(), "{}", path.display());
        } else {
            assert_eq!(got, image::open(path).unwrap().to_rgb8().as_raw().as_slice(), "{}", path.display());
            // Lossy, but each quadrant keeps its mean colour.
            let quadrant_means = |px: &[u8]| -> Vec<f64> {
                let mut sums = vec![0.0; 12];
                for (i, p) in px.chunks(3).enumerate() {
                    let q = (i / 8 / 4) * 2 + (i % 8) / 4;
                    (0..3).for_each(|c| sums[q * 3 + c] += f64::from(p[c]) / 16.0);
                }
                sums
            };
            for (a, b) in quadrant_means(got).iter().zip(quadrant_means(img.as_raw())) {
                assert!(
                    (a - b).abs() < 8.0,
                    "{}: quadrant means {:?} vs {:?}",
                    path.display(),
                    quadrant_means(got),
                    quadrant_means(img.as_raw())
                );
            }
        }
    }

    let text = format!(
        r#"
name = "quadrants"
input = [8, 8, 3]
[data]
dataset = "image-folder"
path = "{}"
[train]
batch_size = 8
epochs = 3
seed = 2
[optimizer]
kind = "adam"
lr = 0.01
[[layers]]
type = "conv2d"
filters = 4
kernel = 3
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 4
"#,
        data.path().display()
    );
    let out = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&text, "quadrants.toml").unwrap();
    let opts = TrainOptions::new(config, out.path());
    let report = train(&opts, &mut |_| Ok(())).unwrap();
    assert_eq!(report.class_names, QUADRANT_CLASSES.map(|(c, _)| c));
    let last = report.epochs.last().unwrap();
    assert!(last.test_accuracy >= 0.95, "test accuracy {} after {} epochs", last.test_accuracy, report.epochs.len());
    assert!(last.train_loss < report.epochs[0].train_loss);

    // The checkpoint's statistics are the training images' own, per channel on the [0, 1] scale.
    let ck = Checkpoint::load(&out.path().join("best.safetensors")).unwrap();
    for c in 0..3 {
        let values: Vec<f64> = train_ds.images.iter().skip(c).step_by(3).map(|&p| f64::from(p) / 255.0).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64).sqrt();
        assert!((f64::from(ck.meta.normalization.mean[c]) - mean).abs() < 1e-6, "channel {c} mean");
        assert!((f64::from(ck.meta.normalization.std[c]) - std).abs() < 1e-6, "channel {c} std");
    }

    // The best checkpoint, evaluated afresh on the test folder, gives its epoch's figures.
    let test_ds = load_image_folder(data.path().join("test"), 8, 8, 3).unwrap();
    assert_eq!(test_ds.len(), 24);
    let mut net = ck.network().unwrap();
    let e = evaluate(&mut net, &test_ds, &ck.meta.normalization, EvalOptions::for_run(&ck.config.run)).unwrap();
    let row = &report.epochs[ck.meta.epoch - 1];
    assert_eq!((e.accuracy, e.loss), (row.test_accuracy, row.test_loss));
    assert!(e.accuracy >= 0.95, "{}", e.accuracy);

    // And through the command line, with the data folder given again.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["eval", "--model", out.path().join("best.safetensors").to_str().unwrap(), "--data", data.path().to_str().unwrap()])
        .args(["--confusion", out.path().join("cm.png").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains(&format!("quadrants on test (24 images): accuracy {:.2}%", 100.0 * e.accuracy)), "{stdout}");
    for (class, _) in QUADRANT_CLASSES {
        assert!(stdout.contains(class), "{stdout}");
    }
}

// ---------------------------------------------------------------- resume with augmentation and a schedule

/// The quadrant model trained with every kind of augmentation, dropout and a warm-up + cosine
/// schedule: each step's learning rate and batch depend on the global step.
fn augmented_config(data: &std::path::Path, epochs: usize) -> Config {
    let text = format!(
        r#"
name = "augmented"
input = [8, 8, 1]
[data]
dataset = "mnist"
path = "{}"
validation = 16
[train]
batch_size = 8
epochs = {epochs}
seed = 9
label_smoothing = 0.1
[optimizer]
kind = "adamw"
lr = 0.01
weight_decay = 0.01
[schedule]
kind = "cosine"
warmup_epochs = 0.5
min_lr = 1e-4
[augment]
crop_padding = 1
padding_mode = "reflect"
flip = true
cutout = 3
[[layers]]
type = "conv2d"
filters = 4
kernel = 3
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.25
[[layers]]
type = "dense"
units = 10
"#,
        data.display()
    );
    Config::from_toml(&text, "augmented.toml").unwrap()
}

/// Trains `config` in `out`; with `stop_after`, the run is stopped (its epoch hook fails) once
/// that many epochs are done, as a killed run would be.
fn train_run(config: Config, out: &std::path::Path, resume: bool, stop_after: Option<usize>) {
    use convnet::train::{train, ExistingRun, TrainOptions};
    let opts = TrainOptions { existing: if resume { ExistingRun::Resume } else { ExistingRun::Refuse }, ..TrainOptions::new(config, out) };
    let result = train(&opts, &mut |history| match stop_after {
        Some(k) if history.len() == k => Err(convnet::Error::invalid("test", "stopped")),
        _ => Ok(()),
    });
    match stop_after {
        Some(_) => assert!(result.is_err(), "the run was not stopped"),
        None => {
            result.unwrap();
        }
    }
}

/// Everything a run leaves that must not depend on interruptions: the last checkpoint's
/// weights and optimiser state, the best checkpoint's weights and epoch, and every metric of
/// every epoch but the timings, as bits.
#[allow(clippy::type_complexity)]
fn run_state(out: &std::path::Path) -> (Vec<(String, Vec<u32>)>, Vec<(String, Vec<u32>)>, Vec<(String, Vec<u32>)>, usize, Vec<[u32; 7]>) {
    use convnet::train::Checkpoint;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let weights =
        |ck: &Checkpoint| ck.network().unwrap().params().iter().map(|p| (p.name.clone(), bits(p.value.data()))).collect::<Vec<_>>();
    let last = Checkpoint::load(&out.join("last.safetensors")).unwrap();
    let best = Checkpoint::load(&out.join("best.safetensors")).unwrap();
    let optimiser = last.optimizer_state().into_iter().map(|(n, v)| (n, bits(&v))).collect();
    let metrics = convnet::train::metrics::read_metrics(&out.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|m| [m.train_loss, m.train_accuracy, m.val_loss, m.val_accuracy, m.test_loss, m.test_accuracy, m.lr].map(f32::to_bits))
        .collect();
    (weights(&last), optimiser, weights(&best), best.meta.epoch, metrics)
}

#[test]
fn a_run_with_augmentation_and_a_schedule_stopped_and_resumed_ends_bit_identical() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 120, 24, 6);
    let straight = tempfile::tempdir().unwrap();
    train_run(augmented_config(data.path(), 3), straight.path(), false, None);
    let reference = run_state(straight.path());
    // The schedule is not constant: every epoch ends on a different learning rate.
    let lrs: Vec<f32> = reference.4.iter().map(|m| f32::from_bits(m[6])).collect();
    assert!(lrs[0] != lrs[1] && lrs[1] != lrs[2] && lrs[2] < lrs[0], "{lrs:?}");

    // Stopped after epoch 1 and after epoch 2 of 3, then resumed to the end.
    for k in [1, 2] {
        let out = tempfile::tempdir().unwrap();
        train_run(augmented_config(data.path(), 3), out.path(), false, Some(k));
        assert_eq!(convnet::train::metrics::read_metrics(&out.path().join("metrics.csv")).unwrap().len(), k);
        train_run(augmented_config(data.path(), 3), out.path(), true, None);
        let resumed = run_state(out.path());
        assert_eq!(resumed.0, reference.0, "stopped after epoch {k}: weights");
        assert_eq!(resumed.1, reference.1, "stopped after epoch {k}: optimiser state");
        assert_eq!((&resumed.2, resumed.3), (&reference.2, reference.3), "stopped after epoch {k}: best checkpoint");
        assert_eq!(resumed.4, reference.4, "stopped after epoch {k}: metrics");
    }

    // The comparison can tell runs apart: a first epoch trained as a one-epoch run (its cosine
    // schedule ends after one epoch) and then continued to 3 ends elsewhere.
    let other = tempfile::tempdir().unwrap();
    train_run(augmented_config(data.path(), 1), other.path(), false, None);
    train_run(augmented_config(data.path(), 3), other.path(), true, None);
    let continued = run_state(other.path());
    assert_ne!(continued.0, reference.0, "a different schedule in epoch 1 left the weights unchanged");
    assert_ne!(continued.4[0][6], reference.4[0][6], "epoch 1's learning rate");
    // And the augmentation takes part: without it the same run ends elsewhere.
    let plain = tempfile::tempdir().unwrap();
    let mut config = augmented_config(data.path(), 3);
    config.run.augment = Default::default();
    train_run(config, plain.path(), false, None);
    assert_ne!(run_state(plain.path()).0, reference.0, "augmentation changed nothing");
}
