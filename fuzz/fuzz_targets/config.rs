//! The config parser: TOML text to Config (with its validation) to Network::build, then one
//! forward and backward pass on a batch of one, for models small enough to run quickly. Any
//! text must give a network or an error, never a panic or an unbounded allocation (checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = checks::config(data);
});
