//! convnet in the browser: the engine compiled to WebAssembly, behind a small wasm-bindgen API
//! that the demo page (web/index.html, web/app.js) calls.
//!
//! Nothing here computes anything of its own. A checkpoint is read by the same
//! `Checkpoint::from_bytes` as `convnet predict`; an image is decoded, converted and resized by
//! the same functions as `convnet predict` (`decode_image`, `image_from_rgba`) and normalised
//! with the checkpoint's own statistics; the forward pass is `Network::forward_trace`, the one
//! `convnet visualize` draws; feature-map tiles are `viz::activations::channel_tiles`, filters
//! `viz::filters::filter_tiles` and the kernel playground `viz::filter_image::filter_pixels`.
//! So what the page shows is what the command-line tool computes, on one thread (wasm32 has no
//! thread pool here: rayon runs every parallel loop on the calling thread).
//!
//! Errors become JavaScript `Error`s whose message is convnet's own (it names the file, layer or
//! value at fault).

mod forward;
mod kernel;
mod model;

pub use forward::{Forward, LayerOutput};
pub use kernel::{apply_kernel, filter, kernel_names, KernelResult};
pub use model::Model;

use wasm_bindgen::JsError;

/// A convnet error as a JavaScript `Error` with convnet's message.
fn js_error(e: convnet::Error) -> JsError {
    JsError::new(&e.to_string())
}

#[cfg(test)]
mod tests;
