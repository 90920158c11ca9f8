//! Image folders in torchvision's ImageFolder layout: `root/<class>/<image>.png|jpg|jpeg`.
//!
//! Classes are the sub-folder names sorted (label = position in that order), images are
//! taken in file-name order within each class, so the same folder always gives the same
//! data set. Files with other extensions are skipped, as are hidden entries (names starting
//! with '.', e.g. `.DS_Store` or `.ipynb_checkpoints`, which would otherwise become a class).
//! Each image is decoded, converted to RGB (3 channels) or luma (1 channel) and resized to
//! the requested size with a triangle (bilinear) filter when it differs.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

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
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// An image read by [`read_image`]: its pixels as the caller asked for them, and what the file
/// held (so that a caller can say when it converted or resized).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedImage {
    /// HWC pixels, `height * width * channels` bytes.
    pub pixels: Vec<u8>,
    pub height: usize,
    pub width: usize,
    /// 1 (luma) or 3 (RGB), as asked.
    pub channels: usize,
    /// The size stored in the file.
    pub source_width: u32,
    pub source_height: u32,
    /// The file's channels: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    pub source_channels: u8,
}

impl LoadedImage {
    /// Whether the file holds a grayscale image (with or without alpha).
    pub fn source_is_grayscale(&self) -> bool {
        self.source_channels <= 2
    }

    /// The file's colour type in words: "grayscale", "grayscale+alpha", "RGB" or "RGBA".
    pub fn source_color(&self) -> &'static str {
        match self.source_channels {
            1 => "grayscale",
            2 => "grayscale+alpha",
            3 => "RGB",
            _ => "RGBA",
        }
    }

    /// "grayscale, converted to RGB" when the file's colours were changed to the channels
    /// asked for (grey to RGB or colour to grey); None when they already matched.
    pub fn conversion(&self) -> Option<String> {
        match (self.source_is_grayscale(), self.channels) {
            (true, 3) => Some(format!("{}, converted to RGB", self.source_color())),
            (false, 1) => Some(format!("{}, converted to grayscale", self.source_color())),
            _ => None,
        }
    }

    /// Whether the pixels were resized from the file's size.
    pub fn resized(&self) -> bool {
        (self.source_height as usize, self.source_width as usize) != (self.height, self.width)
    }
}

/// Loads one image as HWC u8 pixels of `height` x `width` x `channels` (1 = luma, 3 = RGB).
/// See [`read_image`].
pub fn load_image(path: impl AsRef<Path>, height: usize, width: usize, channels: usize) -> Result<Vec<u8>> {
    read_image(path, Some((height, width)), channels).map(|img| img.pixels)
}

/// Reads a PNG or JPEG image as `channels` (1 = luma, 3 = RGB), resized to `size` = (height,
/// width) with a triangle (bilinear) filter when given and different, else at its own size.
///
/// The format is recognised from the content, not the name; anything else (BMP, GIF, a text
/// file named .png, an empty file, a folder) is refused with a message that says what it is.
/// The image's size is read from its header and checked against [`MAX_IMAGE_PIXELS`] before any
/// pixel is decoded, so a huge (or lying) header cannot exhaust memory.
pub fn read_image(path: impl AsRef<Path>, size: Option<(usize, usize)>, channels: usize) -> Result<LoadedImage> {
    let path = path.as_ref();
    let target = check_request(size, channels)?;
    if path.is_dir() {
        return Err(Error::data(path, "is a directory, expected a PNG or JPEG image"));
    }
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(16);
    (&mut file).take(16).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    decode(BufReader::new(file), &head, path, target, channels)
}

/// Decodes a PNG or JPEG file held in memory (a file dropped on the web demo's page) exactly as
/// [`read_image`] reads one from disk, with the same checks; `name` stands for the file in
/// error messages.
pub fn decode_image(bytes: &[u8], name: &str, size: Option<(usize, usize)>, channels: usize) -> Result<LoadedImage> {
    let target = check_request(size, channels)?;
    decode(Cursor::new(bytes), &bytes[..bytes.len().min(16)], Path::new(name), target, channels)
}

/// Converts and resizes RGBA pixels (a canvas drawn on in the web demo) as [`read_image`] does
/// a decoded RGBA file: alpha is dropped, colour becomes luma when `channels` is 1.
pub fn image_from_rgba(rgba: &[u8], width: usize, height: usize, size: Option<(usize, usize)>, channels: usize) -> Result<LoadedImage> {
    let target = check_request(size, channels)?;
    let bad = || Error::invalid("image_from_rgba", format!("{} bytes for a {width}x{height} RGBA image", rgba.len()));
    let pixels = width.checked_mul(height).filter(|&n| n > 0 && n.checked_mul(4) == Some(rgba.len())).ok_or_else(bad)?;
    if over_pixel_limit(pixels as u64) {
        return Err(Error::invalid(
            "image_from_rgba",
            format!("{width}x{height} is over the {} megapixel limit", MAX_IMAGE_PIXELS / 1_000_000),
        ));
    }
    let (w, h) = (u32::try_from(width).map_err(|_| bad())?, u32::try_from(height).map_err(|_| bad())?);
    let img = image::RgbaImage::from_raw(w, h, rgba.to_vec()).ok_or_else(bad)?;
    Ok(converted(&DynamicImage::ImageRgba8(img), target, channels, 4))
}

/// Whether an image of `pixels` pixels is refused: [`MAX_IMAGE_PIXELS`] itself is allowed.
fn over_pixel_limit(pixels: u64) -> bool {
    pixels > MAX_IMAGE_PIXELS
}

/// The checked target size as (height, width) in `u32`, after checking the channel count.
fn check_request(size: Option<(usize, usize)>, channels: usize) -> Result<Option<(u32, u32)>> {
    if channels != 1 && channels != 3 {
        return Err(Error::invalid("load_image", format!("channels must be 1 (grey) or 3 (RGB), got {channels}")));
    }
    match size {
        None => Ok(None),
        Some((height, width)) => match (u32::try_from(height), u32::try_from(width)) {
            (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok(Some((h, w))),
            _ => Err(Error::invalid("load_image", format!("bad target size {height}x{width}"))),
        },
    }
}

/// Decodes the image that `reader` holds (its first bytes are `head`; `path` names it in errors).
fn decode<R: BufRead + Seek>(reader: R, head: &[u8], path: &Path, target: Option<(u32, u32)>, channels: usize) -> Result<LoadedImage> {
    let format = sniff_format(path, head)?;
    let mut reader = ImageReader::with_format(reader, format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);

    let what = if format == ImageFormat::Png { "PNG" } else { "JPEG" };
    let decode_err = |e: image::ImageError| Error::data(path, format!("cannot decode {what} image: {}", one_line(&e)));
    // Building the decoder reads only the header, so the size is known before any pixels.
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (img_w, img_h) = decoder.dimensions();
    let pixels = u64::from(img_w) * u64::from(img_h);
    if over_pixel_limit(pixels) {
        return Err(Error::data(
            path,
            format!(
                "image is {img_w}x{img_h} ({:.1} megapixels), over the {} megapixel limit; \
                 refused before decoding: shrink it first",
                pixels as f64 / 1e6,
                MAX_IMAGE_PIXELS / 1_000_000
            ),
        ));
    }
    if pixels == 0 {
        return Err(Error::data(path, format!("image is {img_w}x{img_h}: it has no pixels")));
    }
    let source_channels = decoder.color_type().channel_count();
    let img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    Ok(converted(&img, target, channels, source_channels))
}

/// `img` as `channels` (RGB or luma), resized to `target` (height, width) when given and
/// different, with a triangle (bilinear) filter.
fn converted(img: &DynamicImage, target: Option<(u32, u32)>, channels: usize, source_channels: u8) -> LoadedImage {
    let (img_w, img_h) = (img.width(), img.height());
    let (w, h) = target.map_or((img_w, img_h), |(h, w)| (w, h));
    let raw = if channels == 3 {
        let rgb = img.to_rgb8();
        if rgb.dimensions() == (w, h) { rgb } else { imageops::resize(&rgb, w, h, FilterType::Triangle) }.into_raw()
    } else {
        let luma = img.to_luma8();
        if luma.dimensions() == (w, h) { luma } else { imageops::resize(&luma, w, h, FilterType::Triangle) }.into_raw()
    };
    LoadedImage { pixels: raw, height: h as usize, width: w as usize, channels, source_width: img_w, source_height: img_h, source_channels }
}

/// PNG or JPEG, from the first bytes of the file; a clear error for anything else.
fn sniff_format(path: &Path, head: &[u8]) -> Result<ImageFormat> {
    if head.is_empty() {
        return Err(Error::data(path, "empty file (0 bytes): not a PNG or JPEG image"));
    }
    match image::guess_format(head) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => Ok(f),
        Ok(other) => Err(Error::data(
            path,
            format!(
                "unsupported image format {}: only PNG and JPEG images can be read (convert it first)",
                format!("{other:?}").to_uppercase()
            ),
        )),
        Err(_) => {
            let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(Error::data(
                path,
                format!(
                    "not a PNG or JPEG image: it starts with bytes {} (a PNG starts with 89 50 4e 47, \
                     a JPEG with ff d8 ff)",
                    shown.join(" ")
                ),
            ))
        }
    }
}

/// An error's text on one line (decoder messages are usually one line already).
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
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
pub fn load_image_folder(root: impl AsRef<Path>, height: usize, width: usize, channels: usize) -> Result<Dataset> {
    let root = root.as_ref();
    if !root.is_dir() {
        let what = if root.exists() { "not a directory" } else { "folder not found" };
        return Err(Error::data(root, format!("{what}: expected the ImageFolder layout root/<class>/<image>.png|jpg|jpeg")));
    }
    let class_dirs = sorted_entries(root, Path::is_dir)?;
    if class_dirs.is_empty() {
        return Err(Error::data(root, "no class folders: expected the ImageFolder layout root/<class>/<image>.png|jpg|jpeg"));
    }
    // Labels are stored as u8.
    if class_dirs.len() > 256 {
        return Err(Error::data(root, format!("{} class folders; at most 256 are supported", class_dirs.len())));
    }

    let mut ds =
        Dataset { images: Vec::new(), labels: Vec::new(), height, width, channels, class_names: Vec::with_capacity(class_dirs.len()) };
    for (label, class_dir) in class_dirs.iter().enumerate() {
        let name =
            class_dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::data(class_dir, "class folder name is not valid UTF-8"))?;
        ds.class_names.push(name.to_string());

        let files = sorted_entries(class_dir, |p| p.is_file() && has_image_extension(p))?;
        if files.is_empty() {
            return Err(Error::data(class_dir, format!("class folder '{name}' has no .png, .jpg or .jpeg images")));
        }
        for file in &files {
            ds.images.extend(load_image(file, height, width, channels)?);
            ds.labels.push(label as u8);
        }
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_limit_allows_exactly_the_maximum() {
        assert!(!over_pixel_limit(MAX_IMAGE_PIXELS));
        assert!(over_pixel_limit(MAX_IMAGE_PIXELS + 1));
        assert!(!over_pixel_limit(1));
    }
}
