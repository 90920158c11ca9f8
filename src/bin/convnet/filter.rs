//! `convnet filter`: one hand-written kernel applied to an image with the engine's convolution.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

use convnet::viz::filter_image::{filter_image_file, kernel_from_arg, FilterOptions, Mapping, MappingChoice};

const LONG_ABOUT: &str = "\
Slide one small kernel over an image, the first example of every CNN tutorial, with the same
convolution the networks use (conv2d_forward, weight [kh, kw, 1, 1]). Each output pixel is the sum
of the image patch under the kernel times the kernel's coefficients (no flipping, as in every CNN
library). A colour image is filtered channel by channel with the same kernel (a colour result);
--grayscale filters its luma once. An image whose pixels are all grey is filtered once.

Named kernels:
  edge-horizontal  [[1,1,1],[0,0,0],[-1,-1,-1]]   horizontal edges (light above dark: positive)
  edge-vertical    [[1,0,-1],[1,0,-1],[1,0,-1]]   vertical edges (light left of dark: positive)
  sobel-x          [[-1,0,1],[-2,0,2],[-1,0,1]]   brightness increasing to the right
  sobel-y          [[-1,-2,-1],[0,0,0],[1,2,1]]   brightness increasing downwards
  laplacian        [[0,1,0],[1,-4,1],[0,1,0]]     spots and outlines in every direction
  sharpen          [[0,-1,0],[-1,5,-1],[0,-1,0]]  the image plus its outlines
  box-blur         3x3 of 1/9                     the mean of each 3x3 patch
  gaussian-blur    [[1,2,1],[2,4,2],[1,2,1]]/16   a softer blur
Or inline: rows separated by ';', values by ',', any rectangular size, fractions allowed:
  --kernel \"1,1,1;0,0,0;-1,-1,-1\"    --kernel \"1/9,1/9,1/9;1/9,1/9,1/9;1/9,1/9,1/9\"

How responses become pixels (--map auto picks by the kernel):
  signed   kernels that take differences (some coefficient negative, coefficients summing to 0
           or less: edges, Sobel, Laplacian): pixel = 128 + v * 127 / max|v|, max|v| taken over
           the whole picture (all channels). Zero response is mid-grey, positive lighter,
           negative darker; the strongest response in the picture is white or black.
  clamped  kernels that keep the brightness (coefficients summing to more than 0: blurs,
           sharpen): pixel = v, clamped to 0..255.

Output size: valid (the default) keeps only positions where the kernel fits inside the
image, floor((n - k) / stride) + 1 pixels a side; same pads the image with zeros to keep
ceil(n / stride), which makes kernels that do not sum to zero respond along the border.

Example: convnet filter --kernel sobel-x photo.png edges.png";

#[derive(Clone, Copy, ValueEnum)]
enum PaddingArg {
    Valid,
    Same,
}

#[derive(Clone, Copy, ValueEnum)]
enum MapArg {
    Auto,
    Signed,
    Clamped,
}

/// Apply a hand-written kernel (edges, Sobel, blur, sharpen, or your own) to an image.
#[derive(Args)]
#[command(long_about = LONG_ABOUT)]
pub struct FilterArgs {
    /// A named kernel (edge-horizontal, edge-vertical, sobel-x, sobel-y, laplacian, sharpen,
    /// box-blur, gaussian-blur) or inline rows such as "1,1,1;0,0,0;-1,-1,-1".
    #[arg(long, value_name = "NAME|ROWS")]
    kernel: String,
    /// The image to filter (PNG or JPEG).
    image: PathBuf,
    /// The PNG to write.
    #[arg(value_name = "OUT.png")]
    out: PathBuf,
    /// Step between kernel positions, in pixels.
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// valid: no padding (smaller output); same: zero padding, output ceil(size / stride).
    #[arg(long, value_enum, default_value = "valid")]
    padding: PaddingArg,
    /// Filter the image's luma once instead of each colour channel.
    #[arg(long)]
    grayscale: bool,
    /// How responses become pixels: auto (signed for difference kernels, else clamped),
    /// signed (128 + v * 127 / max|v|), clamped (v clamped to 0..255).
    #[arg(long, value_enum, default_value = "auto")]
    map: MapArg,
}

pub fn run(args: FilterArgs) -> convnet::Result<()> {
    let kernel = kernel_from_arg(&args.kernel)?;
    let opts = FilterOptions {
        stride: args.stride,
        same: matches!(args.padding, PaddingArg::Same),
        grayscale: args.grayscale,
        mapping: match args.map {
            MapArg::Auto => MappingChoice::Auto,
            MapArg::Signed => MappingChoice::Signed,
            MapArg::Clamped => MappingChoice::Clamped,
        },
    };
    let out = filter_image_file(&args.image, &args.out, &kernel, &opts)?;
    println!("kernel {} ({}x{}, coefficients sum to {}):", kernel.name, kernel.height, kernel.width, kernel.sum());
    for line in kernel.rows_text().lines() {
        println!("  {line}");
    }
    let (lo, hi) = out.responses.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let how = if out.channels == 3 { "each of 3 channels" } else { "one grey channel" };
    println!(
        "output {}x{} ({how}, {} padding, stride {}); responses {lo} .. {hi}",
        out.width,
        out.height,
        if opts.same { "same" } else { "valid" },
        opts.stride
    );
    let mapping = out.mapping.describe();
    println!("mapping {mapping}");
    if let Mapping::Clamped = out.mapping {
        if lo < 0.0 || hi > 255.0 {
            println!("note: responses outside 0..255 were clipped; --map signed shows them all");
        }
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
