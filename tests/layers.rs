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
