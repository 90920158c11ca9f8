//! Output size and padding of a sliding window (conv or pool), with TensorFlow's semantics.
//!
//! VALID:    out = floor((in - f) / s) + 1                      (no padding)
//! explicit: out = floor((in + p_before + p_after - f) / s) + 1 (the tutorial's formula with 2p)
//! SAME:     out = ceil(in / s); the padding needed, max((out - 1) * s + f - in, 0), is split
//!           with the smaller half before (TensorFlow puts the odd pixel at the bottom/right).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    Same,
    Valid,
    /// Zero padding of `top, bottom, left, right` pixels.
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
}

impl Padding {
    /// The same padding `p` on every side.
    pub fn symmetric(p: usize) -> Padding {
        Padding::Explicit { top: p, bottom: p, left: p, right: p }
    }
}

/// Kernel size, stride and padding of a 2-D window op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub padding: Padding,
}

impl Window {
    pub fn new(kh: usize, kw: usize, sh: usize, sw: usize, padding: Padding) -> Window {
        Window { kh, kw, sh, sw, padding }
    }
}

/// A window resolved against an input size: output size and the padding before each axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub ih: usize,
    pub iw: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Geometry {
    /// Resolves `window` on an `ih x iw` input; `op` names the caller in errors.
    pub fn new(op: &str, ih: usize, iw: usize, window: &Window) -> Result<Geometry> {
        let Window { kh, kw, sh, sw, padding } = *window;
        if kh == 0 || kw == 0 {
            return Err(Error::invalid(op, format!("kernel {kh}x{kw}: kernel size must be at least 1")));
        }
        if sh == 0 || sw == 0 {
            return Err(Error::invalid(op, format!("stride ({sh}, {sw}): stride must be at least 1")));
        }
        if ih == 0 || iw == 0 {
            return Err(Error::invalid(op, format!("input {ih}x{iw}: input must not be empty")));
        }
        let (oh, pad_top) = axis(op, "height", ih, kh, sh, padding, |p| match p {
            Padding::Explicit { top, bottom, .. } => (top, bottom),
            _ => (0, 0),
        })?;
        let (ow, pad_left) = axis(op, "width", iw, kw, sw, padding, |p| match p {
            Padding::Explicit { left, right, .. } => (left, right),
            _ => (0, 0),
        })?;
        Ok(Geometry { ih, iw, oh, ow, kh, kw, sh, sw, pad_top, pad_left })
    }

    /// Input row of window row `ki` at output row `o`, or None when it falls in the padding.
    #[inline]
    pub fn in_row(&self, o: usize, ki: usize) -> Option<usize> {
        (o * self.sh + ki).checked_sub(self.pad_top).filter(|&r| r < self.ih)
    }

    /// Input column of window column `kj` at output column `o`, or None in the padding.
    #[inline]
    pub fn in_col(&self, o: usize, kj: usize) -> Option<usize> {
        (o * self.sw + kj).checked_sub(self.pad_left).filter(|&c| c < self.iw)
    }
}

/// Output size and padding-before along one axis.
fn axis(
    op: &str,
    name: &str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    explicit: impl Fn(Padding) -> (usize, usize),
) -> Result<(usize, usize)> {
    match padding {
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(input);
            Ok((out, total / 2))
        }
        Padding::Valid | Padding::Explicit { .. } => {
            let (before, after) = explicit(padding);
            let padded = input + before + after;
            if kernel > padded {
                return Err(Error::invalid(
                    op,
                    format!(
                        "kernel {name} {kernel} is larger than the padded input {name} {padded} \
                         (input {input} + padding {before} + {after})"
                    ),
                ));
            }
            Ok(((padded - kernel) / stride + 1, before))
        }
    }
}
