//! A trained network loaded from a checkpoint's bytes, and a forward pass over an image.

use std::path::Path;

use convnet::data::{decode_image, image_from_rgba, LoadedImage};
use convnet::model::Network;
use convnet::ops::softmax::softmax;
use convnet::train::Checkpoint;
use convnet::viz::filters::{filter_tiles, first_conv_weight};
use convnet::Tensor;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::forward::{Forward, LayerOutput};
use crate::js_error;

/// A network and what the page needs to show it: its input size, class names and the
/// normalisation it was trained with.
#[wasm_bindgen]
pub struct Model {
    checkpoint: Checkpoint,
    net: Network,
}

/// What `Model.info()` describes, as JSON.
#[derive(Serialize)]
struct Info<'a> {
    name: &'a str,
    description: &'a str,
    /// [height, width, channels]
    input: [usize; 3],
    classes: &'a [String],
    parameters: usize,
    /// Epochs the checkpoint was trained for and its best validation accuracy.
    epoch: usize,
    best_val_accuracy: f32,
    /// Every layer's label ("layer 0 (conv2d)") in order.
    layers: Vec<String>,
}

/// The first convolution's filters as tiles (see `Model.filters()`).
#[derive(Serialize)]
struct FilterTiles {
    label: String,
    width: usize,
    height: usize,
    /// 1 (one grey tile per input channel of each filter) or 3 (one RGB tile per filter).
    channels: usize,
    /// Tiles per row (0: as many as fit).
    columns: usize,
    labels: Vec<String>,
    /// Every tile's pixels, one after the other (width * height * channels bytes each).
    pixels: Vec<u8>,
}

#[wasm_bindgen]
impl Model {
    /// Loads a checkpoint written by `convnet train` from its bytes; `name` (the file's name)
    /// is used in error messages.
    #[wasm_bindgen(js_name = fromCheckpoint)]
    pub fn from_checkpoint(bytes: &[u8], name: &str) -> Result<Model, JsError> {
        Model::load(bytes, name).map_err(js_error)
    }

    /// The model's name, input, classes and layers, as JSON.
    pub fn info(&self) -> String {
        let spec = &self.checkpoint.config.model;
        let info = Info {
            name: &spec.name,
            description: &spec.description,
            input: spec.input,
            classes: &self.checkpoint.meta.class_names,
            parameters: self.net.num_params(),
            epoch: self.checkpoint.meta.epoch,
            best_val_accuracy: self.checkpoint.meta.best_val_accuracy,
            layers: self.net.layers().iter().map(|l| l.label().to_string()).collect(),
        };
        serde_json::to_string(&info).expect("plain data serialises")
    }

    /// Runs a PNG or JPEG file's bytes through the network, decoded, converted to the model's
    /// channels and resized to its input exactly as `convnet predict` reads a file.
    #[wasm_bindgen(js_name = forwardImage)]
    pub fn forward_image(&mut self, bytes: &[u8], name: &str) -> Result<Forward, JsError> {
        self.image_pass(bytes, name).map_err(js_error)
    }

    /// Runs RGBA pixels (a canvas's `ImageData`, `width` x `height`) through the network,
    /// converted and resized as a decoded RGBA image file would be.
    #[wasm_bindgen(js_name = forwardRgba)]
    pub fn forward_rgba(&mut self, rgba: &[u8], width: usize, height: usize) -> Result<Forward, JsError> {
        self.rgba_pass(rgba, width, height).map_err(js_error)
    }

    /// The first convolution's filters as tiles, as JSON (null when the model has none).
    pub fn filters(&self) -> Result<String, JsError> {
        self.filters_json().map_err(js_error)
    }
}

// The work behind the JavaScript methods, in plain Rust (testable natively: a `JsError` can only
// be made inside a WebAssembly host).
impl Model {
    /// Reads a checkpoint from its bytes and builds its network.
    pub fn load(bytes: &[u8], name: &str) -> convnet::Result<Model> {
        let checkpoint = Checkpoint::from_bytes(bytes, Path::new(name))?;
        let net = checkpoint.network()?;
        Ok(Model { checkpoint, net })
    }

    /// See `forwardImage`.
    pub fn image_pass(&mut self, bytes: &[u8], name: &str) -> convnet::Result<Forward> {
        let [h, w, c] = self.input();
        let image = decode_image(bytes, name, Some((h, w)), c)?;
        self.forward(image)
    }

    /// See `forwardRgba`.
    pub fn rgba_pass(&mut self, rgba: &[u8], width: usize, height: usize) -> convnet::Result<Forward> {
        let [h, w, c] = self.input();
        let image = image_from_rgba(rgba, width, height, Some((h, w)), c)?;
        self.forward(image)
    }

    /// See `filters`.
    pub fn filters_json(&self) -> convnet::Result<String> {
        let Some((label, weight)) = first_conv_weight(&self.net) else {
            return Ok("null".into());
        };
        let (tiles, columns) = filter_tiles(&weight)?;
        let first = &tiles[0];
        let out = FilterTiles {
            label,
            width: first.width,
            height: first.height,
            channels: first.channels,
            columns,
            labels: tiles.iter().map(|t| t.label.clone()).collect(),
            pixels: tiles.iter().flat_map(|t| t.pixels.iter().copied()).collect(),
        };
        Ok(serde_json::to_string(&out).expect("plain data serialises"))
    }

    fn input(&self) -> [usize; 3] {
        self.checkpoint.config.model.input
    }

    /// The forward pass over one image already at the model's input size.
    fn forward(&mut self, image: LoadedImage) -> convnet::Result<Forward> {
        let [h, w, c] = self.input();
        let mut x = Tensor::zeros(&[1, h, w, c]);
        self.checkpoint.meta.normalization.apply(&image.pixels, x.data_mut());
        let trace = self.net.forward_trace(&x)?;
        // A checkpoint's config has at least one layer (Config::validate), whose output is the
        // logits.
        let logits = trace.last().map(|(_, t)| t.clone()).expect("a network has layers");
        let probabilities = softmax(&logits)?;
        let layers = trace.into_iter().map(|(label, output)| LayerOutput { label, output }).collect();
        Ok(Forward::new(image, logits.data().to_vec(), probabilities.data().to_vec(), self.checkpoint.meta.class_names.clone(), layers))
    }
}
