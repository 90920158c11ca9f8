//! One hand-written kernel slid over an image with the engine's own convolution: the first
//! example of every CNN tutorial (a 3x3 edge detector) and the classic image filters.
//!
//! Like every CNN library (and the tutorial), the kernel is slid without flipping (a
//! cross-correlation): output(i, j) = sum over (a, b) of image(i*stride + a, j*stride + b) *
//! kernel(a, b). A colour image is filtered per channel (each channel on its own with the same
//! kernel, giving a colour result), or once on its luma with `grayscale`.
//!
//! Responses are mapped to pixels in one of two ways:
//! - signed (kernels that take differences, whose coefficients sum to 0 or less: edges, Sobel,
//!   Laplacian): `128 + v * 127 / max|v|`, so zero is mid-grey, a positive response lighter,
//!   a negative one darker, and the strongest response in the picture white or black;
//! - clamped (kernels that sum to more than 0 and keep the brightness: blurs, sharpen):
//!   `v` itself, clamped to 0..255.

use std::path::Path;

use crate::data::read_image;
use crate::error::{Error, Result};
use crate::ops::conv2d::conv2d_forward;
use crate::ops::{Padding, Window};
use crate::tensor::Tensor;

/// A 2-D kernel, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

impl Kernel {
    fn new(name: &str, rows: &[&[f32]]) -> Kernel {
        Kernel {
            name: name.to_string(),
            height: rows.len(),
            width: rows[0].len(),
            values: rows.iter().flat_map(|r| r.iter().copied()).collect(),
        }
    }

    /// The sum of the coefficients.
    pub fn sum(&self) -> f32 {
        self.values.iter().sum()
    }

    /// Whether the responses are signed (see [`Mapping`]): some coefficient is negative and
    /// the coefficients do not sum to more than 0.
    pub fn is_signed(&self) -> bool {
        let scale = self.values.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
        self.values.iter().any(|&v| v < 0.0) && self.sum() <= 1e-6 * scale
    }

    /// The kernel as text, one row a line.
    pub fn rows_text(&self) -> String {
        self.values
            .chunks(self.width)
            .map(|r| r.iter().map(|v| format!("{v:>6.3}")).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The named kernels, with one line on what each does.
pub const KERNEL_NAMES: [(&str, &str); 8] = [
    ("edge-horizontal", "[[1,1,1],[0,0,0],[-1,-1,-1]]: horizontal edges (light above dark is positive)"),
    ("edge-vertical", "[[1,0,-1],[1,0,-1],[1,0,-1]]: vertical edges (light left of dark is positive)"),
    ("sobel-x", "[[-1,0,1],[-2,0,2],[-1,0,1]]: brightness increasing to the right (vertical edges)"),
    ("sobel-y", "[[-1,-2,-1],[0,0,0],[1,2,1]]: brightness increasing downwards (horizontal edges)"),
    ("laplacian", "[[0,1,0],[1,-4,1],[0,1,0]]: spots and outlines, in every direction"),
    ("sharpen", "[[0,-1,0],[-1,5,-1],[0,-1,0]]: the image plus its outlines"),
    ("box-blur", "3x3 of 1/9: the mean of each 3x3 patch"),
    ("gaussian-blur", "[[1,2,1],[2,4,2],[1,2,1]]/16: a softer blur"),
];

/// A named kernel (see [`KERNEL_NAMES`]).
pub fn named_kernel(name: &str) -> Option<Kernel> {
    let k = |rows: &[&[f32]]| Some(Kernel::new(name, rows));
    match name {
        "edge-horizontal" => k(&[&[1.0, 1.0, 1.0], &[0.0, 0.0, 0.0], &[-1.0, -1.0, -1.0]]),
        "edge-vertical" => k(&[&[1.0, 0.0, -1.0], &[1.0, 0.0, -1.0], &[1.0, 0.0, -1.0]]),
        "sobel-x" => k(&[&[-1.0, 0.0, 1.0], &[-2.0, 0.0, 2.0], &[-1.0, 0.0, 1.0]]),
        "sobel-y" => k(&[&[-1.0, -2.0, -1.0], &[0.0, 0.0, 0.0], &[1.0, 2.0, 1.0]]),
        "laplacian" => k(&[&[0.0, 1.0, 0.0], &[1.0, -4.0, 1.0], &[0.0, 1.0, 0.0]]),
        "sharpen" => k(&[&[0.0, -1.0, 0.0], &[-1.0, 5.0, -1.0], &[0.0, -1.0, 0.0]]),
        "box-blur" => {
            let v = 1.0 / 9.0;
            k(&[&[v, v, v], &[v, v, v], &[v, v, v]])
        }
        "gaussian-blur" => {
            let s = 1.0 / 16.0;
            k(&[&[s, 2.0 * s, s], &[2.0 * s, 4.0 * s, 2.0 * s], &[s, 2.0 * s, s]])
        }
        _ => None,
    }
}

fn parse_number(token: &str) -> Option<f32> {
    let v = match token.split_once('/') {
        Some((a, b)) => a.trim().parse::<f32>().ok()? / b.trim().parse::<f32>().ok()?,
        None => token.parse::<f32>().ok()?,
    };
    v.is_finite().then_some(v)
}

/// Parses an inline kernel: rows separated by ';', values by ',' (spaces allowed; a value may
/// be a fraction such as 1/9). Every row must have the same number of values.
pub fn parse_kernel(text: &str) -> Result<Kernel> {
    let bad = |detail: String| Error::invalid("--kernel", format!("{text:?}: {detail}"));
    let rows: Vec<&str> = text.trim().trim_end_matches(';').split(';').collect();
    let mut values = Vec::new();
    let mut width = 0;
    for (r, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = row.split(',').map(str::trim).collect();
        if cells.iter().all(|c| c.is_empty()) {
            return Err(bad(format!("row {} is empty (rows are separated by ';', values by ',')", r + 1)));
        }
        for (c, cell) in cells.iter().enumerate() {
            let v = parse_number(cell).ok_or_else(|| bad(format!("row {}, value {}: {cell:?} is not a finite number", r + 1, c + 1)))?;
            values.push(v);
        }
        if r == 0 {
            width = cells.len();
        } else if cells.len() != width {
            return Err(bad(format!("row {} has {} values but row 1 has {width}: a kernel must be rectangular", r + 1, cells.len())));
        }
    }
    Ok(Kernel { name: "inline".into(), height: rows.len(), width, values })
}

/// A kernel from a name ("sobel-x") or inline text ("1,0,-1;2,0,-2;1,0,-1").
pub fn kernel_from_arg(arg: &str) -> Result<Kernel> {
    if let Some(k) = named_kernel(arg.trim()) {
        return Ok(k);
    }
    let looks_inline = arg.contains([',', ';']) || parse_number(arg.trim()).is_some();
    if looks_inline {
        let mut k = parse_kernel(arg)?;
        k.name = format!("inline {}x{}", k.height, k.width);
        return Ok(k);
    }
    let names: Vec<&str> = KERNEL_NAMES.iter().map(|(n, _)| *n).collect();
    Err(Error::invalid(
        "--kernel",
        format!("unknown kernel {arg:?}: use one of {} or inline rows such as \"1,1,1;0,0,0;-1,-1,-1\"", names.join(", ")),
    ))
}

/// How responses become pixel values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mapping {
    /// 128 + v * 127 / max_abs (zero is mid-grey).
    Signed { max_abs: f32 },
    /// v clamped to 0..255.
    Clamped,
}

impl Mapping {
    pub fn describe(&self) -> String {
        match *self {
            Mapping::Signed { max_abs } => format!("signed: pixel = 128 + v * 127 / {max_abs} (max |v|), zero is mid-grey"),
            Mapping::Clamped => "clamped: pixel = v, clamped to 0..255".to_string(),
        }
    }
}

/// Which mapping to use: `Auto` picks signed for difference kernels (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MappingChoice {
    #[default]
    Auto,
    Signed,
    Clamped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterOptions {
    pub stride: usize,
    /// Zero padding that keeps the size (`true`, "same") or none ("valid").
    pub same: bool,
    /// Filter the image's luma once instead of each colour channel.
    pub grayscale: bool,
    pub mapping: MappingChoice,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions { stride: 1, same: false, grayscale: false, mapping: MappingChoice::Auto }
    }
}

/// The filtered image: raw responses and the pixels they map to, both HWC.
#[derive(Clone, Debug)]
pub struct FilteredImage {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub responses: Vec<f32>,
    pub pixels: Vec<u8>,
    pub mapping: Mapping,
}

/// Convolves each channel of HWC `pixels` (`channels` of them) with `kernel`, with the engine's
/// `conv2d_forward` (weight [kh, kw, 1, 1]; the channels go through as a batch of one-channel
/// images), and maps the responses to pixels.
pub fn filter_pixels(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    kernel: &Kernel,
    opts: &FilterOptions,
) -> Result<FilteredImage> {
    if channels == 0 || pixels.len() != height * width * channels {
        return Err(Error::invalid("filter", format!("{} bytes for a {height}x{width}x{channels} image", pixels.len())));
    }
    if kernel.values.len() != kernel.height * kernel.width || kernel.values.is_empty() {
        return Err(Error::invalid(
            "filter",
            format!("kernel {}: {} values for {}x{}", kernel.name, kernel.values.len(), kernel.height, kernel.width),
        ));
    }
    if opts.stride == 0 {
        return Err(Error::invalid("--stride", "the stride must be at least 1"));
    }
    // Planes: [channels, H, W, 1].
    let mut planes = vec![0.0f32; pixels.len()];
    for (i, &p) in pixels.iter().enumerate() {
        let (pix, c) = (i / channels, i % channels);
        planes[c * height * width + pix] = f32::from(p);
    }
    let x = Tensor::from_vec(&[channels, height, width, 1], planes)?;
    let w = Tensor::from_vec(&[kernel.height, kernel.width, 1, 1], kernel.values.clone())?;
    let b = Tensor::zeros(&[1]);
    let padding = if opts.same { Padding::Same } else { Padding::Valid };
    let window = Window::new(kernel.height, kernel.width, opts.stride, opts.stride, padding);
    let y = conv2d_forward(&x, &w, &b, &window, false).map_err(|e| match e {
        Error::InvalidConfig { detail, .. } => Error::invalid(
            "filter",
            format!("a {}x{} kernel does not fit a {height}x{width} image ({detail})", kernel.height, kernel.width),
        ),
        other => other,
    })?;
    let (_, oh, ow, _) = y.dims4("filter")?;
    let mut responses = vec![0.0f32; oh * ow * channels];
    for (i, &v) in y.data().iter().enumerate() {
        let (c, pix) = (i / (oh * ow), i % (oh * ow));
        responses[pix * channels + c] = v;
    }
    let signed = match opts.mapping {
        MappingChoice::Auto => kernel.is_signed(),
        MappingChoice::Signed => true,
        MappingChoice::Clamped => false,
    };
    let (pixels, mapping) = if signed {
        let max_abs = responses.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let px = responses
            .iter()
            .map(|&v| if max_abs > 0.0 { (128.0 + v * 127.0 / max_abs).round().clamp(0.0, 255.0) as u8 } else { 128 })
            .collect();
        (px, Mapping::Signed { max_abs })
    } else {
        (responses.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8).collect(), Mapping::Clamped)
    };
    Ok(FilteredImage { height: oh, width: ow, channels, responses, pixels, mapping })
}

/// Loads the image at `input` at its own size (RGB, or luma with `grayscale`; an RGB image whose
/// pixels are all grey is filtered once), filters it and writes the result as a PNG to `output`.
pub fn filter_image_file(input: &Path, output: &Path, kernel: &Kernel, opts: &FilterOptions) -> Result<FilteredImage> {
    let mut channels = if opts.grayscale { 1 } else { 3 };
    let img = read_image(input, None, channels)?;
    let (h, w, mut pixels) = (img.height, img.width, img.pixels);
    if channels == 3 && pixels.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]) {
        pixels = pixels.chunks_exact(3).map(|p| p[0]).collect();
        channels = 1;
    }
    let out = filter_pixels(&pixels, h, w, channels, kernel, opts)?;
    let rgb: Vec<u8> = if out.channels == 3 { out.pixels.clone() } else { out.pixels.iter().flat_map(|&p| [p, p, p]).collect() };
    super::write_png(output, &rgb, out.width as u32, out.height as u32)?;
    Ok(out)
}
