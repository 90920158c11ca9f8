//! Batch norm, dropout, global average pooling, residual blocks, label smoothing,
//! augmentation, test-time flips and the one-cycle schedule.
mod common;

use common::*;
use convnet::data::augment::{flip_batch, make_augmented_batch, AugmentConfig, BatchAt, CropPadding};
use convnet::data::{Dataset, Normalization};
use convnet::layers::{
    ActivationLayer, BatchNormLayer, Conv2dLayer, DropoutLayer, GlobalAvgPoolLayer, Layer, Mode, Param, ResidualLayer, Sequential,
};
use convnet::model::{Loss, Network};
use convnet::ops::activation::Activation;
use convnet::ops::batch_norm::batch_norm_forward_ref;
use convnet::ops::softmax::softmax_cross_entropy_smoothed;
use convnet::ops::window::{Padding, Window};
use convnet::optim::ScheduleConfig;
use convnet::{Config, Tensor};
use rand::{Rng, SeedableRng};

/// Forward of a layer in train mode as a function of its input, for finite differences.
fn layer_fn<'a>(layer: &'a std::cell::RefCell<Box<dyn Layer>>) -> impl Fn(&Tensor) -> Tensor + 'a {
    move |x: &Tensor| {
        let mut l = layer.borrow_mut();
        l.forward(x, Mode::Train).unwrap();
        l.output().clone()
    }
}

/// Against the formulas and finite differences, with 6 channels (under one block of the
/// kernels' 8-channel loops) and 13 (a block and a rest).
#[test]
fn batch_norm_matches_reference_and_its_gradients_match_finite_differences() {
    for c in [6, 13] {
        let mut x = random(&[3, 4, 5, c], 1);
        x.data_mut().iter_mut().enumerate().for_each(|(i, v)| *v = *v * 2.0 + (i % c) as f32);
        let mut bn = BatchNormLayer::new("bn".into(), &[4, 5, c], 0.1, 1e-5);
        bn.gamma.value = random(&[c], 2);
        bn.beta.value = random(&[c], 3);
        bn.forward(&x, Mode::Train).unwrap();
        let reference = batch_norm_forward_ref(&x, bn.gamma.value.data(), bn.beta.value.data(), 1e-5).unwrap();
        assert_close(bn.output(), &reference, 1e-5, "batch_norm forward");
        let r = random(x.shape(), 4);
        bn.backward(&x, &r, true).unwrap();
        let (dx, dg, db) = (bn.input_grad().clone(), bn.gamma.grad.clone(), bn.beta.grad.clone());
        let (gamma, beta) = (bn.gamma.value.clone(), bn.beta.value.clone());
        let cell: std::cell::RefCell<Box<dyn Layer>> = std::cell::RefCell::new(Box::new(bn));
        check_gradient(&format!("batch_norm dX, {c} channels"), &x, &r, 1e-2, 3e-3, &dx, layer_fn(&cell));
        let with = |g: &Tensor, b: &Tensor| {
            let mut l = BatchNormLayer::new("bn".into(), &[4, 5, c], 0.1, 1e-5);
            l.gamma.value = g.clone();
            l.beta.value = b.clone();
            l.forward(&x, Mode::Train).unwrap();
            l.output().clone()
        };
        check_gradient(&format!("batch_norm d_gamma, {c} channels"), &gamma, &r, 1e-2, 1e-3, &dg, |g| with(g, &beta));
        check_gradient(&format!("batch_norm d_beta, {c} channels"), &beta, &r, 1e-2, 1e-3, &db, |b| with(&gamma, b));
    }
}

#[test]
fn batch_norm_with_its_relu_folded_in_equals_batch_norm_then_relu_bit_for_bit() {
    // The fused layer applies the ReLU in its own pass and masks dy by recomputing x a + b
    // (rather than reading y): the same values as the separate layers, on any thread count.
    // 45 channels: five blocks of 8 lanes and a rest of 5; 5 x 7 x 9 rows: a chunk of 256 rows and a part one.
    // Channel 0 is constant, with a negative gamma and a beta of -0: its outputs are -0, which
    // the relu passes through unchanged (it zeroes only values below 0), bit for bit.
    let mut x = random(&[5, 7, 9, 45], 11);
    x.data_mut().iter_mut().enumerate().for_each(|(i, v)| *v = if i % 45 == 0 { 2.0 } else { *v * 3.0 + (i % 45) as f32 * 0.1 - 2.0 });
    let dy = random(x.shape(), 12);
    let run = |threads: usize, fused: bool| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut bn = BatchNormLayer::new("bn".into(), &[7, 9, 45], 0.1, 1e-5);
            bn.gamma.value = random(&[45], 13);
            bn.beta.value = random(&[45], 14);
            bn.gamma.value.data_mut()[0] = -0.5;
            bn.beta.value.data_mut()[0] = -0.0;
            bn.relu = fused;
            let mut relu = ActivationLayer::new("relu".into(), &[7, 9, 45], Activation::Relu);
            bn.forward(&x, Mode::Train).unwrap();
            let y = if fused {
                bn.output().clone()
            } else {
                relu.forward(bn.output(), Mode::Train).unwrap();
                relu.backward(bn.output(), &dy, true).unwrap();
                relu.output().clone()
            };
            let d_bn = if fused { dy.clone() } else { relu.input_grad().clone() };
            bn.backward(&x, &d_bn, true).unwrap();
            (y, bn.input_grad().clone(), bn.gamma.grad.clone(), bn.beta.grad.clone(), bn.running_var.value.clone())
        })
    };
    let separate = run(1, false);
    assert!(separate.0.data().iter().step_by(45).all(|v| v.to_bits() == (-0.0f32).to_bits()), "channel 0 holds -0");
    assert!(separate.0.data().contains(&0.0) && separate.0.data().iter().any(|&v| v > 0.0), "the relu must cut");
    for threads in [1, 2, 3] {
        let fused = run(threads, true);
        // As bits: -0 and +0 compare equal as floats.
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&fused.0), bits(&separate.0), "y on {threads} threads");
        assert_eq!(bits(&fused.1), bits(&separate.1), "dx on {threads} threads");
        assert_eq!((fused.2.data(), fused.3.data()), (separate.2.data(), separate.3.data()), "d_gamma, d_beta on {threads} threads");
        assert_eq!(fused.4.data(), separate.4.data(), "running variance on {threads} threads");
    }
}

#[test]
fn batch_norm_statistics_keep_their_precision_when_the_mean_is_large() {
    // Values around 1000 with a spread of about 0.1: a one-pass E[x^2] - E[x]^2 in f32 would
    // lose the variance entirely (an f32 near 10^6 is good to 0.06); the shifted sums keep it.
    // (What remains is the f32 mean's own rounding, 3e-5: 3e-4 of the spread.)
    let mut x = random(&[4, 6, 6, 3], 21);
    x.data_mut().iter_mut().for_each(|v| *v = 1000.0 + *v * 0.1);
    let mut bn = BatchNormLayer::new("bn".into(), &[6, 6, 3], 1.0, 1e-12);
    bn.forward(&x, Mode::Train).unwrap();
    let reference = batch_norm_forward_ref(&x, bn.gamma.value.data(), bn.beta.value.data(), 1e-12).unwrap();
    assert_close(bn.output(), &reference, 1e-3, "batch_norm forward at mean 1000");
    // With momentum 1 the running variance is the batch's unbiased one: about (0.1)^2 / 3.
    for &v in bn.running_var.value.data() {
        assert!((2e-3..5e-3).contains(&v), "running variance {v}");
    }
}

#[test]
fn batch_norm_known_answer_per_channel_and_its_shape_errors() {
    // Two channels over a batch of two: means [2, 20], variances [1, 100] (biased), so both
    // channels normalise to [-1, 1]; y = gamma * xhat + beta with gamma [2, 1], beta [0.5, 0].
    // Running statistics (momentum 0.5, from mean 0 and variance 1): mean 0.5 * [2, 20] =
    // [1, 10]; variance 0.5 * 1 + 0.5 * unbiased [2, 200] = [1.5, 100.5].
    use convnet::ops::batch_norm::{batch_norm_forward_train, BatchNormCache, RunningStats};
    let x = Tensor::from_vec(&[2, 2], vec![1.0, 10.0, 3.0, 30.0]).unwrap();
    let (mut mean, mut var) = (vec![0.0; 2], vec![1.0; 2]);
    let (mut y, mut cache) = (Tensor::empty(), BatchNormCache::default());
    let running = RunningStats { mean: &mut mean, var: &mut var, momentum: 0.5 };
    batch_norm_forward_train(&x, &[2.0, 1.0], &[0.5, 0.0], running, 1e-12, false, &mut y, &mut cache).unwrap();
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5);
    assert!(close(y.data(), &[-1.5, -1.0, 2.5, 1.0]), "{:?}", y.data());
    assert!(close(&mean, &[1.0, 10.0]) && close(&var, &[1.5, 100.5]), "{mean:?} {var:?}");
    assert!(close(batch_norm_forward_ref(&x, &[2.0, 1.0], &[0.5, 0.0], 1e-12).unwrap().data(), &[-1.5, -1.0, 2.5, 1.0]));
    // Backward needs dy of the forward input's shape, and a forward pass before it.
    use convnet::ops::batch_norm::batch_norm_backward;
    let (mut dg, mut db, mut dx) = (vec![0.0; 2], vec![0.0; 2], Tensor::empty());
    let other = Tensor::zeros(&[3, 2]);
    let err = batch_norm_backward(&x, &other, &mut cache, Some(&mut dx), &mut dg, &mut db).unwrap_err().to_string();
    assert!(err.contains("batch_norm backward") && err.contains("[3, 2]") && err.contains("[2, 2]"), "{err}");
    let err = batch_norm_backward(&x, &x, &mut BatchNormCache::default(), None, &mut dg, &mut db).unwrap_err().to_string();
    assert!(err.contains("batch_norm backward") && err.contains("0 channels"), "{err}");
    batch_norm_backward(&x, &x, &mut cache, Some(&mut dx), &mut dg, &mut db).unwrap();
    // No channel axis, or no channels: refused, naming the shape.
    for shape in [&[4][..], &[2, 0]] {
        let err = batch_norm_forward_ref(&Tensor::zeros(shape), &[], &[], 1e-5).unwrap_err().to_string();
        assert!(err.contains("batch_norm") && err.contains("[N, ..., C]") && err.contains(&format!("{shape:?}")), "{err}");
    }
}

#[test]
fn batch_norm_running_statistics_and_eval_mode() {
    // One channel, values 1, 2, 3, 4: mean 2.5, biased var 1.25, unbiased 5/3.
    let x = Tensor::from_vec(&[4, 1], vec![1., 2., 3., 4.]).unwrap();
    let mut bn = BatchNormLayer::new("bn".into(), &[1], 0.1, 1e-5);
    bn.forward(&x, Mode::Train).unwrap();
    // running_mean = 0.9 * 0 + 0.1 * 2.5 = 0.25; running_var = 0.9 * 1 + 0.1 * 5/3 = 1.0666667
    assert!((bn.running_mean.value.data()[0] - 0.25).abs() < 1e-6);
    assert!((bn.running_var.value.data()[0] - 1.0666667).abs() < 1e-6);
    // Train output: (x - 2.5) / sqrt(1.25 + 1e-5) -> first value -1.3416355
    assert!((bn.output().data()[0] + 1.3416355).abs() < 1e-5, "{:?}", bn.output().data());
    // Eval uses the running statistics: (1 - 0.25) / sqrt(1.0666667 + 1e-5) = 0.75 / 1.0327999 = 0.726181
    bn.forward(&x, Mode::Eval).unwrap();
    assert!((bn.output().data()[0] - 0.726181).abs() < 1e-5, "{:?}", bn.output().data());
    // Running statistics are saved state, not trained.
    assert!(!bn.running_mean.trainable && bn.gamma.trainable && !bn.gamma.decay);
}

#[test]
fn dropout_is_inverted_seeded_and_off_in_eval() {
    let x = Tensor::filled(&[10, 100], 1.0);
    let mut d = DropoutLayer::new("dropout".into(), &[100], 0.25).unwrap();
    d.forward(&x, Mode::Eval).unwrap();
    assert_eq!(d.output(), &x, "eval mode passes values through");
    d.set_seed(7);
    d.forward(&x, Mode::Train).unwrap();
    let y = d.output().clone();
    let dropped = y.data().iter().filter(|&&v| v == 0.0).count();
    // 1000 values at rate 0.25: 250 expected; 4 standard deviations is about +-55.
    assert!((195..=305).contains(&dropped), "{dropped} dropped");
    // Kept values are scaled by 1 / (1 - 0.25).
    assert!(y.data().iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    // The gradient goes through the same mask.
    let dy = random(x.shape(), 3);
    d.backward(&x, &dy, true).unwrap();
    for ((g, d), y) in d.input_grad().data().iter().zip(dy.data()).zip(y.data()) {
        assert_eq!(*g, d * y, "dx = dy * mask");
    }
    // Same seed, same mask; another seed, another mask.
    d.set_seed(7);
    d.forward(&x, Mode::Train).unwrap();
    assert_eq!(d.output(), &y);
    d.set_seed(8);
    d.forward(&x, Mode::Train).unwrap();
    assert_ne!(d.output(), &y);
    assert!(DropoutLayer::new("d".into(), &[3], 1.0).is_err());
}

#[test]
fn global_avg_pool_known_answer_and_gradient() {
    // One 2x2 image, 1 channel: mean of 1, 2, 3, 6 = 3.
    let x = Tensor::from_vec(&[1, 2, 2, 1], vec![1., 2., 3., 6.]).unwrap();
    let mut g = GlobalAvgPoolLayer::new("gap".into(), &[2, 2, 1]);
    g.forward(&x, Mode::Train).unwrap();
    assert_eq!(g.output().data(), [3.0]);
    let x = random(&[2, 3, 4, 5], 1);
    let cell: std::cell::RefCell<Box<dyn Layer>> = std::cell::RefCell::new(Box::new(GlobalAvgPoolLayer::new("gap".into(), &[3, 4, 5])));
    let r = random(&[2, 5], 2);
    cell.borrow_mut().forward(&x, Mode::Train).unwrap();
    cell.borrow_mut().backward(&x, &r, true).unwrap();
    let dx = cell.borrow().input_grad().clone();
    check_gradient("global_avg_pool", &x, &r, 1e-2, 1e-3, &dx, layer_fn(&cell));
}

const RESNET_TINY: &str = r#"
name = "resnet-tiny"
input = [6, 6, 2]
[data]
dataset = "mnist"
[train]
batch_size = 4
epochs = 1
label_smoothing = 0.1
[optimizer]
kind = "sgd"
lr = 0.1
[[layers]]
type = "conv2d"
filters = 4
kernel = 3
[[layers]]
type = "batch_norm"
[[layers]]
type = "gelu"
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 4, kernel = 3, padding = "same", l2 = 0.01 },
  { type = "batch_norm" },
  { type = "tanh" },
  { type = "conv2d", filters = 4, kernel = 3, padding = "same" },
]
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 6, kernel = 3, stride = 2, padding = "same" },
  { type = "sigmoid" },
]
[[layers]]
type = "global_avg_pool"
[[layers]]
type = "dropout"
rate = 0.3
[[layers]]
type = "dense"
units = 3
[[layers]]
type = "scale"
factor = 0.5
"#;

#[test]
fn whole_network_gradients_through_residual_blocks_batch_norm_and_dropout() {
    // Every coordinate of every parameter of a small ResNet-like network (identity and
    // projection shortcuts, batch norm in train mode, a fixed dropout mask, label smoothing, L2)
    // against central differences of the total loss, at the op tests' tolerance (1e-3 of
    // max(|analytic|, |numeric|, 1)) and, for the larger gradients, 1e-2 relative.
    let cfg = Config::from_toml(RESNET_TINY, "resnet-tiny").unwrap();
    let mut net = Network::build(&cfg.model, 3).unwrap();
    let loss = Loss { label_smoothing: cfg.run.train.label_smoothing };
    let x = random(&[4, 6, 6, 2], 5);
    let labels = [0, 2, 1, 2];
    net.set_step_seed(1, 0);
    net.compute_gradients(&x, &labels, loss).unwrap();
    let names: Vec<String> = net.param_names().into_iter().map(String::from).collect();
    assert!(names.contains(&"3.residual.0.conv2d.weight".to_string()), "{names:?}");
    assert!(names.contains(&"4.residual.shortcut.conv2d.weight".to_string()), "{names:?}");
    let grads: Vec<Tensor> = net.params().iter().map(|p| p.grad.clone()).collect();
    let trainable: Vec<bool> = net.params().iter().map(|p| p.trainable).collect();
    let eps = 1e-2f32;
    let (mut worst, mut checked) = (0.0f64, 0usize);
    for (pi, name) in names.iter().enumerate() {
        if !trainable[pi] {
            continue;
        }
        for j in 0..net.params()[pi].value.len() {
            let mut loss_at = |delta: f32| {
                net.params_mut()[pi].value.data_mut()[j] += delta;
                net.set_step_seed(1, 0);
                let l = net.compute_gradients(&x, &labels, loss).unwrap().loss as f64;
                net.params_mut()[pi].value.data_mut()[j] -= delta;
                l
            };
            let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
            let analytic = grads[pi].data()[j] as f64;
            let diff = (analytic - numeric).abs();
            let err = diff / analytic.abs().max(numeric.abs()).max(1.0);
            worst = worst.max(err);
            assert!(err <= 1e-3, "{name}[{j}]: analytic {analytic} vs numeric {numeric}");
            assert!(diff <= 1e-2 * analytic.abs().max(numeric.abs()) + 2e-4, "{name}[{j}]: analytic {analytic} vs numeric {numeric}");
            checked += 1;
        }
    }
    // 76 + 8 + 148 + 8 + 148 (block 3) + 222 + 30 (block 4 and its shortcut) + 21 (dense)
    assert_eq!(checked, 661, "every trainable coordinate");
    eprintln!("resnet-tiny: {checked} coordinates, worst gradient error {worst:.2e}");
}

/// A conv2d layer with seeded random weights and bias, as the builder would make it.
fn conv_layer(name: &str, input: &[usize], k: usize, filters: usize, stride: usize, padding: Padding, seed: u64) -> Box<dyn Layer> {
    let weight = Param::new(format!("{name}.weight"), random(&[k, k, input[2], filters], seed), 0.0, true);
    let bias = Param::new(format!("{name}.bias"), random(&[filters], seed + 1), 0.0, false);
    Box::new(Conv2dLayer::new(name.into(), input, Window::new(k, k, stride, stride, padding), weight, bias).unwrap())
}

/// A residual block on [5, 5, 3] inputs: with `projection`, a stride-2 body [conv 3->4, tanh]
/// and a 1x1 stride-2 shortcut conv; without, a shape-keeping body [conv, batch norm, tanh, conv].
fn residual_block(projection: bool) -> ResidualLayer {
    let input = [5, 5, 3];
    let (body, shortcut): (Vec<Box<dyn Layer>>, _) = if projection {
        let conv = conv_layer("b.0", &input, 3, 4, 2, Padding::Same, 11);
        let out = conv.output_shape().to_vec();
        let short = conv_layer("b.shortcut", &input, 1, 4, 2, Padding::Valid, 13);
        (vec![conv, Box::new(ActivationLayer::new("b.1".into(), &out, Activation::Tanh))], Some(short))
    } else {
        let conv = conv_layer("b.0", &input, 3, 3, 1, Padding::Same, 21);
        let out = conv.output_shape().to_vec();
        let layers: Vec<Box<dyn Layer>> = vec![
            conv,
            Box::new(BatchNormLayer::new("b.1".into(), &out, 0.9, 1e-5)),
            Box::new(ActivationLayer::new("b.2".into(), &out, Activation::Tanh)),
            conv_layer("b.3", &out, 3, 3, 1, Padding::symmetric(1), 23),
        ];
        (layers, None)
    };
    ResidualLayer::new("b".into(), &input, Sequential::new(body).unwrap(), shortcut).unwrap()
}

#[test]
fn residual_blocks_input_and_parameter_gradients_match_finite_differences() {
    // dx = dF/dx(dy) + dshortcut/dx(dy): every coordinate of the input gradient and of every
    // parameter, for the identity shortcut (body with batch norm) and the 1x1 projection.
    for projection in [false, true] {
        let what = if projection { "projection" } else { "identity" };
        let block = std::cell::RefCell::new(Box::new(residual_block(projection)) as Box<dyn Layer>);
        let x = random(&[2, 5, 5, 3], 31);
        block.borrow_mut().forward(&x, Mode::Train).unwrap();
        let r = random(block.borrow().output().shape(), 32);
        block.borrow_mut().backward(&x, &r, true).unwrap();
        let dx = block.borrow().input_grad().clone();
        check_gradient(&format!("residual ({what}) dX"), &x, &r, 1e-2, 2e-3, &dx, layer_fn(&block));
        let trainable: Vec<usize> = block.borrow().params().iter().enumerate().filter(|(_, p)| p.trainable).map(|(i, _)| i).collect();
        assert_eq!(trainable.len(), if projection { 4 } else { 6 }, "{what}: conv, (batch norm,) conv or shortcut parameters");
        for pi in trainable {
            let (name, value, grad) = {
                let b = block.borrow();
                let p = b.params()[pi];
                (p.name.clone(), p.value.clone(), p.grad.clone())
            };
            let with_param = |v: &Tensor| {
                let mut b = block.borrow_mut();
                b.params_mut()[pi].value = v.clone();
                b.forward(&x, Mode::Train).unwrap();
                let y = b.output().clone();
                b.params_mut()[pi].value = value.clone();
                y
            };
            check_gradient(&format!("residual ({what}) {name}"), &value, &r, 1e-2, 2e-3, &grad, with_param);
        }
    }
}

#[test]
fn label_smoothing_known_answer_and_gradient() {
    // logits [0, 0], label 0, eps 0.2: q = [0.9, 0.1], p = [0.5, 0.5]:
    // loss = -(0.9 ln 0.5 + 0.1 ln 0.5) = ln 2 = 0.693147; grad = p - q = [-0.4, 0.4]
    let z = Tensor::from_vec(&[1, 2], vec![0., 0.]).unwrap();
    let (loss, g) = softmax_cross_entropy_smoothed(&z, &[0], 0.2).unwrap();
    assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
    assert!((g.data()[0] + 0.4).abs() < 1e-6 && (g.data()[1] - 0.4).abs() < 1e-6, "{:?}", g.data());
    let z = random(&[4, 5], 1);
    let labels = [0, 4, 2, 2];
    let (_, grad) = softmax_cross_entropy_smoothed(&z, &labels, 0.1).unwrap();
    let one = Tensor::from_vec(&[1], vec![1.0]).unwrap();
    check_gradient("label smoothing", &z, &one, 1e-2, 1e-3, &grad, |z| {
        Tensor::from_vec(&[1], vec![softmax_cross_entropy_smoothed(z, &labels, 0.1).unwrap().0]).unwrap()
    });
}

fn ramp_dataset() -> Dataset {
    // One 3x4 grayscale image with values 0..12 row by row.
    Dataset::new((0..12).collect(), vec![0], 3, 4, 1, vec!["a".into()]).unwrap()
}

/// The batch of `indices` augmented with the generator seeded by `seed`, as pixel values
/// (normalised by mean 0 and std 1/255, which gives the pixels back).
fn augmented_pixels(ds: &Dataset, indices: &[usize], cfg: &AugmentConfig, seed: u64) -> Vec<i32> {
    let norm = Normalization { mean: vec![0.0; ds.channels], std: vec![1.0 / 255.0; ds.channels] };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    make_augmented_batch(ds, indices, &norm, cfg, &mut rng, BatchAt { seed: 0, epoch: 0 })
        .0
        .data()
        .iter()
        .map(|v| v.round() as i32)
        .collect()
}

#[test]
fn augmentation_flip_crop_and_cutout() {
    let ds = ramp_dataset();
    let values = |cfg: &AugmentConfig, seed: u64| augmented_pixels(&ds, &[0], cfg, seed);
    // A flip mirrors each row: [0 1 2 3] -> [3 2 1 0]. Over seeds both outcomes appear.
    let flip = AugmentConfig { flip: true, ..Default::default() };
    let outcomes: std::collections::HashSet<Vec<i32>> = (0..20).map(|s| values(&flip, s)).collect();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.contains(&vec![3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8]));
    // Crops with padding 1: each output is the image shifted by at most one pixel; zero padding
    // brings in zeros, reflect brings in mirrored neighbours (never a value not in the image).
    let zero = AugmentConfig { crop_padding: 1, ..Default::default() };
    let reflect = AugmentConfig { crop_padding: 1, padding_mode: CropPadding::Reflect, ..Default::default() };
    let mut saw_shift = false;
    for s in 0..30 {
        let z = values(&zero, s);
        let r = values(&reflect, s);
        saw_shift |= z != (0..12).collect::<Vec<_>>();
        // Where zero padding shows a 0 at a non-corner, reflect shows an image value there.
        assert!(r.iter().all(|v| (0..12).contains(v)));
        assert!(z.iter().zip(&r).all(|(a, b)| a == b || *a == 0));
    }
    assert!(saw_shift);
    // Shift down by one (offset 0 of 0..=2) with reflect: row -1 mirrors row 1 -> first row is 4 5 6 7.
    // Found by trying seeds: some crop must produce it.
    assert!((0..200).any(|s| values(&reflect, s)[..4] == [4, 5, 6, 7]));
    // With zero padding p the crops are exactly the (2p + 1)^2 shifts of the image by -p..=p
    // rows and columns, zeros brought in: the offsets are drawn from 0..=2p on each axis.
    for pad in [1usize, 2] {
        let shifted = |dy: i64, dx: i64| -> Vec<i32> {
            let at = |y: i64, x: i64| if (0..3).contains(&y) && (0..4).contains(&x) { (y * 4 + x) as i32 } else { 0 };
            (0..12).map(|i| at(i / 4 + dy, i % 4 + dx)).collect()
        };
        let p = pad as i64;
        let expected: std::collections::HashSet<Vec<i32>> =
            (-p..=p).flat_map(|dy| (-p..=p).map(move |dx| (dy, dx))).map(|(dy, dx)| shifted(dy, dx)).collect();
        let crop = AugmentConfig { crop_padding: pad, ..Default::default() };
        let seen: std::collections::HashSet<Vec<i32>> = (0..400).map(|s| values(&crop, s)).collect();
        assert_eq!(seen, expected, "crops with zero padding {pad}");
    }
    // Cutout of side k zeroes the k x k square whose top-left corner is k / 2 up and left of a
    // centre (row, column) drawn from the seeded generator, clipped at the border; nothing
    // else changes. The centre is drawn here as the batch draws it (row in 0..3, column in 0..4).
    let mut full_holes = 0;
    for side in [2usize, 3] {
        let cut = AugmentConfig { cutout: side, ..Default::default() };
        for s in 0..10 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s);
            let (cy, cx): (usize, usize) = (rng.gen_range(0..3), rng.gen_range(0..4));
            let (top, left) = (cy as i64 - (side / 2) as i64, cx as i64 - (side / 2) as i64);
            let in_hole = |y: i64, x: i64| (top..top + side as i64).contains(&y) && (left..left + side as i64).contains(&x);
            let expected: Vec<i32> = (0..12).map(|i| if in_hole(i / 4, i % 4) { 0 } else { i as i32 }).collect();
            assert_eq!(values(&cut, s), expected, "cutout {side}, centre ({cy}, {cx})");
            full_holes += usize::from((0..12).filter(|&i| in_hole(i / 4, i % 4)).count() == side * side);
        }
    }
    assert!(full_holes > 0, "no hole away from the border was tried");
    // Same seed, same augmentation.
    let all = AugmentConfig { crop_padding: 1, flip: true, cutout: 2, padding_mode: CropPadding::Reflect, alternating_flip: false };
    assert_eq!(values(&all, 5), values(&all, 5));
}

#[test]
fn test_time_flip_mirrors_images() {
    let x = Tensor::from_vec(&[1, 1, 3, 2], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    assert_eq!(flip_batch(&x).data(), [5., 6., 3., 4., 1., 2.]);
    assert_eq!(flip_batch(&flip_batch(&x)), x);
}

#[test]
fn one_cycle_schedule_values() {
    let s: ScheduleConfig = toml::from_str("kind = \"onecycle\"").unwrap();
    // 100 steps, base 0.1: start 0.1/25 = 0.004, peak 0.1 at step up = 0.25*100 - 1 = 24,
    // end 0.004/1e4 = 4e-7 at step 99.
    let lr = |step| s.lr_at(0.1, step, 10, 10);
    assert!((lr(0) - 0.004).abs() < 1e-7);
    assert!((lr(24) - 0.1).abs() < 1e-7);
    assert!((lr(99) - 4e-7).abs() < 1e-9, "{}", lr(99));
    // Halfway up: (0.004 + 0.1) / 2 = 0.052 at step 12.
    assert!((lr(12) - 0.052).abs() < 1e-6);
    assert!(lr(50) < lr(30) && lr(30) < lr(24));
}

#[test]
fn dropout_inside_a_residual_block_draws_its_mask_from_the_step() {
    // The block passes its seed on to its body (`set_seed`): the same step gives the same
    // mask, another step another one.
    let text = RESNET_TINY.replace(
        "  { type = \"conv2d\", filters = 6, kernel = 3, stride = 2, padding = \"same\" },\n  { type = \"sigmoid\" },",
        "  { type = \"conv2d\", filters = 6, kernel = 3, stride = 2, padding = \"same\" },\n  { type = \"dropout\", rate = 0.5 },",
    );
    let cfg = Config::from_toml(&text, "resnet-dropout").unwrap();
    let mut net = Network::build(&cfg.model, 3).unwrap();
    let x = random(&[4, 6, 6, 2], 5);
    // Built layer 4 is the second block; the logits depend on its body's dropout mask (the
    // block's own output is not kept in training: the global pool after it reads only dy).
    let block_output = |net: &mut Network, step: u64| {
        net.set_step_seed(1, step);
        net.forward(&x, Mode::Train).unwrap()
    };
    let first = block_output(&mut net, 0);
    assert_eq!(first, block_output(&mut net, 0), "same step, same mask");
    assert_ne!(first, block_output(&mut net, 1), "another step, another mask");
}

#[test]
fn a_batch_of_colour_images_is_augmented_image_by_image_in_the_generators_order() {
    // Two 3x4 RGB images, every value distinct: image i, row y, column x, channel ch holds
    // 36 i + 3 (4 y + x) + ch. The batch takes image 1, then image 0.
    let indices = [1usize, 0];
    let ds = Dataset::new((0..72).collect(), vec![0, 0], 3, 4, 3, vec!["a".into()]).unwrap();
    let batch = |cfg: &AugmentConfig, seed: u64| augmented_pixels(&ds, &indices, cfg, seed);
    // Each image's expected values, pixel (y, x) read from the source pixel `from(y, x)` (or 0).
    let image = |i: usize, from: &dyn Fn(i64, i64) -> Option<(i64, i64)>| -> Vec<i32> {
        (0..36)
            .map(|n| {
                let (y, x, ch) = (n / 12, n / 3 % 4, n % 3);
                from(y, x)
                    .filter(|&(sy, sx)| (0..3).contains(&sy) && (0..4).contains(&sx))
                    .map_or(0, |(sy, sx)| (36 * i as i64 + 3 * (4 * sy + sx) + ch) as i32)
            })
            .collect()
    };
    for seed in 0..10 {
        // Crops (zero padding 1): two offsets in 0..=2 an image, drawn in batch order.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut expected = Vec::new();
        for &i in &indices {
            let (oy, ox): (i64, i64) = (rng.gen_range(0..=2), rng.gen_range(0..=2));
            expected.extend(image(i, &|y, x| Some((y + oy - 1, x + ox - 1))));
        }
        assert_eq!(batch(&AugmentConfig { crop_padding: 1, ..Default::default() }, seed), expected, "crops, seed {seed}");
        // Cutout of side 2: a centre an image, every channel of the hole zeroed.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut expected = Vec::new();
        for &i in &indices {
            let (cy, cx): (i64, i64) = (rng.gen_range(0..3), rng.gen_range(0..4));
            expected.extend(image(i, &|y, x| (!((cy - 1..=cy).contains(&y) && (cx - 1..=cx).contains(&x))).then_some((y, x))));
        }
        assert_eq!(batch(&AugmentConfig { cutout: 2, ..Default::default() }, seed), expected, "cutout, seed {seed}");
    }
}

#[test]
fn reflect_crops_mirror_once_and_hold_the_edge_where_the_padding_exceeds_the_image() {
    let ds = ramp_dataset();
    let cfg = AugmentConfig { crop_padding: 4, padding_mode: CropPadding::Reflect, ..Default::default() };
    let seen: std::collections::HashSet<Vec<i32>> = (0..2000).map(|s| augmented_pixels(&ds, &[0], &cfg, s)).collect();
    // The documented rule on an axis of n: mirror without repeating the border (-1 -> 1,
    // n -> n - 2), then hold the nearest edge. Offsets 0..=8 on each axis shift by -4..=4.
    let reflect = |p: i64, n: i64| {
        if p < 0 {
            (-p).min(n - 1)
        } else if p >= n {
            (2 * (n - 1) - p).max(0)
        } else {
            p
        }
    };
    let expected: std::collections::HashSet<Vec<i32>> = (-4..=4)
        .flat_map(|dy| (-4..=4).map(move |dx| (dy, dx)))
        .map(|(dy, dx)| (0..12).map(|i: i64| (4 * reflect(i / 4 + dy, 3) + reflect(i % 4 + dx, 4)) as i32).collect())
        .collect();
    assert_eq!(seen, expected);
    // By hand, the shift (-4, -4): rows -4, -3, -2 mirror to 4, 3, 2 and hold at 2; columns
    // -4..-1 mirror to 4, 3, 2, 1, the 4 held at 3. Every row is row 2's [11, 11, 10, 9].
    assert!(seen.contains(&[11, 11, 10, 9].repeat(3)));
}

#[test]
fn a_checkpoint_of_a_network_with_batch_norm_dropout_and_residual_blocks_predicts_the_same_logits() {
    use convnet::optim::Optimizer;
    use convnet::train::{save_checkpoint, Checkpoint, CheckpointMeta};
    let cfg = Config::from_toml(RESNET_TINY, "resnet-tiny").unwrap();
    let mut net = Network::build(&cfg.model, 3).unwrap();
    // A few training steps, so that the weights and batch norm's running statistics have left
    // their initial values (a reader that dropped them would show).
    let mut optimizer = Optimizer::new(cfg.run.optimizer.clone()).unwrap();
    let x = random(&[4, 6, 6, 2], 5);
    for step in 0..3 {
        net.set_step_seed(1, step);
        net.compute_gradients(&x, &[0, 2, 1, 2], Loss { label_smoothing: 0.1 }).unwrap();
        net.apply_gradients(&mut optimizer, 0.1).unwrap();
    }
    let fresh = Network::build(&cfg.model, 3).unwrap();
    let running = |n: &Network| n.params().into_iter().filter(|p| p.name.contains("running_")).map(|p| p.value.clone()).collect::<Vec<_>>();
    assert_ne!(running(&net), running(&fresh), "training moved the running statistics");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let meta = CheckpointMeta {
        class_names: vec!["a".into(), "b".into(), "c".into()],
        normalization: Normalization { mean: vec![0.5; 2], std: vec![0.25; 2] },
        epoch: 1,
        optimizer_step: 3,
        seed: 3,
        best_val_accuracy: 0.0,
    };
    save_checkpoint(&path, &net, &cfg.run, Some(&optimizer), &meta).unwrap();
    let mut back = Checkpoint::load(&path).unwrap().network().unwrap();
    assert_eq!(back.param_names(), net.param_names());
    assert_eq!(running(&back), running(&net));
    let probe = random(&[3, 6, 6, 2], 9);
    let (before, after) = (net.predict(&probe).unwrap(), back.predict(&probe).unwrap());
    assert_eq!(before.data(), after.data(), "logits after the round trip");
    assert_ne!(before.data(), Network::build(&cfg.model, 3).unwrap().predict(&probe).unwrap().data());
}

/// A network with every conv -> batch norm pairing the evaluation pass can fold: with and
/// without the norm's relu, at 32 channels (Winograd) and 8 (im2col), inside a residual block,
/// and a conv whose relu comes before its norm (not folded).
fn folding_network() -> Network {
    let layers = r#"
[[layers]]
type = "conv2d"
filters = 8
kernel = 3
padding = "same"
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "conv2d"
filters = 32
kernel = 3
padding = "same"
[[layers]]
type = "batch_norm"
[[layers]]
type = "residual"
layers = [
  { type = "conv2d", filters = 32, kernel = 3, padding = "same" },
  { type = "batch_norm" },
  { type = "relu" },
  { type = "conv2d", filters = 32, kernel = 3, padding = "same" },
  { type = "relu" },
  { type = "batch_norm" },
]
[[layers]]
type = "global_avg_pool"
[[layers]]
type = "dense"
units = 3
"#;
    let cfg = Config::from_toml(&model_config("fold", "[6, 7, 3]", layers), "fold").unwrap();
    let mut net = Network::build(&cfg.model, 5).unwrap();
    // Batch norms with statistics and scales of their own, so that the folding has work to do.
    for (i, p) in net.params_mut().into_iter().enumerate() {
        let role = p.role().to_string();
        let values = random(p.value.shape(), 100 + i as u64);
        let fill = |f: &dyn Fn(f32) -> f32| values.data().iter().map(|&v| f(v)).collect::<Vec<f32>>();
        let data = match role.as_str() {
            "gamma" => fill(&|v| 1.0 + 0.5 * v),
            "beta" | "running_mean" | "bias" => fill(&|v| 0.3 * v),
            "running_var" => fill(&|v| 1.0 + 0.9 * v),
            _ => continue,
        };
        p.value = Tensor::from_vec(p.value.shape(), data).unwrap();
    }
    net
}

#[test]
fn evaluation_folds_batch_norm_into_the_convolution_before_it_and_keeps_the_results() {
    // The evaluation pass folds each conv -> batch norm pair into one convolution (weights
    // W gamma / sqrt(var + eps), bias (b - mean) gamma / sqrt(var + eps) + beta); the trace
    // runs every layer on its own. Both give the same logits, to rounding.
    let mut net = folding_network();
    let x = random(&[5, 6, 7, 3], 7);
    let fused = net.forward(&x, Mode::Eval).unwrap();
    let trace = net.forward_trace(&x).unwrap();
    let each = &trace.last().unwrap().1;
    assert_close(&fused, each, 1e-5, "folded against layer by layer");
    // The fused pass takes another route: the first norm's output (with its relu) comes out of
    // the conv's pass, and the conv keeps no output of its own.
    net.forward(&x, Mode::Eval).unwrap();
    assert_eq!(trace[1].0, "layer 1 (batch_norm + relu)");
    assert_close(net.layers()[1].output(), &trace[1].1, 1e-5, "the first norm's output");
    assert!(rel_err(net.layers()[0].output(), &trace[0].1) > 1e-2, "the conv's own output is not kept when folded");
    // A change to any batch-norm tensor or conv weight reaches the folded weights.
    for role in ["gamma", "beta", "running_mean", "running_var", "weight", "bias"] {
        let p = net.params_mut().into_iter().find(|p| p.role() == role).unwrap();
        p.value.data_mut().iter_mut().for_each(|v| *v = *v * 0.5 + 0.25);
        let fused = net.forward(&x, Mode::Eval).unwrap();
        let each = net.forward_trace(&x).unwrap().pop().unwrap().1;
        assert_close(&fused, &each, 1e-5, &format!("after changing the first {role}"));
    }
    // Training mode is never folded: the batch statistics are used, as layer by layer.
    let train = net.forward(&x, Mode::Train).unwrap();
    assert!(rel_err(&train, &fused) > 1e-3, "train and eval outputs should differ (batch statistics)");
}

#[test]
fn a_folded_pair_is_timed_as_one_layer_in_the_inference_profile() {
    // `convnet bench --layers --mode infer` gives a folded conv + batch norm's time to the conv
    // and 0 to the norm; training runs (and times) both. The trace's per-layer outputs aside,
    // the profile names every layer once.
    let mut net = folding_network();
    let x = random(&[4, 6, 7, 3], 9);
    let loss = Loss { label_smoothing: 0.0 };
    let infer = net.profile_step(&x, &[0, 1, 2, 0], loss, false).unwrap();
    assert_eq!(infer[0].0, "layer 0 (conv2d)");
    assert!(infer[0].1 > 0.0 && infer[1].1 == 0.0, "conv timed, its folded norm not: {:?}", &infer[..2]);
    assert!(infer.iter().all(|l| l.2 == 0.0), "no backward pass in inference");
    let train = net.profile_step(&x, &[0, 1, 2, 0], loss, true).unwrap();
    assert!(train[0].1 > 0.0 && train[1].1 > 0.0 && train[1].2 > 0.0, "training times both: {:?}", &train[..2]);
}

#[test]
fn a_batch_norm_without_scale_learns_only_its_shift() {
    // `scale = false`: gamma stays 1 through training steps, beta moves; the spec saves the
    // option only when it is off, so specs without it read and write as before.
    let text = RESNET_TINY.replacen("[[layers]]\ntype = \"batch_norm\"\n", "[[layers]]\ntype = \"batch_norm\"\nscale = false\n", 1);
    assert_ne!(text, RESNET_TINY);
    let cfg = Config::from_toml(&text, "frozen-scale").unwrap();
    let saved = serde_json::to_string(&cfg.model).unwrap();
    assert_eq!(saved.matches("\"scale\":false").count(), 1, "{saved}");
    assert!(!serde_json::to_string(&Config::from_toml(RESNET_TINY, "plain").unwrap().model).unwrap().contains("\"scale\":"));
    assert_eq!(serde_json::from_str::<convnet::model::ModelSpec>(&saved).unwrap(), cfg.model);

    let mut net = Network::build(&cfg.model, 3).unwrap();
    let mut optimizer = convnet::optim::Optimizer::new(cfg.run.optimizer.clone()).unwrap();
    let trainable = net.trainable_sizes();
    assert!(!trainable.iter().any(|(name, _)| name == "1.batch_norm.gamma"), "{trainable:?}");
    assert!(trainable.iter().any(|(name, _)| name == "1.batch_norm.beta"));
    assert!(trainable.iter().any(|(name, _)| name == "3.residual.1.batch_norm.gamma"), "the other batch norm learns its scale");
    let value = |net: &Network, name: &str| net.params().into_iter().find(|p| p.name == name).unwrap().value.clone();
    let (beta0, inner_gamma0) = (value(&net, "1.batch_norm.beta"), value(&net, "3.residual.1.batch_norm.gamma"));
    let x = random(&[4, 6, 6, 2], 5);
    for step in 0..3 {
        net.set_step_seed(1, step);
        net.compute_gradients(&x, &[0, 2, 1, 2], Loss { label_smoothing: 0.0 }).unwrap();
        net.apply_gradients(&mut optimizer, 0.1).unwrap();
    }
    assert!(value(&net, "1.batch_norm.gamma").data().iter().all(|&g| g == 1.0));
    assert_ne!(value(&net, "1.batch_norm.beta"), beta0);
    assert_ne!(value(&net, "3.residual.1.batch_norm.gamma"), inner_gamma0);
}

#[test]
fn a_dense_layer_without_bias_computes_x_w_and_has_no_bias_parameter() {
    let layers = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\nbias = false\n";
    let cfg = Config::from_toml(&model_config("nobias", "[1, 1, 3]", layers), "nobias").unwrap();
    assert_eq!(cfg.model.param_count(), Some(6));
    let mut net = Network::build(&cfg.model, 1).unwrap();
    assert_eq!(net.param_names(), ["1.dense.weight"]);
    assert_eq!(net.num_params(), 6);
    let w = net.params()[0].value.clone();
    let x = Tensor::from_vec(&[2, 1, 1, 3], vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0]).unwrap();
    let y = net.predict(&x).unwrap();
    for n in 0..2 {
        for o in 0..2 {
            let want: f32 = (0..3).map(|i| x.data()[n * 3 + i] * w.data()[i * 2 + o]).sum();
            assert!((y.data()[n * 2 + o] - want).abs() <= 1e-6, "y[{n}][{o}] = {} vs {want}", y.data()[n * 2 + o]);
        }
    }
    // Its gradient: dW = x^T dy, and nothing else to learn.
    net.compute_gradients(&x, &[0, 1], Loss { label_smoothing: 0.0 }).unwrap();
    assert_eq!(net.trainable_sizes(), [("1.dense.weight".to_string(), 6)]);
}

#[test]
fn a_scale_layer_multiplies_both_ways_and_refuses_a_factor_of_zero() {
    let mut layer = convnet::layers::ScaleLayer::new("s".into(), &[3], 0.25);
    let x = Tensor::from_vec(&[2, 3], vec![4.0, -8.0, 1.0, 0.0, 2.0, -0.5]).unwrap();
    layer.forward(&x, Mode::Train).unwrap();
    assert_eq!(layer.output().data(), [1.0, -2.0, 0.25, 0.0, 0.5, -0.125]);
    let dy = Tensor::from_vec(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    layer.backward(&x, &dy, true).unwrap();
    assert_eq!(layer.input_grad().data(), [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]);
    for bad in ["0.0", "nan", "inf"] {
        let layers = format!(
            "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n[[layers]]\ntype = \"scale\"\nfactor = {bad}\n"
        );
        let err = Config::from_toml(&model_config("s", "[1, 1, 3]", &layers), "bad.toml").unwrap_err().to_string();
        assert!(err.contains("layer 2 (scale)") && err.contains("factor must be a finite number other than 0"), "{err}");
    }
}

#[test]
fn a_dirac_convolution_starts_as_the_identity_on_its_first_input_channels() {
    // conv 3 -> 3, conv 3 -> 5 (dirac), conv 5 -> 2 (dirac): the Dirac filters pass their input
    // channel through; the others, and every other layer, are drawn as without the option.
    let layers = |dirac: &str| {
        format!(
            "[[layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel = 3\n[[layers]]\ntype = \"conv2d\"\nfilters = 5\nkernel = 3\n{dirac}\
             [[layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel = [3, 1]\n{dirac}[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n"
        )
    };
    let spec =
        |dirac: &str| convnet::Config::from_toml(&common::model_config("dirac", "[6, 5, 3]", &layers(dirac)), "dirac.toml").unwrap().model;
    let (with, without) = (spec("dirac = true\n"), spec(""));
    assert_eq!(serde_json::to_string(&with).unwrap().matches("\"dirac\":true").count(), 2);
    assert!(!serde_json::to_string(&without).unwrap().contains("\"dirac\":"));
    let mut net = convnet::model::Network::build(&with, 7).unwrap();
    let plain = convnet::model::Network::build(&without, 7).unwrap();
    let value = |net: &convnet::model::Network, name: &str| net.params().into_iter().find(|p| p.name == name).unwrap().value.clone();
    for name in ["0.conv2d.weight", "4.dense.weight"] {
        assert_eq!(value(&net, name), value(&plain, name), "{name}");
    }
    for (name, (kh, kw, c_in, c_out)) in [("1.conv2d.weight", (3, 3, 3, 5)), ("2.conv2d.weight", (3, 1, 5, 2))] {
        let (w, w0) = (value(&net, name), value(&plain, name));
        for tap in 0..kh * kw {
            for i in 0..c_in {
                for o in 0..c_out {
                    let at = (tap * c_in + i) * c_out + o;
                    let centre = tap == kh / 2 * kw + kw / 2;
                    let want = if o >= c_in.min(c_out) {
                        w0.data()[at]
                    } else if centre && i == o {
                        1.0
                    } else {
                        0.0
                    };
                    assert_eq!(w.data()[at], want, "{name} tap {tap} in {i} out {o}");
                }
            }
        }
    }
    // So the layers pass their first channels through (biases start at zero; SAME padding).
    let x = common::random(&[2, 6, 5, 3], 3);
    net.predict(&x).unwrap();
    let channel = |t: &convnet::Tensor, c: usize, k: usize| t.data().iter().skip(k).step_by(c).copied().collect::<Vec<f32>>();
    let outputs: Vec<convnet::Tensor> = net.layers()[..3].iter().map(|l| l.output().clone()).collect();
    for k in 0..3 {
        assert_eq!(channel(&outputs[1], 5, k), channel(&outputs[0], 3, k), "layer 1 channel {k}");
    }
    for k in 0..2 {
        assert_eq!(channel(&outputs[2], 2, k), channel(&outputs[1], 5, k), "layer 2 channel {k}");
    }
}

#[test]
fn triangle_schedule_values() {
    // The recipe's defaults: 0.2 of the peak at the start, the peak at 23% of training, 0.07 of
    // it one past the last step. 10 epochs of 10 steps, base 10: the peak at step 23.
    let s: ScheduleConfig = toml::from_str("kind = \"triangle\"").unwrap();
    s.validate().unwrap();
    let lr = |step| s.lr_at(10.0, step, 10, 10) as f64;
    let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    close(lr(0), 2.0);
    close(lr(10), 2.0 + 8.0 * 10.0 / 23.0);
    close(lr(23), 10.0);
    close(lr(50), 10.0 - 9.3 * 27.0 / 77.0);
    close(lr(99), 10.0 - 9.3 * 76.0 / 77.0);
    close(lr(100), 0.7);
    close(lr(500), 0.7);
    // Other shapes: a peak at the very start, and straight down to 0.
    let down: ScheduleConfig = toml::from_str("kind = \"triangle\"\npeak_at = 0.0\nend_factor = 0.0").unwrap();
    close(down.lr_at(1.0, 0, 4, 1) as f64, 1.0);
    close(down.lr_at(1.0, 2, 4, 1) as f64, 0.5);
    for bad in ["start_factor = 1.5", "peak_at = -0.1", "end_factor = nan"] {
        let s: ScheduleConfig = toml::from_str(&format!("kind = \"triangle\"\n{bad}")).unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("start_factor, peak_at and end_factor must each be in [0, 1]"), "{err}");
    }
}
