//! The kernel playground: one hand-written kernel slid over an image, as `convnet filter` does.

use convnet::viz::filter_image::{filter_pixels, kernel_from_arg, FilterOptions, FilteredImage, KERNEL_NAMES};
use wasm_bindgen::prelude::*;

use crate::js_error;

/// The largest kernel side the playground takes: a typed-in kernel can be any size, and a huge
/// one would only exhaust the page's memory.
pub const MAX_KERNEL_SIDE: usize = 31;

/// The named kernels and what each does, as JSON: `[["edge-horizontal", "..."], ...]`.
#[wasm_bindgen(js_name = kernelNames)]
pub fn kernel_names() -> String {
    serde_json::to_string(&KERNEL_NAMES).expect("plain data serialises")
}

/// A filtered image: the raw responses and the grey or RGB pixels they map to.
#[wasm_bindgen]
pub struct KernelResult {
    filtered: FilteredImage,
    kernel_rows: String,
    kernel_values: Vec<f32>,
    kernel_height: usize,
    kernel_width: usize,
}

#[wasm_bindgen]
impl KernelResult {
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.filtered.height
    }

    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.filtered.width
    }

    /// 1 (grey) or 3 (RGB, each colour filtered on its own).
    #[wasm_bindgen(getter)]
    pub fn channels(&self) -> usize {
        self.filtered.channels
    }

    /// The convolution's raw outputs, HWC.
    pub fn responses(&self) -> Vec<f32> {
        self.filtered.responses.clone()
    }

    /// The responses as pixels, HWC (see `mapping`).
    pub fn pixels(&self) -> Vec<u8> {
        self.filtered.pixels.clone()
    }

    /// How responses became pixels, in words.
    #[wasm_bindgen(getter)]
    pub fn mapping(&self) -> String {
        self.filtered.mapping.describe()
    }

    /// The kernel's values, one row a line, rounded to 3 decimals for reading.
    #[wasm_bindgen(getter, js_name = kernelRows)]
    pub fn kernel_rows(&self) -> String {
        self.kernel_rows.clone()
    }

    /// The kernel's exact values, row-major (`kernelHeight` x `kernelWidth`).
    #[wasm_bindgen(js_name = kernelValues)]
    pub fn kernel_values(&self) -> Vec<f32> {
        self.kernel_values.clone()
    }

    #[wasm_bindgen(getter, js_name = kernelHeight)]
    pub fn kernel_height(&self) -> usize {
        self.kernel_height
    }

    #[wasm_bindgen(getter, js_name = kernelWidth)]
    pub fn kernel_width(&self) -> usize {
        self.kernel_width
    }
}

/// Slides `kernel` (a name such as "sobel-x" or rows such as "1,1,1;0,0,0;-1,-1,-1") over HWC
/// `pixels` with `channels` of 1 (grey), 3 (RGB) or 4 (RGBA, alpha dropped), with zero padding
/// that keeps the size (`same`) or none. An RGB image whose pixels are all grey is filtered
/// once, as `convnet filter` does.
#[wasm_bindgen(js_name = applyKernel)]
pub fn apply_kernel(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    kernel: &str,
    same: bool,
) -> Result<KernelResult, JsError> {
    filter(pixels, height, width, channels, kernel, same).map_err(js_error)
}

/// [`apply_kernel`] in plain Rust.
pub fn filter(pixels: &[u8], height: usize, width: usize, channels: usize, kernel: &str, same: bool) -> convnet::Result<KernelResult> {
    if !matches!(channels, 1 | 3 | 4) || Some(pixels.len()) != height.checked_mul(width).and_then(|n| n.checked_mul(channels)) {
        return Err(convnet::Error::invalid(
            "applyKernel",
            format!("{} bytes for a {height}x{width} image with {channels} channels (1, 3 or 4)", pixels.len()),
        ));
    }
    let kernel = kernel_from_arg(kernel)?;
    if kernel.height > MAX_KERNEL_SIDE || kernel.width > MAX_KERNEL_SIDE {
        return Err(convnet::Error::invalid(
            "applyKernel",
            format!("a {}x{} kernel: the playground takes kernels up to {MAX_KERNEL_SIDE}x{MAX_KERNEL_SIDE}", kernel.height, kernel.width),
        ));
    }
    let mut rgb: Vec<u8> = if channels == 4 { pixels.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect() } else { pixels.to_vec() };
    let mut channels = channels.min(3);
    if channels == 3 && rgb.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]) {
        rgb = rgb.chunks_exact(3).map(|p| p[0]).collect();
        channels = 1;
    }
    let opts = FilterOptions { same, ..FilterOptions::default() };
    let filtered = filter_pixels(&rgb, height, width, channels, &kernel, &opts)?;
    Ok(KernelResult {
        filtered,
        kernel_rows: kernel.rows_text(),
        kernel_values: kernel.values.clone(),
        kernel_height: kernel.height,
        kernel_width: kernel.width,
    })
}
