//! What each conv and pool layer outputs for one image: every channel of its output [H, W, C]
//! as a grayscale tile, one labelled section per layer, the input image first.
//!
//! Values map to grey levels either per layer (the layer's smallest output is black, its
//! largest white, for all its channels alike, so strong and weak or dead channels can be told
//! apart) or per channel (each channel stretched to its own range, to see the pattern of weak
//! channels too; a constant channel then shows as flat mid-grey).

use std::path::Path;

use super::grid::{scale_for, write_grid_png, GridImage, GridSection, Tile};
use super::{min_max, short_num, to_u8_range};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// How activations map to grey levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationScale {
    /// One range for all channels of a layer.
    Layer,
    /// Each channel stretched to its own range.
    Channel,
}

/// Whether a trace entry named "layer 3 (conv2d + relu)" is a convolution or a pooling layer.
pub fn is_conv_or_pool(name: &str) -> bool {
    ["(conv2d", "(max_pool", "(avg_pool"].iter().any(|k| name.contains(k))
}

/// The channels of the first example of a [N, H, W, C] tensor as grayscale tiles.
pub fn channel_tiles(t: &Tensor, scale: ActivationScale) -> Result<Vec<Tile>> {
    let [_, h, w, c] = t.shape()[..] else {
        return Err(Error::shape("activations", "a feature map [N, H, W, C]", format!("{:?}", t.shape())));
    };
    let data = &t.data()[..h * w * c];
    let (layer_lo, layer_hi) = min_max(data.iter().copied());
    (0..c)
        .map(|ch| {
            let plane = data.iter().skip(ch).step_by(c).copied();
            let (lo, hi) = match scale {
                ActivationScale::Layer => (layer_lo, layer_hi),
                ActivationScale::Channel => min_max(plane.clone()),
            };
            Tile::new(w, h, 1, to_u8_range(plane, lo, hi), ch.to_string())
        })
        .collect()
}

/// Draws `input` (the image as the network sees it, before normalisation) and, for every conv
/// and pool layer in `trace` (from `Network::forward_trace`), a labelled grid of its channels.
/// `notes` are extra lines under the title (e.g. the prediction).
pub fn write_activations_png(
    input: &Tile,
    trace: &[(String, Tensor)],
    title: &str,
    notes: &[String],
    scale: ActivationScale,
    out: &Path,
) -> Result<()> {
    let mut sections = vec![GridSection {
        heading: format!("input: {}x{}x{} (pixels before normalisation)", input.height, input.width, input.channels),
        tiles: vec![input.clone()],
        scale: scale_for(input.width.max(input.height), 112),
        columns: 1,
    }];
    for (name, t) in trace.iter().filter(|(n, t)| is_conv_or_pool(n) && t.shape().len() == 4) {
        let [_, h, w, c] = t.shape()[..] else { continue };
        let (lo, hi) = min_max(t.data()[..h * w * c].iter().copied());
        sections.push(GridSection {
            heading: format!("{name}: {c} channels of {h}x{w}, values {} .. {}", short_num(lo), short_num(hi)),
            tiles: channel_tiles(t, scale)?,
            scale: scale_for(h.max(w), 56),
            columns: 0,
        });
    }
    if sections.len() == 1 {
        return Err(Error::invalid("activations", "the network has no conv or pool layer to show"));
    }
    let mapping = match scale {
        ActivationScale::Layer => "grey levels per layer: the layer's smallest output is black, its largest white",
        ActivationScale::Channel => "grey levels per channel: each channel's smallest output is black, its largest white",
    };
    let mut all_notes = notes.to_vec();
    all_notes.push(format!("{mapping}; tiles labelled by channel"));
    let grid = GridImage { title: title.to_string(), notes: all_notes, sections, max_width: 1100 };
    write_grid_png(&grid, out)
}
