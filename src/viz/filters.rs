//! The first convolution's kernels as pictures: what patterns the first layer looks for.
//!
//! The weight is [kh, kw, C_in, C_out] (HWIO). Each filter (one output channel) is scaled to
//! its own range: its smallest weight is black, its largest white, over all its input channels
//! together (so an RGB filter keeps the balance between its colours). With C_in = 3 a filter
//! is one RGB tile (input channels read as red, green, blue); otherwise each input channel of
//! each filter is its own grayscale tile, one row per filter (nothing is averaged away).

use std::path::Path;

use super::grid::{scale_for, write_grid_png, GridImage, GridSection, Tile};
use super::{min_max, short_num, to_u8_range};
use crate::error::{Error, Result};
use crate::model::Network;
use crate::tensor::Tensor;

/// The label ("layer 0 (conv2d + relu)") and weight of the first convolution of `net`, if any.
pub fn first_conv_weight(net: &Network) -> Option<(String, Tensor)> {
    let conv = net.layers().iter().find(|l| l.kind() == "conv2d")?;
    let weight = conv.params().into_iter().find(|p| p.role() == "weight")?;
    Some((conv.label().to_string(), weight.value.clone()))
}

/// The tiles of a conv weight [kh, kw, C_in, C_out] and the number of columns to lay them out
/// in (0: as many as fit).
pub fn filter_tiles(weight: &Tensor) -> Result<(Vec<Tile>, usize)> {
    let [kh, kw, c_in, c_out] = weight.shape()[..] else {
        return Err(Error::shape("filters", "a conv weight [kh, kw, C_in, C_out]", format!("{:?}", weight.shape())));
    };
    let w = weight.data();
    // w[ki, kj, c, o] is at ((ki * kw + kj) * c_in + c) * c_out + o.
    let at = |ki: usize, kj: usize, c: usize, o: usize| w[((ki * kw + kj) * c_in + c) * c_out + o];
    let mut tiles = Vec::new();
    for o in 0..c_out {
        let values: Vec<f32> = (0..kh * kw * c_in).map(|i| at(i / (kw * c_in), (i / c_in) % kw, i % c_in, o)).collect();
        let (lo, hi) = min_max(values.iter().copied());
        let pixels = to_u8_range(values.iter().copied(), lo, hi);
        if c_in == 1 || c_in == 3 {
            tiles.push(Tile::new(kw, kh, c_in, pixels, o.to_string())?);
        } else {
            for c in 0..c_in {
                let plane: Vec<u8> = pixels.iter().skip(c).step_by(c_in).copied().collect();
                tiles.push(Tile::new(kw, kh, 1, plane, format!("f{o} c{c}"))?);
            }
        }
    }
    let columns = if c_in == 1 || c_in == 3 { 0 } else { c_in };
    Ok((tiles, columns))
}

/// Draws every kernel of a conv weight [kh, kw, C_in, C_out] into one labelled PNG.
pub fn write_filters_png(weight: &Tensor, title: &str, out: &Path) -> Result<()> {
    let (tiles, columns) = filter_tiles(weight)?;
    let [kh, kw, c_in, c_out] = weight.shape()[..] else { unreachable!("checked by filter_tiles") };
    let (lo, hi) = min_max(weight.data().iter().copied());
    let layout = match c_in {
        1 => "one grayscale tile per filter".to_string(),
        3 => "one RGB tile per filter (input channels 0, 1, 2 shown as red, green, blue)".to_string(),
        _ => format!("one row per filter, one grayscale tile per input channel ({c_in} a row)"),
    };
    let grid = GridImage {
        title: title.to_string(),
        notes: vec![
            format!("weight [{kh}, {kw}, {c_in}, {c_out}] (kernel height, width, input channels, filters): {layout}"),
            format!(
                "each filter scaled to its own range: its smallest weight black, its largest white (all weights: {} .. {})",
                short_num(lo),
                short_num(hi)
            ),
        ],
        sections: vec![GridSection {
            heading: format!("{c_out} filters of {kh}x{kw}, labelled by output channel"),
            tiles,
            scale: scale_for(kh.max(kw), 48),
            columns,
        }],
        max_width: 900,
    };
    write_grid_png(&grid, out)
}
