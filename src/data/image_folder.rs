//! Image folders in torchvision's ImageFolder layout: `root/<class>/<image>.png|jpg|jpeg`.
//!
//! Classes are the sub-folder names sorted (label = position in that order), images are
//! taken in file-name order within each class, so the same folder always gives the same
//! data set. Files with other extensions are skipped, as are hidden entries (names starting
//! with '.', e.g. `.DS_Store` or `.ipynb_checkpoints`, which would otherwise become a class).
//! Each image is decoded, converted to RGB (3 channels) or luma (1 channel) and resized to
//! the requested size with a triangle (bilinear) filter when it differs.

use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use super::dataset::Dataset;
use crate::error::{Error, Result};

/// Images larger than this are refused before their pixels are decoded.
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;
/// Per-side limit handed to the decoder, in case a header lies about its size.
const MAX_SIDE: u32 = 100_000;
/// Decoder allocation limit: enough for 50 megapixels of 16-bit RGBA (400 MB).
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Loads one image as HWC u8 pixels of `height` x `width` x `channels` (1 = luma, 3 = RGB).
/// The format is recognised from the content (falling back to the extension).
pub fn load_image(path: impl AsRef<Path>, height: usize, width: usize, channels: usize) -> Result<Vec<u8>> {
    let path = path.as_ref();
    if channels != 1 && channels != 3 {
        return Err(Error::invalid(
            "load_image",
            format!("channels must be 1 (grey) or 3 (RGB), got {channels}"),
        ));
    }
    let (h, w) = match (u32::try_from(height), u32::try_from(width)) {
        (Ok(h), Ok(w)) if h > 0 && w > 0 => (h, w),
        _ => return Err(Error::invalid("load_image", format!("bad target size {height}x{width}"))),
    };

    let mut reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);

    let decode_err = |e: image::ImageError| Error::data(path, format!("cannot decode image: {e}"));
    // Building the decoder reads only the header, so the size is known before any pixels.
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (img_w, img_h) = decoder.dimensions();
    let pixels = u64::from(img_w) * u64::from(img_h);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(Error::data(
            path,
            format!(
                "image is {img_w}x{img_h} ({:.1} megapixels), over the {} megapixel limit; \
                 shrink it before training",
                pixels as f64 / 1e6,
                MAX_IMAGE_PIXELS / 1_000_000
            ),
        ));
    }
    let img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;

    let raw = if channels == 3 {
        let rgb = img.to_rgb8();
        if rgb.dimensions() == (w, h) { rgb } else { imageops::resize(&rgb, w, h, FilterType::Triangle) }
            .into_raw()
    } else {
        let luma = img.to_luma8();
        if luma.dimensions() == (w, h) { luma } else { imageops::resize(&luma, w, h, FilterType::Triangle) }
            .into_raw()
    };
    Ok(raw)
}

/// Sorted entries of `dir` that pass `keep`, hidden ones skipped.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !is_hidden(&path) && keep(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Loads every image under `root/<class>/` as one data set of `height` x `width` x `channels`
/// images, labels in sorted class-folder order.
pub fn load_image_folder(
    root: impl AsRef<Path>,
    height: usize,
    width: usize,
    channels: usize,
) -> Result<Dataset> {
    let root = root.as_ref();
    let class_dirs = sorted_entries(root, Path::is_dir)?;
    if class_dirs.is_empty() {
        return Err(Error::data(
            root,
            "no class folders: expected the ImageFolder layout root/<class>/<image>.png|jpg|jpeg",
        ));
    }
    // Labels are stored as u8.
    if class_dirs.len() > 256 {
        return Err(Error::data(
            root,
            format!("{} class folders; at most 256 are supported", class_dirs.len()),
        ));
    }

    let mut ds = Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        height,
        width,
        channels,
        class_names: Vec::with_capacity(class_dirs.len()),
    };
    for (label, class_dir) in class_dirs.iter().enumerate() {
        let name = class_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::data(class_dir, "class folder name is not valid UTF-8"))?;
        ds.class_names.push(name.to_string());

        let files = sorted_entries(class_dir, |p| p.is_file() && has_image_extension(p))?;
        if files.is_empty() {
            return Err(Error::data(
                class_dir,
                format!("class folder '{name}' has no .png, .jpg or .jpeg images"),
            ));
        }
        for file in &files {
            ds.images.extend(load_image(file, height, width, channels)?);
            ds.labels.push(label as u8);
        }
    }
    Ok(ds)
}
