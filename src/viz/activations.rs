//! What each conv and pool layer outputs for one image: every channel of its output [H, W, C]
//! as a grayscale tile, one labelled section per layer, the input image first.
//!
//! Values map to grey levels linearly over a range that always includes 0 (after a relu: 0 is
//! black), either per channel (each channel stretched to its own largest value, to see the
//! pattern of every channel, weak ones too) or per layer (one range for all channels of the
//! layer, so strong, weak and dead channels can be told apart). An all-zero (dead) channel is
//! black either way.

use std::path::Path;

use super::grid::{scale_for, write_grid_png, GridImage, GridSection, Tile};
use super::{min_max, short_num, to_u8_range};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// How activations map to grey levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationScale {
    /// Each channel stretched to its own range.
    Channel,
    /// One range for all channels of a layer.
    Layer,
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
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let pixels = if hi > lo { to_u8_range(plane, lo, hi) } else { vec![0; h * w] };
            Tile::new(w, h, 1, pixels, ch.to_string())
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
        ActivationScale::Channel => {
            "grey levels per channel: 0 (or the channel's most negative value) is black, the channel's largest value white"
        }
        ActivationScale::Layer => "grey levels per layer: 0 (or the layer's most negative value) is black, the layer's largest value white",
    };
    let mut all_notes = notes.to_vec();
    all_notes.push(format!("{mapping}; tiles labelled by channel"));
    let grid = GridImage { title: title.to_string(), notes: all_notes, sections, max_width: 1100 };
    write_grid_png(&grid, out)
}
