//! The precision of the products: float32 everywhere, or bfloat16 inputs with float32
//! accumulation in the convolutions' and dense layers' GEMMs (forward, dX and dW), as PyTorch's
//! `torch.autocast("cpu", dtype=torch.bfloat16)` does. Weights, optimiser state, batch-norm
//! statistics, the loss and every elementwise layer stay float32 ("master weights"): only the
//! two operands of each product are rounded to bfloat16 (`ops::bf16`) on their way into the
//! GEMM (`ops::gemm_bf16`).

use serde::{Deserialize, Serialize};
use std::sync::Once;

use crate::error::{Error, Result};
use crate::ops::simd::{simd_level, SimdLevel};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 products (the default).
    #[default]
    F32,
    /// bfloat16 inputs, float32 accumulation.
    Bf16,
}

impl Precision {
    pub const NAMES: [&'static str; 2] = ["f32", "bf16"];

    /// "f32" or "bf16", as in the config file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The precision called `name` ("f32", "bf16"; also "float32", "bfloat16").
    pub fn from_name(name: &str) -> Result<Precision> {
        match name.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(Error::invalid("precision", format!("{other:?} is not one of {}", Precision::NAMES.join(", ")))),
        }
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
    (precision == Precision::Bf16 && !bf16_hardware()).then(|| {
        format!(
            "note: precision bf16 is emulated on this CPU (SIMD level {}): the same results as on bf16 hardware, \
             slower than f32; CPUs with AVX512-BF16 (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later) run it fast",
            simd_level().name()
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
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(Precision::from_name(p.name()).unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("BFloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = Precision::from_name("f16").unwrap_err().to_string();
        assert!(err.contains("\"f16\"") && err.contains("f32, bf16"), "{err}");
        assert_eq!(Precision::default(), Precision::F32);
    }

    #[test]
    fn notice_only_for_emulated_bf16() {
        assert_eq!(emulation_notice(Precision::F32), None);
        assert_eq!(emulation_notice(Precision::Bf16).is_some(), !bf16_hardware());
    }
}
