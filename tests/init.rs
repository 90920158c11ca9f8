//! Initialisers draw their documented distributions, with the fans of each layer type:
//! He: Normal(0, sqrt(2 / fan_in)); Xavier: Uniform(-a, a), a = sqrt(6 / (fan_in + fan_out));
//! truncated normal: Normal(0, stddev) redrawn beyond 2 stddev. fan_in = kh*kw*C_in (conv) or
//! in (dense); fan_out = kh*kw*C_out or out. Tolerances come from the sampling error of the
//! estimates (thousands of weights: a few percent at most).
use convnet::model::Network;
use convnet::Config;

/// A network of one 3x3 conv from 16 to 64 channels and a dense layer 64 -> 100, with `init`.
fn weights(init: &str) -> (Vec<f32>, Vec<f32>) {
    let text = format!(
        "name = \"init\"\ninput = [4, 4, 16]\ninit = {init}\n[data]\ndataset = \"mnist\"\n[train]\nbatch_size = 1\nepochs = 1\n\
         [optimizer]\nkind = \"sgd\"\nlr = 0.1\n[[layers]]\ntype = \"conv2d\"\nfilters = 64\nkernel = 3\npadding = \"same\"\n\
         [[layers]]\ntype = \"global_avg_pool\"\n[[layers]]\ntype = \"dense\"\nunits = 100\n"
    );
    let cfg = Config::from_toml(&text, "init").unwrap();
    let net = Network::build(&cfg.model, 11).unwrap();
    let get = |name: &str| net.params().into_iter().find(|p| p.name == name).unwrap().value.data().to_vec();
    for bias in ["0.conv2d.bias", "2.dense.bias"] {
        assert!(get(bias).iter().all(|&b| b == 0.0), "{bias} starts at zero");
    }
    (get("0.conv2d.weight"), get("2.dense.weight"))
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The sample's mean is near 0 and its standard deviation within 5% of `std` (the estimate's
/// relative error is about 1 / sqrt(2n): 0.7% for the conv's 9,216 weights).
fn assert_spread(what: &str, v: &[f32], std: f64) {
    let (mean, s) = mean_std(v);
    assert!(mean.abs() < 4.0 * std / (v.len() as f64).sqrt(), "{what}: mean {mean}");
    assert!((s / std - 1.0).abs() < 0.05, "{what}: std {s}, expected {std}");
}

#[test]
fn he_uses_the_fan_in_of_each_layer() {
    let (conv, dense) = weights("{ kind = \"he\" }");
    assert_eq!((conv.len(), dense.len()), (3 * 3 * 16 * 64, 64 * 100));
    assert_spread("conv", &conv, (2.0f64 / (3 * 3 * 16) as f64).sqrt());
    assert_spread("dense", &dense, (2.0f64 / 64.0).sqrt());
}

#[test]
fn xavier_is_uniform_over_the_fans_of_each_layer() {
    let (conv, dense) = weights("{ kind = \"xavier\" }");
    for (what, v, fan_in, fan_out) in [("conv", &conv, 3 * 3 * 16, 3 * 3 * 64), ("dense", &dense, 64, 100)] {
        let a = (6.0f64 / (fan_in + fan_out) as f64).sqrt();
        let largest = v.iter().map(|w| w.abs() as f64).fold(0.0, f64::max);
        // The largest of n uniform draws falls short of a by about a / n.
        assert!(largest <= a && largest > 0.99 * a, "{what}: largest |w| {largest}, bound {a}");
        assert_spread(what, v, a / 3.0f64.sqrt());
    }
}

#[test]
fn truncated_normal_stays_within_two_standard_deviations() {
    let (conv, _) = weights("{ kind = \"truncated_normal\", stddev = 0.05 }");
    let largest = conv.iter().map(|w| w.abs()).fold(0.0, f32::max);
    assert!(largest <= 0.1 && largest > 0.09, "largest |w| {largest}");
    // A normal cut at 2 stddev keeps 1 - 4 phi(2) / (2 Phi(2) - 1) = 1 - 4 * 0.053991 / 0.954500
    // = 0.773741 of its variance: std 0.05 * sqrt(0.773741) = 0.043981.
    assert_spread("conv", &conv, 0.05 * 0.773741f64.sqrt());
}
