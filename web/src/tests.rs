//! The wasm API's Rust side, run natively: the same pipeline as `convnet predict`, the kernel
//! playground's numbers, and clear errors. (web/tests/e2e.mjs checks the compiled WebAssembly
//! in Chromium against `convnet predict`.)

use std::path::Path;

use convnet::data::read_image;
use convnet::ops::softmax::softmax;
use convnet::train::Checkpoint;
use convnet::Tensor;

use crate::{filter, kernel_names, Model};

const FASHION: &[u8] = include_bytes!("../models/fashion-mnist.safetensors");
const CIFAR: &[u8] = include_bytes!("../models/cifar10.safetensors");

fn web(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Logits as `convnet predict` computes them: read_image, the checkpoint's normalisation,
/// Network::predict.
fn native_logits(checkpoint: &str, image: &Path) -> Vec<f32> {
    let ck = Checkpoint::load(&web(checkpoint)).unwrap();
    let mut net = ck.network().unwrap();
    let [h, w, c] = ck.config.model.input;
    let img = read_image(image, Some((h, w)), c).unwrap();
    let mut x = Tensor::zeros(&[1, h, w, c]);
    ck.meta.normalization.apply(&img.pixels, x.data_mut());
    net.predict(&x).unwrap().data().to_vec()
}

fn max_relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn an_image_file_goes_through_the_pipeline_of_convnet_predict() {
    for (model, bytes, samples) in
        [("models/fashion-mnist.safetensors", FASHION, "fashion-mnist"), ("models/cifar10.safetensors", CIFAR, "cifar10")]
    {
        let mut m = Model::load(bytes, model).unwrap();
        for n in [0, 5] {
            let path = web(&format!("samples/{samples}/{n}.png"));
            let pass = m.image_pass(&std::fs::read(&path).unwrap(), "sample.png").unwrap();
            let want = native_logits(model, &path);
            let err = max_relative_error(&pass.logits(), &want);
            assert!(err <= 1e-5, "{model} {n}: relative error {err}");
            let probs = softmax(&Tensor::from_vec(&[1, want.len()], pass.logits()).unwrap()).unwrap();
            assert_eq!(pass.probabilities(), probs.data());
            // The image as the network sees it: read_image's pixels.
            let [h, w, c] = Checkpoint::load(&web(model)).unwrap().config.model.input;
            assert_eq!(pass.input_pixels(), read_image(&path, Some((h, w)), c).unwrap().pixels);
        }
    }
}

#[test]
fn canvas_pixels_are_converted_and_resized_as_an_rgba_file_would_be() {
    // A 56x40 RGBA drawing: a bright diagonal band on a dark background, alpha varying (ignored).
    let (w, h) = (56u32, 40u32);
    let rgba = image::RgbaImage::from_fn(w, h, |x, y| {
        let on = (x as i32 - y as i32).abs() < 6;
        image::Rgba(if on { [240, 200, 180, (x * 4) as u8] } else { [10, 20, 30, 255] })
    });
    let dir = std::env::temp_dir().join(format!("convnet-web-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("canvas.png");
    rgba.save(&png).unwrap();
    for (model, bytes) in [("models/fashion-mnist.safetensors", FASHION), ("models/cifar10.safetensors", CIFAR)] {
        let mut m = Model::load(bytes, model).unwrap();
        let from_canvas = m.rgba_pass(rgba.as_raw(), w as usize, h as usize).unwrap();
        let from_file = m.image_pass(&std::fs::read(&png).unwrap(), "canvas.png").unwrap();
        assert_eq!(from_canvas.input_pixels(), from_file.input_pixels(), "{model}");
        assert_eq!(from_canvas.logits(), from_file.logits(), "{model}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_layer_is_there_with_its_shape_and_tiles() {
    let mut m = Model::load(FASHION, "fashion-mnist.safetensors").unwrap();
    let info: serde_json::Value = serde_json::from_str(&m.info()).unwrap();
    assert_eq!(info["input"], serde_json::json!([28, 28, 1]));
    assert_eq!(info["classes"].as_array().unwrap().len(), 10);
    assert_eq!(info["parameters"], 8 * 25 + 8 + 16 * 8 * 25 + 16 + 7 * 7 * 16 * 10 + 10);
    let pass = m.rgba_pass(&[255; 28 * 28 * 4], 28, 28).unwrap();
    let labels: Vec<String> = (0..pass.layer_count()).map(|i| pass.layer_label(i).unwrap()).collect();
    assert_eq!(info["layers"], serde_json::json!(labels));
    let maps: Vec<usize> = (0..pass.layer_count()).filter(|&i| pass.is_feature_map(i).unwrap()).collect();
    // The relus are folded into their convolutions: conv, pool, conv, pool, flatten, dense.
    assert_eq!(maps, [0, 1, 2, 3], "conv and pool layers: {labels:?}");
    assert_eq!(labels[0], "layer 0 (conv2d + relu)");
    for (i, shape) in [(0, [28, 28, 8]), (1, [14, 14, 8]), (2, [14, 14, 16]), (3, [7, 7, 16])] {
        assert_eq!(pass.layer_shape(i).unwrap(), shape);
        assert_eq!(pass.tiles(i, false).unwrap().len(), shape.iter().product::<u32>() as usize);
        assert_eq!(pass.layer_tiles(i, true).unwrap(), pass.tiles(i, true).unwrap());
        assert_eq!(pass.layer_values(i).unwrap(), pass.layer(i).unwrap().output.data());
    }
    // Per layer, the strongest value of the whole layer is white; per channel, every channel
    // that is not all zero reaches white.
    let (h, w, c) = (28, 28, 8);
    let per_layer = pass.tiles(0, true).unwrap();
    let per_channel = pass.tiles(0, false).unwrap();
    assert_eq!(per_layer.iter().max(), Some(&255));
    let values = pass.layer_values(0).unwrap();
    for ch in 0..c {
        let tile = &per_channel[ch * h * w..(ch + 1) * h * w];
        let alive = values.iter().skip(ch).step_by(c).any(|&v| v > 0.0);
        assert_eq!(tile.iter().max() == Some(&255), alive, "channel {ch}");
    }
    assert!(pass.layer(6).is_err_and(|e| e.to_string().contains("6 is out of range: the model has 6 layers")));
    assert!(pass.tiles(4, false).is_err(), "flatten is no feature map");
    assert_eq!(pass.layer_shape(5).unwrap(), [10]);
}

#[test]
fn the_top_classes_are_ranked_as_convnet_predict_ranks_them() {
    let mut m = Model::load(CIFAR, "cifar10.safetensors").unwrap();
    let pass = m.image_pass(&std::fs::read(web("samples/cifar10/2.png")).unwrap(), "2.png").unwrap();
    let top: Vec<serde_json::Value> = serde_json::from_str(&pass.top(5)).unwrap();
    assert_eq!(top.len(), 5);
    let probs = pass.probabilities();
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    for (k, entry) in top.iter().enumerate() {
        assert_eq!(entry["class"], order[k]);
        assert_eq!(entry["name"], names[order[k]]);
        assert_eq!(entry["probability"].as_f64().unwrap() as f32, probs[order[k]]);
    }
    assert_eq!(pass.ranked(20).len(), 10);
}

#[test]
fn the_first_layers_filters_come_as_tiles() {
    let m = Model::load(FASHION, "fashion-mnist.safetensors").unwrap();
    assert_eq!(m.filters().unwrap(), m.filters_json().unwrap());
    let f: serde_json::Value = serde_json::from_str(&m.filters_json().unwrap()).unwrap();
    assert_eq!((f["width"].as_u64(), f["height"].as_u64(), f["channels"].as_u64()), (Some(5), Some(5), Some(1)));
    assert_eq!(f["labels"].as_array().unwrap().len(), 8);
    assert_eq!(f["pixels"].as_array().unwrap().len(), 8 * 25);
    let c = Model::load(CIFAR, "cifar10.safetensors").unwrap();
    let f: serde_json::Value = serde_json::from_str(&c.filters_json().unwrap()).unwrap();
    assert_eq!((f["channels"].as_u64(), f["labels"].as_array().unwrap().len()), (Some(3), 16));
    assert_eq!(f["pixels"].as_array().unwrap().len(), 16 * 25 * 3);
}

#[test]
fn the_tutorials_patch_under_the_edge_kernel_gives_377() {
    let patch = [200, 199, 189, 203, 23, 34, 177, 12, 22];
    let r = filter(&patch, 3, 3, 1, "edge-horizontal", false).unwrap();
    assert_eq!((r.height(), r.width(), r.channels()), (1, 1, 1));
    assert_eq!(r.responses(), [377.0]);
    assert_eq!(r.kernel_values(), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0]);
    assert_eq!((r.kernel_height(), r.kernel_width()), (3, 3));
    assert_eq!(r.kernel_rows(), " 1.000  1.000  1.000\n 0.000  0.000  0.000\n-1.000 -1.000 -1.000");
    // The same kernel typed in, and with zero padding keeping the size.
    let typed = filter(&patch, 3, 3, 1, "1,1,1;0,0,0;-1,-1,-1", true).unwrap();
    assert_eq!((typed.height(), typed.width()), (3, 3));
    assert_eq!(typed.responses()[4], 377.0);
    // Top-left with padding: the row above is zeros, the -1 row lies on the patch's second
    // row from its padded left edge: -(0 + 203 + 23).
    assert_eq!(typed.responses()[0], -(203.0 + 23.0));
}

#[test]
fn rgba_and_grey_rgb_inputs_are_filtered_as_convnet_filter_does() {
    // RGBA whose pixels are grey: filtered once, as one channel; alpha is ignored.
    let grey: Vec<u8> = [10u8, 50, 90, 130].iter().flat_map(|&v| [v, v, v, 7]).collect();
    let r = filter(&grey, 2, 2, 4, "1,-1", false).unwrap();
    assert_eq!((r.height(), r.width(), r.channels()), (2, 1, 1));
    assert_eq!(r.responses(), [-40.0, -40.0]);
    // Colour: each channel on its own.
    let colour = [10u8, 0, 5, 255, 30, 1, 0, 255];
    let r = filter(&colour, 1, 2, 4, "1,-1", false).unwrap();
    assert_eq!(r.channels(), 3);
    assert_eq!(r.responses(), [-20.0, -1.0, 5.0]);
    // Signed kernels map zero to mid-grey, the strongest response to black or white.
    // 128 + v * 127 / 20: -20 -> 1, -1 -> 121.65, 5 -> 159.75.
    assert_eq!(r.pixels(), [1, 122, 160]);
    assert!(r.mapping().starts_with("signed"));
    // Red equal to green but not to blue is colour too.
    let r = filter(&[10, 10, 90, 255, 20, 20, 20, 255], 1, 2, 4, "1,-1", false).unwrap();
    assert_eq!(r.channels(), 3);
    assert_eq!(r.responses(), [-10.0, -10.0, 70.0]);
}

#[test]
fn bad_input_is_refused_with_what_is_wrong() {
    let msg = |r: convnet::Result<crate::KernelResult>| r.err().expect("an error").to_string();
    assert!(msg(filter(&[0; 8], 3, 3, 1, "sobel-x", false)).contains("8 bytes for a 3x3 image with 1 channels"));
    assert!(msg(filter(&[0; 18], 3, 3, 2, "sobel-x", false)).contains("(1, 3 or 4)"));
    assert!(msg(filter(&[0; 9], 3, 3, 1, "wobble", false)).contains("unknown kernel \"wobble\""));
    assert!(msg(filter(&[0; 9], 3, 3, 1, "1,2;3", false)).contains("rectangular"));
    assert!(msg(filter(&[0; 4], 2, 2, 1, "sobel-x", false)).contains("does not fit a 2x2 image"));
    let wide = vec!["1"; 32].join(",");
    assert!(msg(filter(&[0; 4], 2, 2, 1, &wide, true)).contains("a 1x32 kernel: the playground takes kernels up to 31x31"));
    let tall = vec!["1"; 32].join(";");
    assert!(msg(filter(&[0; 4], 2, 2, 1, &tall, true)).contains("a 32x1 kernel"));
    assert_eq!(filter(&[0; 4], 2, 2, 1, &vec!["1"; 31].join(","), true).unwrap().width(), 2, "31 is allowed");
    assert_eq!(filter(&[0; 4], 2, 2, 1, &vec!["1"; 31].join(";"), true).unwrap().height(), 2, "31 rows too");
    let names: Vec<(String, String)> = serde_json::from_str(&kernel_names()).unwrap();
    assert_eq!(names.len(), 8);
    assert_eq!(names[0].0, "edge-horizontal");

    let err = Model::load(b"not a checkpoint", "upload.safetensors").err().unwrap().to_string();
    assert!(err.contains("upload.safetensors"), "{err}");
    let mut m = Model::load(FASHION, "fashion-mnist.safetensors").unwrap();
    let err = m.image_pass(b"GIF89a....", "cat.gif").err().unwrap().to_string();
    assert!(err.contains("cat.gif") && err.contains("only PNG and JPEG"), "{err}");
    let err = m.rgba_pass(&[0; 10], 2, 2).err().unwrap().to_string();
    assert!(err.contains("10 bytes for a 2x2 RGBA image"), "{err}");
}
