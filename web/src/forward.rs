//! One forward pass's results: the prediction and every layer's output, for the page to draw.

use convnet::data::LoadedImage;
use convnet::viz::activations::{channel_tiles, is_conv_or_pool, ActivationScale};
use convnet::Tensor;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::js_error;

/// A layer's label ("layer 0 (conv2d + relu)") and its output [1, H, W, C] or [1, N].
pub struct LayerOutput {
    pub label: String,
    pub output: Tensor,
}

/// The result of `Model.forwardImage` / `Model.forwardRgba`.
#[wasm_bindgen]
pub struct Forward {
    image: LoadedImage,
    logits: Vec<f32>,
    probabilities: Vec<f32>,
    class_names: Vec<String>,
    layers: Vec<LayerOutput>,
}

#[derive(Serialize)]
struct Ranked<'a> {
    class: usize,
    name: &'a str,
    probability: f32,
}

impl Forward {
    pub(crate) fn new(
        image: LoadedImage,
        logits: Vec<f32>,
        probabilities: Vec<f32>,
        class_names: Vec<String>,
        layers: Vec<LayerOutput>,
    ) -> Forward {
        Forward { image, logits, probabilities, class_names, layers }
    }

    /// The output of layer `index` (in the order of `Model.info().layers`).
    pub fn layer(&self, index: usize) -> convnet::Result<&LayerOutput> {
        self.layers
            .get(index)
            .ok_or_else(|| convnet::Error::invalid("layer", format!("{index} is out of range: the model has {} layers", self.layers.len())))
    }

    /// See `layerTiles`.
    pub fn tiles(&self, index: usize, per_layer: bool) -> convnet::Result<Vec<u8>> {
        let scale = if per_layer { ActivationScale::Layer } else { ActivationScale::Channel };
        let tiles = channel_tiles(&self.layer(index)?.output, scale)?;
        Ok(tiles.into_iter().flat_map(|t| t.pixels).collect())
    }

    /// The `k` most probable classes, most probable first (ties in class order), as
    /// `convnet predict` ranks them.
    pub fn ranked(&self, k: usize) -> Vec<(usize, f32)> {
        let mut ranked: Vec<(usize, f32)> = self.probabilities.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(k);
        ranked
    }
}

#[wasm_bindgen]
impl Forward {
    /// The logits, one per class.
    pub fn logits(&self) -> Vec<f32> {
        self.logits.clone()
    }

    /// The softmax of the logits.
    pub fn probabilities(&self) -> Vec<f32> {
        self.probabilities.clone()
    }

    /// The `k` most probable classes as JSON: `[{"class": 3, "name": "Dress", "probability": 0.91}, ...]`.
    pub fn top(&self, k: usize) -> String {
        let ranked: Vec<Ranked> = self
            .ranked(k)
            .into_iter()
            .map(|(class, probability)| Ranked { class, name: self.class_names.get(class).map_or("?", |s| s.as_str()), probability })
            .collect();
        serde_json::to_string(&ranked).expect("plain data serialises")
    }

    /// The image as the network sees it before normalisation: HWC bytes of the model's input
    /// size and channels.
    #[wasm_bindgen(js_name = inputPixels)]
    pub fn input_pixels(&self) -> Vec<u8> {
        self.image.pixels.clone()
    }

    #[wasm_bindgen(js_name = layerCount)]
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    #[wasm_bindgen(js_name = layerLabel)]
    pub fn layer_label(&self, index: usize) -> Result<String, JsError> {
        Ok(self.layer(index).map_err(js_error)?.label.clone())
    }

    /// The layer's output shape without the batch: [H, W, C] for a feature map, [N] after
    /// flatten and dense layers.
    #[wasm_bindgen(js_name = layerShape)]
    pub fn layer_shape(&self, index: usize) -> Result<Vec<u32>, JsError> {
        Ok(self.layer(index).map_err(js_error)?.output.shape()[1..].iter().map(|&d| d as u32).collect())
    }

    /// Whether the layer is a convolution or a pooling layer (the ones drawn as tiles; their
    /// outputs are always [1, H, W, C]).
    #[wasm_bindgen(js_name = isFeatureMap)]
    pub fn is_feature_map(&self, index: usize) -> Result<bool, JsError> {
        Ok(is_conv_or_pool(&self.layer(index).map_err(js_error)?.label))
    }

    /// The layer's output values, HWC (or N), as float32.
    #[wasm_bindgen(js_name = layerValues)]
    pub fn layer_values(&self, index: usize) -> Result<Vec<f32>, JsError> {
        Ok(self.layer(index).map_err(js_error)?.output.data().to_vec())
    }

    /// Every channel of a feature map as a grey tile, the tiles one after the other (C tiles
    /// of H x W bytes), mapped as `convnet visualize` maps them: each channel stretched to its
    /// own range, or (`per_layer`) one range for the whole layer.
    #[wasm_bindgen(js_name = layerTiles)]
    pub fn layer_tiles(&self, index: usize, per_layer: bool) -> Result<Vec<u8>, JsError> {
        self.tiles(index, per_layer).map_err(js_error)
    }
}
