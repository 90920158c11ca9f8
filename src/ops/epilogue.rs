//! What a convolution may apply to its output values in the same pass, after its bias (and
//! ReLU), where evaluation mode runs the layers after it as one (`Layer::forward_eval_fused`):
//! an evaluation batch norm's per-channel affine map, then an activation.
//!
//! ```text
//!   y = act((x - m) a + b)     act: identity, ReLU or GELU;  the map left out: y = act(x)
//! ```
//!
//! Each value is computed by the same operations, in the same order, as the layers one by one
//! (`ops::batch_norm`'s evaluation pass, `ops::gelu`'s slice kernel), so the bits are theirs;
//! only the passes over memory between them are gone. The kernel runs on a block of output the
//! convolution has just written, while it is in cache.

use super::gelu::gelu_value;
use super::simd::simd_dispatch;

/// The per-channel affine map of a normalisation, y = (x - m) a + b. Written with the
/// subtraction first (not as x a + (b - m a)): x - m is exact for x near m, so a large mean
/// with a small spread keeps its precision.
#[derive(Clone, Copy, Debug)]
pub struct ChannelAffine<'a> {
    pub m: &'a [f32],
    pub a: &'a [f32],
    pub b: &'a [f32],
}

impl ChannelAffine<'_> {
    #[inline(always)]
    pub fn at(self, ch: usize, x: f32) -> f32 {
        (x - self.m[ch]) * self.a[ch] + self.b[ch]
    }

    /// The map cut to its first `c` channels (the slices' lengths then tell the compiler the
    /// bounds of a loop over them).
    #[inline(always)]
    pub fn first(self, c: usize) -> Self {
        ChannelAffine { m: &self.m[..c], a: &self.a[..c], b: &self.b[..c] }
    }
}

/// The activation that ends an epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Identity,
    /// max(0, v); a NaN stays NaN, as `ops::activation`'s ReLU.
    Relu,
    /// The exact GELU, as `ops::gelu`'s slice kernel computes it.
    Gelu,
}

/// An epilogue: the map (if any), then the activation, on every value of an output whose last
/// axis is the channels.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub norm: Option<ChannelAffine<'a>>,
    pub activation: Activation,
}

impl<'a> Epilogue<'a> {
    /// Nothing: the output as the convolution left it.
    pub const NONE: Epilogue<'static> = Epilogue { norm: None, activation: Activation::Identity };

    /// The activation alone.
    pub fn activation(activation: Activation) -> Epilogue<'a> {
        Epilogue { norm: None, activation }
    }

    /// Whether it leaves every value as it is.
    pub fn is_none(&self) -> bool {
        self.norm.is_none() && self.activation == Activation::Identity
    }

    /// Applies it in place to `y`, whole pixels of `channels` values each (the map's length
    /// where there is one).
    pub fn apply(&self, y: &mut [f32], channels: usize) {
        if self.is_none() {
            return;
        }
        debug_assert!(self.norm.is_none_or(|f| f.a.len() == channels), "epilogue: the map's channels");
        debug_assert_eq!(y.len() % channels.max(1), 0, "epilogue: whole pixels");
        apply_in_place(y, *self, channels);
    }
}

simd_dispatch! {
    avx512:
    /// y = act((y - m) a + b) per channel, in place (the map left out where there is none).
    fn apply_in_place => apply_in_place_plain(y: &mut [f32], epilogue: Epilogue, channels: usize)
}

#[inline(always)]
fn apply_in_place_plain(y: &mut [f32], epilogue: Epilogue, channels: usize) {
    match epilogue.activation {
        Activation::Identity => map_then(y, epilogue.norm, channels, |v| v),
        Activation::Relu => map_then(y, epilogue.norm, channels, |v| if v < 0.0 { 0.0 } else { v }),
        Activation::Gelu => map_then(y, epilogue.norm, channels, gelu_value),
    }
}

/// The map (if any), then `act`, on every value: one loop per case, on blocks of `LANES`
/// values (fixed-size arrays: in place, a loop over a slice indexed by channel stayed scalar).
#[inline(always)]
fn map_then(y: &mut [f32], norm: Option<ChannelAffine>, channels: usize, act: impl Fn(f32) -> f32) {
    const LANES: usize = 16;
    match norm {
        None => {
            let (blocks, tail) = y.as_chunks_mut::<LANES>();
            for block in blocks {
                block.iter_mut().for_each(|v| *v = act(*v));
            }
            tail.iter_mut().for_each(|v| *v = act(*v));
        }
        Some(f) => {
            let f = f.first(channels);
            let (m_blocks, _) = f.m.as_chunks::<LANES>();
            let (a_blocks, _) = f.a.as_chunks::<LANES>();
            let (b_blocks, _) = f.b.as_chunks::<LANES>();
            let whole = m_blocks.len() * LANES;
            for pixel in y.chunks_exact_mut(channels) {
                let (blocks, tail) = pixel.as_chunks_mut::<LANES>();
                for (((block, m), a), b) in blocks.iter_mut().zip(m_blocks).zip(a_blocks).zip(b_blocks) {
                    for (l, v) in block.iter_mut().enumerate() {
                        *v = act(ChannelAffine { m, a, b }.at(l, *v));
                    }
                }
                for (ch, v) in tail.iter_mut().enumerate() {
                    *v = act(f.at(whole + ch, *v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case against the value computed by hand from the formula (GELU by the reference
    /// `gelu`, within the slice kernel's stated error).
    #[test]
    fn each_case_matches_the_formula() {
        let (m, a, b) = ([1.0, -2.0], [0.5, 4.0], [0.25, -1.0]);
        let norm = ChannelAffine { m: &m, a: &a, b: &b };
        let x = [3.0f32, -1.5, -7.0, f32::NAN];
        // (3 - 1) 0.5 + 0.25 = 1.25; (-1.5 + 2) 4 - 1 = 1; (-7 - 1) 0.5 + 0.25 = -3.75.
        let cases: [(Epilogue, [f32; 3]); 5] = [
            (Epilogue { norm: Some(norm), activation: Activation::Identity }, [1.25, 1.0, -3.75]),
            (Epilogue { norm: Some(norm), activation: Activation::Relu }, [1.25, 1.0, 0.0]),
            (Epilogue::activation(Activation::Relu), [3.0, 0.0, 0.0]),
            (Epilogue { norm: Some(norm), activation: Activation::Gelu }, [1.25, 1.0, -3.75].map(super::super::gelu::gelu)),
            (Epilogue::activation(Activation::Gelu), [3.0, -1.5, -7.0].map(super::super::gelu::gelu)),
        ];
        for (epilogue, want) in cases {
            let mut y = x;
            epilogue.apply(&mut y, 2);
            for (got, want) in y[..3].iter().zip(want) {
                assert!((got - want).abs() <= 3e-7 * want.abs().max(1.0), "{epilogue:?}: {got} vs {want}");
            }
            assert!(y[3].is_nan(), "{epilogue:?}: a NaN stays NaN");
        }
        // -0 is not below 0: ReLU keeps its sign bit, as `ops::activation`'s and batch norm's
        // do (the bits are the layers').
        let mut y = [-0.0f32, 2.0];
        Epilogue::activation(Activation::Relu).apply(&mut y, 2);
        assert_eq!(y.map(f32::to_bits), [(-0.0f32).to_bits(), 2.0f32.to_bits()]);
        let mut y = x;
        Epilogue::NONE.apply(&mut y, 2);
        assert_eq!(y[..3], x[..3]);
        assert!(Epilogue::NONE.is_none() && !Epilogue::activation(Activation::Relu).is_none());
        assert!(!Epilogue { norm: Some(norm), activation: Activation::Identity }.is_none());
    }
}
