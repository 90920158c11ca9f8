//! Seeing what the network does: pictures drawn with plotters, text in an embedded font.
//!
//! - `curves`: loss and accuracy per epoch of one or several runs (PNG and SVG)
//! - `grid`: many small grayscale/RGB tiles laid out, upscaled and labelled in one image
//! - `filters`: the first convolution's kernels as a grid
//! - `activations`: what every conv and pool layer outputs for one image
//! - `confusion`: the confusion matrix as a labelled heat map
//! - `filter_image`: one hand-written kernel (edges, blur, sharpen) applied to an image with the
//!   engine's own convolution
//!
//! Text is drawn with DejaVu Sans, compiled into the crate (assets/fonts), so pictures render
//! the same on a machine without any system fonts.

pub mod activations;
pub mod confusion;
pub mod curves;
pub mod filter_image;
pub mod filters;
pub mod grid;

use std::path::Path;
use std::sync::Once;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

use crate::error::{Error, Result};
use crate::fs::write_atomically;

pub use activations::write_activations_png;
pub use confusion::write_confusion_png;
pub use curves::{write_curves, write_curves_for};
pub use filter_image::{filter_pixels, named_kernel, parse_kernel, Kernel};
pub use filters::write_filters_png;
pub use grid::{GridSection, Tile};

/// The font family every picture uses; registered by [`register_font`].
pub const FONT: &str = "sans-serif";

#[cfg(not(target_arch = "wasm32"))]
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded DejaVu Sans as plotters' "sans-serif" (once per process). Every
/// writer in this module calls it; call it yourself before drawing with plotters directly.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure here would be a build problem.
        // plotters has no font registry on wasm32 (it draws text with the browser's canvas
        // there); the web demo draws no charts.
        #[cfg(not(target_arch = "wasm32"))]
        if plotters::style::register_font(FONT, plotters::style::FontStyle::Normal, FONT_BYTES).is_err() {
            eprintln!("warning: the embedded font could not be loaded; text in pictures will be missing");
        }
    });
}

/// The error for a picture that could not be drawn.
pub(crate) fn draw_error(out: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid("plot", format!("cannot draw {}: {e}", out.display()))
}

/// Encodes an RGB buffer as PNG: as 8-bit grayscale when every pixel is grey (a third of the
/// size), else as RGB.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    if rgb.len() != width as usize * height as usize * 3 {
        return Err(Error::invalid("png", format!("{} bytes for a {width}x{height} RGB image", rgb.len())));
    }
    let grey = rgb.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]);
    let mut bytes = Vec::new();
    let encoder = PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, FilterType::Adaptive);
    let result = if grey {
        let luma: Vec<u8> = rgb.chunks_exact(3).map(|p| p[0]).collect();
        encoder.write_image(&luma, width, height, ExtendedColorType::L8)
    } else {
        encoder.write_image(rgb, width, height, ExtendedColorType::Rgb8)
    };
    result.map_err(|e| Error::invalid("png", format!("cannot encode a {width}x{height} image: {e}")))?;
    Ok(bytes)
}

/// Writes an RGB buffer as a PNG file, atomically, creating the parent folder if needed.
pub fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    let bytes = encode_png(rgb, width, height)?;
    write_file(path, &bytes)
}

/// Writes `bytes` to `path` atomically, creating the parent folder if needed.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    write_atomically(path, bytes)
}

/// Maps `values` linearly from `[lo, hi]` to 0..=255 (all 128 when the range is empty).
pub(crate) fn to_u8_range(values: impl Iterator<Item = f32>, lo: f32, hi: f32) -> Vec<u8> {
    let span = hi - lo;
    values
        .map(
            |v| {
                if span.is_nan() || span <= 0.0 || !v.is_finite() {
                    128
                } else {
                    (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8
                }
            },
        )
        .collect()
}

/// Smallest and largest finite value (0, 0 when there is none).
pub(crate) fn min_max(values: impl Iterator<Item = f32>) -> (f32, f32) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

/// A number for a label, short: 3 significant digits.
pub(crate) fn short_num(v: f32) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.1e}")
    }
}
