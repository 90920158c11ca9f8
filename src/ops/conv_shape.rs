//! The shapes of one convolution, checked against each other once: the batch, the window
//! resolved on the input (output size, padding) and the channels.
//! ```text
//!   x [N, H, W, C_in], w [kh, kw, C_in, C_out] (HWIO), b [C_out] -> y [N, oh, ow, C_out]
//! ```

use super::window::{Geometry, Window};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Images in the batch (N).
    pub batch: usize,
    pub geometry: Geometry,
    pub c_in: usize,
    pub c_out: usize,
}

impl ConvShape {
    /// Checks the shapes of input `x`, weight `w` and bias `b` (if given) against each other and
    /// resolves `window` on the input; errors name the mismatch.
    pub fn of(x: &[usize], w: &[usize], b: Option<&[usize]>, window: &Window) -> Result<ConvShape> {
        let op = "conv2d";
        let [batch, ih, iw, c_in] = x[..] else {
            return Err(Error::shape(op, "input of rank 4 [N, H, W, C_in]", format!("{x:?}")));
        };
        let [kh, kw, wc_in, c_out] = w[..] else {
            return Err(Error::shape(op, "weight of rank 4 [kh, kw, C_in, C_out]", format!("{w:?}")));
        };
        if (kh, kw) != (window.kh, window.kw) {
            return Err(Error::shape(op, format!("weight kernel {}x{}", window.kh, window.kw), format!("{kh}x{kw}")));
        }
        if wc_in != c_in {
            return Err(Error::invalid(op, format!("channel mismatch: input {x:?} has {c_in} channels but weight {w:?} expects {wc_in}")));
        }
        if let Some(b) = b {
            if b != [c_out] {
                return Err(Error::shape(op, format!("bias [{c_out}]"), format!("{b:?}")));
            }
        }
        let geometry = Geometry::new(op, ih, iw, window)?;
        Ok(ConvShape { batch, geometry, c_in, c_out })
    }

    /// [N, oh, ow, C_out].
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.geometry.oh, self.geometry.ow, self.c_out]
    }

    /// Values of one input image: H * W * C_in.
    pub fn input_len(&self) -> usize {
        self.geometry.ih * self.geometry.iw * self.c_in
    }

    /// Values of one output image: oh * ow * C_out.
    pub fn output_len(&self) -> usize {
        self.pixels() * self.c_out
    }

    /// Output pixels of one image: oh * ow (the rows of its column matrix).
    pub fn pixels(&self) -> usize {
        self.geometry.oh * self.geometry.ow
    }

    /// Values of one patch: kh * kw * C_in (the columns of the column matrix).
    pub fn patch_len(&self) -> usize {
        self.geometry.kh * self.geometry.kw * self.c_in
    }
}
