//! The IDX reader (MNIST / Fashion-MNIST files, raw or gzip): any bytes must give an IdxArray
//! or an error, never a panic, an abort or an unbounded allocation. The whole input is read as
//! one file, then split into an images file and a labels file (checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = checks::idx(data);
});
