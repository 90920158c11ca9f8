//! Runtime CPU-feature dispatch for plain loops, and the instruction-set level it may use.
//!
//! `simd_dispatch!` defines a function that runs a plain-Rust body compiled for AVX2 + FMA when
//! the level allows it (8-lane vectors instead of the baseline's 4), and compiled for the
//! baseline otherwise. The body must be an `#[inline(always)]` function, so that it is compiled
//! again inside the AVX2 copy. Both copies run the same IEEE operations in the same order (Rust
//! never fuses a multiply and an add on its own), so they give the same bits.
//!
//! A third level, `avx512bf16`, adds the bfloat16 dot products (VDPBF16PS) that the bf16 GEMM
//! uses (`ops::gemm_bf16`); a fourth, `amx`, its tile products (TDPBF16PS, Intel Sapphire Rapids
//! on; Linux grants the process the tile registers when the level is detected). The
//! `simd_dispatch!` kernels run their AVX2 copy at both (AVX-512 copies of them were measured
//! slower on Zen 5: docs/performance.md).
//!
//! The level is the best the CPU has, unless lowered: by the environment variable `CONVNET_SIMD`
//! (`portable`, `avx2`, `avx512bf16` or `amx`, read once at the first dispatch) or by [`set_simd_level`]. Lowering it
//! is how the tests run every copy of a kernel on one machine (tests/simd_levels.rs), and how a
//! user rules a vector path out when chasing a difference. It never rises above what the CPU
//! has. The GEMM crate dispatches on its own and is not affected.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

/// An instruction-set level of our own kernels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The baseline of the target (SSE2 on x86_64): what every CPU runs.
    Portable,
    /// AVX2 and FMA (x86_64).
    Avx2,
    /// AVX2, FMA and AVX-512 with the bfloat16 instructions (F, BW, VL, BF16): Intel Cooper Lake and
    /// Sapphire Rapids on, AMD Zen 4 on.
    Avx512Bf16,
    /// All of `Avx512Bf16` and the AMX tiles with bfloat16 products (AMX-TILE, AMX-BF16), the
    /// operating system permitting: Intel Sapphire Rapids on.
    Amx,
}

impl SimdLevel {
    const ALL: [SimdLevel; 4] = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512Bf16, SimdLevel::Amx];

    /// The name used by `CONVNET_SIMD`: "portable", "avx2", "avx512bf16", "amx".
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512Bf16 => "avx512bf16",
            SimdLevel::Amx => "amx",
        }
    }

    /// The level named `name` (as in `CONVNET_SIMD`), if there is one.
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        Self::ALL.into_iter().find(|l| l.name() == name.trim().to_ascii_lowercase())
    }
}

/// The best level this CPU supports.
pub fn detected_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512bf16") {
                if amx_bf16_usable() {
                    return SimdLevel::Amx;
                }
                return SimdLevel::Avx512Bf16;
            }
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Portable
}

/// Whether the CPU has AMX tiles with bfloat16 products (CPUID leaf 7: AMX-BF16, AMX-TILE) and
/// Linux lets this process use the tile registers (arch_prctl ARCH_REQ_XCOMP_PERM for
/// XTILEDATA, asked once; a kernel without AMX support refuses it). The permission is the
/// process's, for every thread.
#[cfg(target_arch = "x86_64")]
fn amx_bf16_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        // CPUID leaf 7 exists on every x86_64 CPU with AVX-512 (checked by the caller).
        let features = std::arch::x86_64::__cpuid_count(7, 0);
        let (amx_bf16, amx_tile) = (features.edx & (1 << 22) != 0, features.edx & (1 << 24) != 0);
        amx_bf16 && amx_tile && request_tile_data()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with this request only reads its integer arguments.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_data() -> bool {
    false
}

/// Every level this CPU can run, lowest first: the ones a test should cover.
pub fn available_simd_levels() -> Vec<SimdLevel> {
    SimdLevel::ALL.into_iter().filter(|&l| l <= detected_simd_level()).collect()
}

/// The environment variable that lowers the level for the whole process.
pub const SIMD_ENV: &str = "CONVNET_SIMD";

/// The level in force, as `SimdLevel as u8 + 1`; 0 until the first dispatch reads the CPU and
/// `CONVNET_SIMD`.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level the kernels use now: the CPU's best, or lower where `CONVNET_SIMD` or
/// [`set_simd_level`] asked for it. A `CONVNET_SIMD` that names no level, or one the CPU lacks,
/// is ignored with a warning on stderr. Inlined: the kernels ask before every call, some of
/// them once per row (as a call it was 0.7% of a ResNet bf16 training step).
#[inline]
pub fn simd_level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let level = level_from_env();
            // Another thread may have set a level meanwhile; that one wins.
            let _ = LEVEL.compare_exchange(0, level as u8 + 1, Ordering::Relaxed, Ordering::Relaxed);
            simd_level()
        }
        n => SimdLevel::ALL[n as usize - 1],
    }
}

#[cold]
fn level_from_env() -> SimdLevel {
    let best = detected_simd_level();
    let Ok(value) = std::env::var(SIMD_ENV) else { return best };
    match SimdLevel::from_name(&value) {
        Some(level) if level <= best => level,
        Some(level) => {
            eprintln!(
                "warning: {SIMD_ENV}={value}: this CPU has no {} (it has up to {}); using {}",
                level.name(),
                best.name(),
                best.name()
            );
            best
        }
        None => {
            let names: Vec<&str> = SimdLevel::ALL.iter().map(|l| l.name()).collect();
            eprintln!("warning: {SIMD_ENV}={value:?} is not a level ({}); using {}", names.join(", "), best.name());
            best
        }
    }
}

/// Makes every kernel use `level` from now on, for the whole process. Fails, changing nothing,
/// if the CPU does not have it. Meant for tests and experiments: a pass that runs while the
/// level changes may use either copy for each of its kernels.
pub fn set_simd_level(level: SimdLevel) -> Result<()> {
    let best = detected_simd_level();
    if level > best {
        return Err(Error::invalid("simd level", format!("this CPU has no {} (it has up to {})", level.name(), best.name())));
    }
    LEVEL.store(level as u8 + 1, Ordering::Relaxed);
    Ok(())
}

/// Whether the AVX2 + FMA copies may run: the level in force allows them (which implies the
/// CPU has them, so calling a `#[target_feature(enable = "avx2,fma")]` function is sound).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_allowed() -> bool {
    simd_level() >= SimdLevel::Avx2
}

/// Whether the AVX-512 bfloat16 kernels may run: the level in force allows them (so the CPU has
/// AVX-512 F, BW, VL and BF16, and calling a function with those target features is sound).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx512bf16_allowed() -> bool {
    simd_level() >= SimdLevel::Avx512Bf16
}

/// Whether the AMX kernels may run: the level in force allows them (so the CPU has AMX-BF16 and
/// the process the tile registers, and AVX512-BF16 too).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn amx_allowed() -> bool {
    simd_level() >= SimdLevel::Amx
}

/// `$vis fn $name => $plain(args)`: `$name` runs `$plain` compiled for AVX2 + FMA where the level
/// allows it, else as it is. Prefixed with `avx512:`, also a copy compiled for AVX-512 (16 floats
/// a vector) where the level allows AVX512-BF16: for the kernels bound by their arithmetic
/// (GELU, Winograd's transforms); on the memory-bound ones it measured slower
/// (docs/performance.md). `unsafe fn` the same way. Every copy is the same code, so the same
/// bits.
macro_rules! simd_dispatch {
    (avx512: $(#[$attr:meta])* $vis:vis fn $name:ident => $plain:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            $crate::ops::simd::simd_dispatch!(@avx512 $plain($($arg: $ty),*))
        }
    };
    (avx512: $(#[$attr:meta])* $vis:vis unsafe fn $name:ident => $plain:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$attr])*
        $vis unsafe fn $name($($arg: $ty),*) {
            // The caller keeps this function's own contract for every copy.
            $crate::ops::simd::simd_dispatch!(@avx512 $plain($($arg: $ty),*))
        }
    };
    ($(#[$attr:meta])* $vis:vis fn $name:ident => $plain:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            $crate::ops::simd::simd_dispatch!(@body $plain($($arg: $ty),*))
        }
    };
    ($(#[$attr:meta])* $vis:vis unsafe fn $name:ident => $plain:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$attr])*
        $vis unsafe fn $name($($arg: $ty),*) {
            $crate::ops::simd::simd_dispatch!(@body $plain($($arg: $ty),*))
        }
    };
    (@avx512 $plain:ident($($arg:ident: $ty:ty),*)) => {{
        $crate::ops::simd::simd_dispatch!(@copy "avx512f,avx512bw,avx512vl,avx2,fma", avx512bf16_allowed, $plain($($arg: $ty),*));
        $crate::ops::simd::simd_dispatch!(@body $plain($($arg: $ty),*))
    }};
    (@body $plain:ident($($arg:ident: $ty:ty),*)) => {{
        $crate::ops::simd::simd_dispatch!(@copy "avx2,fma", avx2_allowed, $plain($($arg: $ty),*));
        $plain($($arg),*)
    }};
    // Returns from the caller with `$plain` compiled for `$features` where `$allowed` holds.
    (@copy $features:literal, $allowed:ident, $plain:ident($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = $features)]
            unsafe fn copy($($arg: $ty),*) {
                $plain($($arg),*)
            }
            if $crate::ops::simd::$allowed() {
                // SAFETY: the level in force allows it, so the CPU has these features
                // (simd_level never exceeds detected_simd_level; AVX512-BF16's level implies
                // AVX-512 F, BW and VL, AVX2 and FMA).
                return unsafe { copy($($arg),*) };
            }
        }
    };
}

pub(crate) use simd_dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_round_trip_and_order() {
        for level in SimdLevel::ALL {
            assert_eq!(SimdLevel::from_name(level.name()), Some(level));
        }
        assert_eq!(SimdLevel::from_name(" AVX2 "), Some(SimdLevel::Avx2));
        assert_eq!(SimdLevel::from_name("sse9"), None);
        assert!(SimdLevel::Portable < SimdLevel::Avx2 && SimdLevel::Avx2 < SimdLevel::Avx512Bf16 && SimdLevel::Avx512Bf16 < SimdLevel::Amx);
        let levels = available_simd_levels();
        assert_eq!(levels.first(), Some(&SimdLevel::Portable));
        assert_eq!(levels.last(), Some(&detected_simd_level()));
    }
}
