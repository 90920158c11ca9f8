//! The precision of the products: float32 everywhere, or bfloat16 inputs with float32
//! accumulation in the convolutions' and dense layers' GEMMs (forward, dX and dW), as PyTorch's
//! `torch.autocast("cpu", dtype=torch.bfloat16)` does. Weights, optimiser state, batch-norm
//! statistics, the loss and every elementwise layer stay float32 ("master weights"): only the
//! two operands of each product are rounded to bfloat16 (`ops::bf16`) on their way into the
//! GEMM (`ops::gemm_bf16`). The convolutions' algorithms in bf16 come in two families
//! ([`Bf16Convs`]), picked by the CPU for plain "bf16" or named ("bf16-tiles", "bf16-winograd").

use serde::{Deserialize, Serialize};
use std::sync::Once;

use crate::error::{Error, Result};
use crate::ops::gemm_bf16::Chain;
use crate::ops::simd::{detected_simd_level, simd_level, SimdLevel};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Precision {
    /// float32 products (the default).
    #[default]
    #[serde(rename = "f32")]
    F32,
    /// bfloat16 inputs, float32 accumulation, the convolutions by the family made for this CPU
    /// ([`Bf16Convs::for_this_cpu`]).
    #[serde(rename = "bf16")]
    Bf16,
    /// bf16 with the convolutions by the tiles' family on every CPU ([`Bf16Convs::Tiles`]).
    #[serde(rename = "bf16-tiles")]
    Bf16Tiles,
    /// bf16 with the convolutions by float32's algorithms on every CPU ([`Bf16Convs::Winograd`]).
    #[serde(rename = "bf16-winograd")]
    Bf16Winograd,
}

/// The algorithms of bf16's convolutions: a family gives the same bits on every CPU (the
/// emulation runs both), the two families different ones (other products, in another order).
/// Which is faster depends on the bf16 hardware: on AMX the products are cheap and the tiles'
/// direct convolution, with no transform, wins; with vector dot products (AVX512-BF16 alone) a
/// product costs at best half of a float32 one, and Winograd's 4x fewer win (docs/precision.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bf16Convs {
    /// Stride-1 convolutions of 16 input channels or more on AMX-shaped tiles, y, dX and dW
    /// (`ops::conv_tiles`, `ops::conv_tiles_dw`), Winograd where their outputs are 8x8 or
    /// smaller; float32's algorithms for the rest.
    Tiles,
    /// float32's algorithms (Winograd, im2col, the direct kernel) with bf16 products on
    /// VDPBF16PS's own chain; dW by im2col, or by float32's Winograd of the inputs rounded to
    /// bf16 where float32 takes Winograd (bf16 products there would let its output transform
    /// amplify bf16's rounding, `ops::conv2d`).
    Winograd,
}

impl Bf16Convs {
    /// The family for the CPU this process runs on: the tiles where it has AMX, else float32's
    /// algorithms. Read from the CPU itself, not from the SIMD level in force, so that
    /// `CONVNET_SIMD` and the tests' level switches compute the same bits as the hardware.
    pub fn for_this_cpu() -> Bf16Convs {
        if detected_simd_level() >= SimdLevel::Amx {
            Bf16Convs::Tiles
        } else {
            Bf16Convs::Winograd
        }
    }

    /// The chain every bf16 product of the family follows (`ops::gemm_bf16`): the one its
    /// hardware computes natively, TDPBF16PS's for the tiles, VDPBF16PS's for float32's
    /// algorithms.
    pub fn chain(self) -> Chain {
        match self {
            Bf16Convs::Tiles => Chain::Tiles,
            Bf16Convs::Winograd => Chain::Dot,
        }
    }

    /// "tiles" or "winograd".
    pub fn name(self) -> &'static str {
        match self {
            Bf16Convs::Tiles => "tiles",
            Bf16Convs::Winograd => "winograd",
        }
    }
}

impl Precision {
    pub const NAMES: [&'static str; 4] = ["f32", "bf16", "bf16-tiles", "bf16-winograd"];

    /// "f32", "bf16", "bf16-tiles" or "bf16-winograd", as in the config file and on the command
    /// line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Bf16Tiles => "bf16-tiles",
            Precision::Bf16Winograd => "bf16-winograd",
        }
    }

    /// The precision called `name` ("f32", "bf16", "bf16-tiles", "bf16-winograd"; also
    /// "float32", "bfloat16").
    pub fn from_name(name: &str) -> Result<Precision> {
        match name.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "bf16-tiles" => Ok(Precision::Bf16Tiles),
            "bf16-winograd" => Ok(Precision::Bf16Winograd),
            other => Err(Error::invalid("precision", format!("{other:?} is not one of {}", Precision::NAMES.join(", ")))),
        }
    }

    /// Whether the products take bf16 inputs (any of the bf16 precisions).
    pub fn is_bf16(self) -> bool {
        self != Precision::F32
    }

    /// Two operands as a product in this precision takes them: as they are in float32; in
    /// bf16 both rounded to bf16 and back (into `store`), for a float32 kernel whose products
    /// of two bf16 values are then exact (the direct kernels, Winograd's dW).
    pub(crate) fn rounded_operands<'a>(self, a: &'a [f32], b: &'a [f32], store: &'a mut (Vec<f32>, Vec<f32>)) -> (&'a [f32], &'a [f32]) {
        if !self.is_bf16() {
            return (a, b);
        }
        let (a_store, b_store) = store;
        crate::ops::bf16::round_to_bf16_into(a, a_store);
        crate::ops::bf16::round_to_bf16_into(b, b_store);
        (a_store, b_store)
    }

    /// What runs, for the user: "f32 products", or e.g. "bf16 products (convolutions by the
    /// winograd family)" with the family plain "bf16" resolves to here.
    pub fn describe(self) -> String {
        match self.bf16_convs() {
            None => format!("{self} products"),
            Some(family) => format!("{self} products (convolutions by the {} family)", family.name()),
        }
    }

    /// The algorithms of the convolutions in bf16; None in float32.
    pub fn bf16_convs(self) -> Option<Bf16Convs> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(Bf16Convs::for_this_cpu()),
            Precision::Bf16Tiles => Some(Bf16Convs::Tiles),
            Precision::Bf16Winograd => Some(Bf16Convs::Winograd),
        }
    }

    /// The chain of this precision's bf16 products (its family's, [`Bf16Convs::chain`]); None
    /// in float32.
    pub fn bf16_chain(self) -> Option<Chain> {
        self.bf16_convs().map(Bf16Convs::chain)
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        Precision::from_name(s)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether bf16 products run on bf16 hardware now (AVX512-BF16 dot products), rather than by
/// the portable emulation (same rounding, same bits, several times slower).
pub fn bf16_hardware() -> bool {
    simd_level() >= SimdLevel::Avx512Bf16
}

/// One line for the user about how `precision` will run here, or None when there is nothing to
/// say (float32, or bf16 on bf16 hardware).
pub fn emulation_notice(precision: Precision) -> Option<String> {
    (precision.is_bf16() && !bf16_hardware()).then(|| {
        format!(
            "note: precision {} is emulated on this CPU (SIMD level {}), its convolutions by the {} family: the same \
             results as bf16 hardware running that family, slower than f32; CPUs with AVX512-BF16 (Intel Cooper Lake, \
             Sapphire Rapids and later; AMD Zen 4 and later) run it fast",
            precision.name(),
            simd_level().name(),
            precision.bf16_convs().map_or("", Bf16Convs::name),
        )
    })
}

/// Prints [`emulation_notice`] on stderr, once per process.
pub fn announce(precision: Precision) {
    static ONCE: Once = Once::new();
    if let Some(notice) = emulation_notice(precision) {
        ONCE.call_once(|| eprintln!("{notice}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for p in [Precision::F32, Precision::Bf16, Precision::Bf16Tiles, Precision::Bf16Winograd] {
            assert_eq!(Precision::from_name(p.name()).unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("BFloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = Precision::from_name("f16").unwrap_err().to_string();
        assert!(err.contains("\"f16\"") && err.contains("f32, bf16, bf16-tiles, bf16-winograd"), "{err}");
        assert_eq!(Precision::default(), Precision::F32);
    }

    #[test]
    fn bf16_names_its_family_and_the_cpu_picks_it_for_plain_bf16() {
        assert_eq!(Precision::F32.bf16_convs(), None);
        assert_eq!(Precision::Bf16Tiles.bf16_convs(), Some(Bf16Convs::Tiles));
        assert_eq!(Precision::Bf16Winograd.bf16_convs(), Some(Bf16Convs::Winograd));
        let here = if detected_simd_level() == SimdLevel::Amx { Bf16Convs::Tiles } else { Bf16Convs::Winograd };
        assert_eq!(Precision::Bf16.bf16_convs(), Some(here));
        assert_eq!(Bf16Convs::for_this_cpu(), here);
        assert!(!Precision::F32.is_bf16());
        assert!([Precision::Bf16, Precision::Bf16Tiles, Precision::Bf16Winograd].iter().all(|p| p.is_bf16()));
        assert_eq!(Precision::F32.describe(), "f32 products");
        assert_eq!(Precision::Bf16Winograd.describe(), "bf16-winograd products (convolutions by the winograd family)");
        assert_eq!(Precision::Bf16.describe(), format!("bf16 products (convolutions by the {} family)", here.name()));
    }

    #[test]
    fn config_files_name_the_precisions_as_the_command_line_does() {
        #[derive(Serialize, Deserialize)]
        struct Train {
            precision: Precision,
        }
        for p in [Precision::F32, Precision::Bf16, Precision::Bf16Tiles, Precision::Bf16Winograd] {
            let text = toml::to_string(&Train { precision: p }).unwrap();
            assert_eq!(text.trim(), format!("precision = \"{}\"", p.name()));
            assert_eq!(toml::from_str::<Train>(&text).unwrap().precision, p);
        }
    }

    #[test]
    fn notice_only_for_emulated_bf16() {
        assert_eq!(emulation_notice(Precision::F32), None);
        assert_eq!(emulation_notice(Precision::Bf16).is_some(), !bf16_hardware());
        if let Some(notice) = emulation_notice(Precision::Bf16Tiles) {
            assert!(notice.contains("bf16-tiles") && notice.contains("tiles family"), "{notice}");
        }
    }
}
