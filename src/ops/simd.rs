//! Runtime CPU-feature dispatch for plain loops.
//!
//! `simd_dispatch!` defines a function that runs a plain-Rust body compiled for AVX2 + FMA when
//! the CPU has them (8-lane vectors instead of the baseline's 4), and compiled for the baseline
//! otherwise. The body must be an `#[inline(always)]` function, so that it is compiled again
//! inside the AVX2 copy. Both copies run the same IEEE operations in the same order (Rust never
//! fuses a multiply and an add on its own), so they give the same bits.

macro_rules! simd_dispatch {
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
    (@body $plain:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                $plain($($arg),*)
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                return unsafe { avx2($($arg),*) };
            }
        }
        $plain($($arg),*)
    }};
}

pub(crate) use simd_dispatch;
