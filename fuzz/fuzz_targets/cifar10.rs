//! The CIFAR-10 reader: batch files (3073-byte records) and batches.meta.txt. Any bytes must
//! give records or an error, never a panic (checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = checks::cifar10(data);
});
