//! The layer contract (src/layers/mod.rs): every layer refuses an input of the wrong shape, and
//! a backward pass that does not match its last forward pass (another batch size, a gradient of
//! another shape, or no forward pass at all), with an error that names the layer.
mod common;

use common::*;
use convnet::layers::{
    ActivationLayer, AvgPoolLayer, BatchNormLayer, Conv2dLayer, DenseLayer, DropoutLayer, FlattenLayer, GeluLayer, GlobalAvgPoolLayer,
    Layer, LrnLayer, MaxPoolLayer, Mode, Param, ResidualLayer, ScaleLayer, Sequential,
};
use convnet::ops::activation::Activation;
use convnet::ops::conv2d::{conv2d_bias_grad_into, ConvScratch, OutputGrad};
use convnet::ops::lrn::LrnParams;
use convnet::ops::{Padding, Window};
use convnet::Tensor;

const INPUT: [usize; 3] = [4, 4, 3];

fn conv(name: &str) -> Box<dyn Layer> {
    let weight = Param::new("w", random(&[3, 3, 3, 3], 1), 0.0, true);
    let bias = Param::new("b", random(&[3], 2), 0.0, false);
    Box::new(Conv2dLayer::new(name.into(), &INPUT, Window::new(3, 3, 1, 1, Padding::Same), weight, bias).unwrap())
}

/// One layer of every kind that checks its backward pass, each on [4, 4, 3] inputs (the dense
/// layer on 48 values), named "L <kind>".
fn layers() -> Vec<(Box<dyn Layer>, Vec<usize>)> {
    let image = INPUT.to_vec();
    let flat = vec![48];
    let pool = Window::new(2, 2, 2, 2, Padding::Valid);
    let lrn = LrnParams { depth_radius: 1, bias: 1.0, alpha: 0.1, beta: 0.75 };
    let dense_w = Param::new("w", random(&[48, 5], 3), 0.0, true);
    let dense_b = Param::new("b", random(&[5], 4), 0.0, false);
    let body = Sequential::new(vec![conv("L residual.0")]).unwrap();
    vec![
        (conv("L conv2d"), image.clone()),
        (Box::new(ActivationLayer::new("L relu".into(), &INPUT, Activation::Relu)), image.clone()),
        (Box::new(GeluLayer::new("L gelu".into(), &INPUT)), image.clone()),
        (Box::new(ScaleLayer::new("L scale".into(), &INPUT, 0.5)), image.clone()),
        (Box::new(BatchNormLayer::new("L batch_norm".into(), &INPUT, 0.9, 1e-5)), image.clone()),
        (Box::new(DropoutLayer::new("L dropout".into(), &INPUT, 0.5).unwrap()), image.clone()),
        (Box::new(GlobalAvgPoolLayer::new("L global_avg_pool".into(), &INPUT)), image.clone()),
        (Box::new(LrnLayer::new("L lrn".into(), &INPUT, lrn).unwrap()), image.clone()),
        (Box::new(MaxPoolLayer::new("L max_pool".into(), &INPUT, pool).unwrap()), image.clone()),
        (Box::new(AvgPoolLayer::new("L avg_pool".into(), &INPUT, pool).unwrap()), image.clone()),
        (Box::new(ResidualLayer::new("L residual".into(), &INPUT, body, None).unwrap()), image.clone()),
        (Box::new(DenseLayer::new("L dense".into(), &flat, dense_w, Some(dense_b)).unwrap()), flat),
    ]
}

fn batch(n: usize, example: &[usize], seed: u64) -> Tensor {
    random(&[&[n], example].concat(), seed)
}

fn assert_refused(result: convnet::Result<()>, layer: &str, words: &[&str]) {
    let err = result.err().unwrap_or_else(|| panic!("{layer}: accepted")).to_string();
    assert!(err.contains(layer), "the error names the layer {layer:?}: {err}");
    assert!(words.iter().all(|w| err.contains(w)), "{layer}: {err} does not say {words:?}");
}

#[test]
fn every_layer_refuses_a_backward_pass_that_does_not_match_its_forward_pass() {
    for (mut layer, example) in layers() {
        let label = layer.label().to_string();
        let x = batch(2, &example, 5);
        // Before any forward pass.
        let dy = batch(2, layer.output_shape(), 6);
        assert_refused(layer.backward(&x, &dy, true), &label, &["backward before forward?"]);
        layer.forward(&x, Mode::Train).unwrap();
        let y_shape = layer.output().shape().to_vec();
        assert_eq!(y_shape, [&[2], layer.output_shape()].concat(), "{label}");
        // The batch forward saw, and a gradient of the output's shape: accepted, dx of x's shape.
        layer.backward(&x, &dy, true).unwrap();
        assert_eq!(layer.input_grad().shape(), x.shape(), "{label}");
        // Another batch size for x (dy still of the last output's shape).
        let x3 = batch(3, &example, 7);
        assert_refused(layer.backward(&x3, &dy, true), &label, &["backward got x [3,", "the last forward output is [2,"]);
        // A gradient of another batch size, or of another shape per example.
        assert_refused(layer.backward(&x, &batch(3, layer.output_shape(), 8), true), &label, &["dy [3,"]);
        let mut wrong = layer.output_shape().to_vec();
        wrong[0] += 1;
        assert_refused(layer.backward(&x, &batch(2, &wrong, 9), true), &label, &[&format!("dy {:?}", [&[2], &wrong[..]].concat())]);
    }
}

#[test]
fn every_layer_refuses_an_input_of_the_wrong_shape_naming_what_it_expects() {
    for (mut layer, example) in layers() {
        let label = layer.label().to_string();
        let expected = format!("[N, {}]", example.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
        let mut other = example.clone();
        other[0] += 1;
        assert_refused(layer.forward(&batch(2, &other, 10), Mode::Eval), &label, &[&expected]);
        // One axis too many, or none for the batch.
        let extra = [&example[..], &[1]].concat();
        assert_refused(layer.forward(&batch(2, &extra, 11), Mode::Eval), &label, &[&expected]);
        assert_refused(layer.forward(&random(&example, 12), Mode::Eval), &label, &[&expected]);
    }
    // Flatten checks its input too.
    let mut flatten = FlattenLayer::new("L flatten".into(), &INPUT);
    assert_refused(flatten.forward(&batch(2, &[4, 4, 2], 13), Mode::Eval), "L flatten", &["[N, 4, 4, 3]"]);
}

#[test]
fn every_layer_says_its_config_type_label_and_parameters() {
    let kinds: Vec<(String, &str, usize)> = layers().iter().map(|(l, _)| (l.label().to_string(), l.kind(), l.params().len())).collect();
    for (label, kind, params) in &kinds {
        // Labelled "L <type>" above; the parameters: conv and dense a weight and a bias, batch
        // norm gamma, beta and its running statistics, the residual block its body's conv.
        assert_eq!(*kind, label.strip_prefix("L ").unwrap(), "{label}");
        let expected = match *kind {
            "conv2d" | "dense" | "residual" => 2,
            "batch_norm" => 4,
            _ => 0,
        };
        assert_eq!(*params, expected, "{label}");
    }
    assert_eq!(FlattenLayer::new("f".into(), &INPUT).kind(), "flatten");
    let sigmoid = ActivationLayer::new("s".into(), &INPUT, Activation::Sigmoid);
    let tanh = ActivationLayer::new("t".into(), &INPUT, Activation::Tanh);
    assert_eq!((sigmoid.kind(), tanh.kind()), ("sigmoid", "tanh"));
    // A parameter's role is the last part of its name.
    let p = Param::new("4.residual.shortcut.conv2d.weight", Tensor::zeros(&[1]), 0.0, true);
    assert_eq!(p.role(), "weight");
    assert_eq!(Param::buffer("running_mean", Tensor::zeros(&[1])).role(), "running_mean");
}

/// `layers()`, a flatten, and a convolution and a batch norm each with a fused ReLU (whose
/// backward passes read their own outputs).
fn layers_and_fused() -> Vec<(Box<dyn Layer>, Vec<usize>)> {
    let mut all = layers();
    all.push((Box::new(FlattenLayer::new("L flatten".into(), &INPUT)), INPUT.to_vec()));
    let mut conv_relu = Conv2dLayer::new(
        "L conv2d + relu".into(),
        &INPUT,
        Window::new(3, 3, 1, 1, Padding::Same),
        Param::new("w", random(&[3, 3, 3, 3], 1), 0.0, true),
        Param::new("b", random(&[3], 2), 0.0, false),
    )
    .unwrap();
    conv_relu.relu = true;
    all.push((Box::new(conv_relu), INPUT.to_vec()));
    let mut norm_relu = BatchNormLayer::new("L batch_norm + relu".into(), &INPUT, 0.9, 1e-5);
    norm_relu.relu = true;
    all.push((Box::new(norm_relu), INPUT.to_vec()));
    all
}

/// A layer's input gradient and parameter gradients after one training step on `x`, with `x`
/// and the layer's own output taken away (hollow) before the backward pass where the layer
/// says its backward pass does not read them (`hollow`).
fn gradients_of(layer: &mut dyn Layer, x: &Tensor, dy_seed: u64, hollow: bool) -> Vec<Tensor> {
    layer.forward(x, Mode::Train).unwrap();
    let dy = batch(x.shape()[0], layer.output_shape(), dy_seed);
    let mut x = x.clone();
    if hollow {
        if !layer.backward_reads_input() {
            x.take_values();
        }
        if !layer.backward_reads_output() {
            layer.buffers_mut().expect("a layer that lends its output has buffers").0.take_values();
        }
    }
    layer.backward(&x, &dy, true).unwrap();
    let grads: Vec<Tensor> = layer.params().iter().filter(|p| p.trainable).map(|p| p.grad.clone()).collect();
    std::iter::once(layer.input_grad().clone()).chain(grads).collect()
}

#[test]
fn a_layer_whose_backward_pass_does_not_read_its_input_or_output_gives_the_same_gradients_without_them() {
    // What a Sequential relies on when it lends those buffers to other layers: two copies of
    // each layer, one backward pass with x and y, one with whichever it says it does not read
    // taken away; the same bits. Fresh copies, so that no buffer keeps an earlier answer.
    let (mut lent, mut remade) = (0, Vec::new());
    for ((mut with, example), (mut without, _)) in layers_and_fused().into_iter().zip(layers_and_fused()) {
        let label = with.label().to_string();
        let x = batch(3, &example, 20);
        let expected = gradients_of(with.as_mut(), &x, 21, false);
        let got = gradients_of(without.as_mut(), &x, 21, true);
        assert_eq!(got, expected, "{label}");
        assert!(expected[0].data().iter().any(|&v| v != 0.0), "{label}: a gradient to compare");
        lent += usize::from(!with.backward_reads_input()) + usize::from(!with.backward_reads_output());
        if with.recomputable() {
            // Made again from the same input: the same bits, and the same gradients after.
            let before = with.output().clone();
            with.forward(&x, Mode::Train).unwrap();
            assert_eq!(with.output(), &before, "{label}: computed again");
            remade.push(label.clone());
        }
        // Every layer lends its own two buffers.
        let (y, dx) = with.buffers_mut().map(|(y, dx)| (y as *const Tensor, dx as *const Tensor)).expect(&label);
        assert!(std::ptr::eq(y, with.output()) && std::ptr::eq(dx, with.input_grad()), "{label}: its own buffers");
    }
    // Pooling, flatten, scale and dropout do without x; all but relu, lrn and the conv with
    // its fused relu without y (batch norm recomputes its fused relu's mask from x).
    assert_eq!(lent, 6 + 12, "layers that lend a buffer");
    // Pure elementwise functions can be computed again; batch norm (running statistics) and
    // dropout (a new mask) cannot.
    assert_eq!(remade, ["L relu", "L gelu", "L scale"]);
}

/// A small network in which each way of lending a buffer happens: outputs no backward pass
/// reads (a conv's under flatten, the dense layer's under the scale), and outputs made again
/// before a backward pass reads them (the ReLU's, read by its own backward pass; the GELU's,
/// read by the conv after it).
fn lending_network() -> Vec<Box<dyn Layer>> {
    let window = Window::new(3, 3, 1, 1, Padding::Same);
    let conv = |name: &str, c_in: usize, c_out: usize, side: usize, seed: u64| -> Box<dyn Layer> {
        let weight = Param::new("w", random(&[3, 3, c_in, c_out], seed), 0.0, true);
        let bias = Param::new("b", random(&[c_out], seed + 1), 0.0, false);
        Box::new(Conv2dLayer::new(name.into(), &[side, side, c_in], window, weight, bias).unwrap())
    };
    let pool = Window::new(2, 2, 2, 2, Padding::Valid);
    vec![
        conv("0", 3, 4, 6, 30),
        Box::new(BatchNormLayer::new("1".into(), &[6, 6, 4], 0.9, 1e-5)),
        Box::new(ActivationLayer::new("2".into(), &[6, 6, 4], Activation::Relu)),
        Box::new(MaxPoolLayer::new("3".into(), &[6, 6, 4], pool).unwrap()),
        Box::new(GeluLayer::new("4".into(), &[3, 3, 4])),
        conv("5", 4, 5, 3, 32),
        Box::new(FlattenLayer::new("6".into(), &[3, 3, 5])),
        Box::new(DenseLayer::new("7".into(), &[45], Param::new("w", random(&[45, 7], 34), 0.0, true), None).unwrap()),
        Box::new(ScaleLayer::new("8".into(), &[7], 0.5)),
    ]
}

#[test]
fn a_sequential_that_lends_buffers_between_its_layers_computes_what_its_layers_compute_one_by_one() {
    // The Sequential lends dead outputs and input gradients (src/layers/spare_buffers.rs); the
    // reference runs the same layers one by one, each keeping all its buffers. Three steps
    // of changing batch sizes, so that lent buffers change hands and sizes.
    let mut net = Sequential::new(lending_network()).unwrap();
    let mut reference = lending_network();
    for (step, n) in [5usize, 2, 5].into_iter().enumerate() {
        let x = batch(n, &[6, 6, 3], 40 + step as u64);
        let dy = batch(n, &[7], 50 + step as u64);
        net.forward(&x, Mode::Train).unwrap();
        // Lent by the forward pass: the ReLU's and the GELU's outputs (to be made again), the
        // conv's under flatten, the dense layer's under the scale.
        let hollow: Vec<usize> = (0..9).filter(|&i| net.layers()[i].output().is_hollow()).collect();
        assert_eq!(hollow, [2, 4, 5, 7], "step {step}: outputs lent out by the forward pass");
        net.backward(&x, &dy, true).unwrap();
        train_one_by_one(&mut reference, &x, &dy);
        assert_eq!(net.output(), reference[8].output(), "step {step}: the output");
        assert_eq!(net.input_grad(), reference[0].input_grad(), "step {step}: the input gradient");
        let grads = |params: Vec<&Param>| params.into_iter().map(|p| p.grad.clone()).collect::<Vec<_>>();
        let expected = grads(reference.iter().flat_map(|l| l.params()).collect());
        assert_eq!(grads(net.params()), expected, "step {step}: the parameter gradients");
        // After the backward pass: the same (the ReLU's and the GELU's made again for the
        // backward passes that read them, then lent again); and every input gradient but the
        // first layer's.
        let hollow: Vec<usize> = (0..9).filter(|&i| net.layers()[i].output().is_hollow()).collect();
        assert_eq!(hollow, [2, 4, 5, 7], "step {step}: outputs lent out");
        let kept: Vec<usize> = (0..9).filter(|&i| !net.layers()[i].input_grad().is_empty()).collect();
        assert_eq!(kept, [0], "step {step}: input gradients kept");
    }
    // In evaluation mode nothing is lent, and the lent outputs have buffers again (each layer
    // on its own: `forward` would fold the batch norm into the conv before it).
    let x = batch(2, &[6, 6, 3], 60);
    net.forward_each(&x, Mode::Eval).unwrap();
    assert!(net.layers().iter().all(|l| !l.output().is_hollow()));
    for i in 0..reference.len() {
        let (before, rest) = reference.split_at_mut(i);
        rest[0].forward(before.last().map_or(&x, |l| l.output()), Mode::Eval).unwrap();
    }
    assert_eq!(net.output(), reference[8].output(), "evaluation");
}

#[test]
fn in_evaluation_a_batch_norm_computes_the_gelu_after_it_in_its_own_pass() {
    // Statistics and scales of its own, inputs reaching GELU's tails: the pair's bits, the
    // norm's own output not written; refused after a folded relu or before another layer.
    let norm = |relu: bool| {
        let mut bn = BatchNormLayer::new("0".into(), &[5, 4, 19], 0.9, 1e-3);
        bn.gamma.value = Tensor::from_vec(&[19], random(&[19], 1).data().iter().map(|v| 1.0 + 2.0 * v).collect()).unwrap();
        bn.beta.value = random(&[19], 2);
        bn.running_mean.value = random(&[19], 3);
        bn.running_var.value = Tensor::from_vec(&[19], random(&[19], 4).data().iter().map(|v| 0.2 + v.abs()).collect()).unwrap();
        bn.relu = relu;
        bn
    };
    let x = Tensor::from_vec(&[3, 5, 4, 19], random(&[3, 5, 4, 19], 5).data().iter().map(|v| 4.0 * v).collect()).unwrap();
    let (mut bn, mut gelu) = (norm(false), GeluLayer::new("1".into(), &[5, 4, 19]));
    bn.forward(&x, Mode::Eval).unwrap();
    gelu.forward(bn.output(), Mode::Eval).unwrap();
    let reference = gelu.output().clone();
    let gelu = || -> Vec<Box<dyn Layer>> { vec![Box::new(GeluLayer::new("1".into(), &[5, 4, 19]))] };
    let mut after = gelu();
    assert_eq!(norm(false).forward_eval_fused(&x, &mut after).unwrap(), 1);
    let same = after[0].output().data().iter().zip(reference.data()).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same && after[0].output().shape() == reference.shape(), "fused: other bits");
    assert_eq!(norm(true).forward_eval_fused(&x, &mut gelu()).unwrap(), 0);
    let mut relu: Vec<Box<dyn Layer>> = vec![Box::new(ActivationLayer::new("1".into(), &[5, 4, 19], Activation::Relu))];
    assert_eq!(norm(false).forward_eval_fused(&x, &mut relu).unwrap(), 0);
    assert_eq!(norm(false).forward_eval_fused(&x, &mut []).unwrap(), 0, "no layer after it");
    // A Sequential's evaluation pass takes the pair in one pass too.
    let mut net = Sequential::new(vec![Box::new(norm(false)), Box::new(GeluLayer::new("1".into(), &[5, 4, 19]))]).unwrap();
    net.forward(&x, Mode::Eval).unwrap();
    assert_eq!(net.output(), &reference);
}

#[test]
fn a_first_convolution_with_frozen_weights_computes_its_bias_gradient_alone() {
    // The whitening layer's case (2x2 valid, 3 -> 24 on 7x7), with and without a fused ReLU:
    // without an input gradient to compute, a frozen weight's gradient is not computed (it
    // stays what it was) and db is each image's pixels summed in order, the images added in
    // order: those bits by hand, on 1 and 3 threads; a trainable layer's db agrees to rounding.
    let (n, input) = (5, [7, 7, 3]);
    let x = batch(n, &input, 11);
    for relu in [false, true] {
        let layer = |trainable: bool| {
            let mut weight = Param::new("w", random(&[2, 2, 3, 24], 12), 0.0, true);
            weight.trainable = trainable;
            weight.grad.data_mut().fill(7.0);
            let bias = Param::new("b", random(&[24], 13), 0.0, false);
            let mut conv = Conv2dLayer::new("L frozen".into(), &input, Window::new(2, 2, 1, 1, Padding::Valid), weight, bias).unwrap();
            conv.relu = relu;
            conv
        };
        let dy = batch(n, &[6, 6, 24], 14);
        let mut reference = layer(true);
        reference.forward(&x, Mode::Train).unwrap();
        reference.backward(&x, &dy, false).unwrap();
        let y = reference.output().clone();
        // By hand: dz = dy where the ReLU passed the value.
        let mut want = [0.0f32; 24];
        for image in 0..n {
            let mut sums = [0.0f32; 24];
            for p in 0..36 {
                for (o, s) in sums.iter_mut().enumerate() {
                    let at = (image * 36 + p) * 24 + o;
                    if !relu || y.data()[at] > 0.0 {
                        *s += dy.data()[at];
                    }
                }
            }
            want.iter_mut().zip(sums).for_each(|(w, s)| *w += s);
        }
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut frozen = layer(false);
            pool.install(|| {
                frozen.forward(&x, Mode::Train).unwrap();
                frozen.backward(&x, &dy, false).unwrap();
            });
            let db = frozen.bias.grad.data();
            assert!(
                db.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "relu {relu}, {threads} threads: {db:?} against {want:?}"
            );
            assert!(frozen.weight.grad.data().iter().all(|&g| g == 7.0), "the frozen weight's gradient was written");
            let trained = reference.bias.grad.data();
            assert!(db.iter().zip(trained).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())), "{db:?} against {trained:?}");
        }
        assert!(reference.weight.grad.data().iter().any(|&g| g != 7.0), "a trainable weight gets its gradient");
    }
    // With an input gradient to compute, the frozen layer runs the whole backward pass.
    let mut weight = Param::new("w", random(&[2, 2, 3, 24], 12), 0.0, true);
    weight.trainable = false;
    let bias = Param::new("b", random(&[24], 13), 0.0, false);
    let mut frozen = Conv2dLayer::new("L frozen".into(), &input, Window::new(2, 2, 1, 1, Padding::Valid), weight, bias).unwrap();
    frozen.forward(&x, Mode::Train).unwrap();
    frozen.backward(&x, &batch(n, &[6, 6, 24], 14), true).unwrap();
    assert_eq!(frozen.input_grad().shape(), &[n, 7, 7, 3]);
    // db alone refuses a gradient that is not [N, oh, ow, C_out], or a ReLU output of another shape.
    let mut db = Tensor::empty();
    let flat = batch(n, &[24], 15);
    let err = conv2d_bias_grad_into(OutputGrad::Plain(&flat), &mut db, &mut ConvScratch::default()).unwrap_err().to_string();
    assert!(err.contains("conv2d backward") && err.contains("[5, 24]"), "{err}");
    let (dy, y) = (batch(n, &[6, 6, 24], 14), batch(n, &[6, 6, 23], 16));
    let err =
        conv2d_bias_grad_into(OutputGrad::ThroughRelu { dy: &dy, y: &y }, &mut db, &mut ConvScratch::default()).unwrap_err().to_string();
    assert!(err.contains("conv2d backward") && err.contains("23"), "{err}");
}
