//! The checkpoint loader: safetensors bytes to Checkpoint (metadata, config, normalisation,
//! tensors), then the network with its weights and the optimiser state. Any bytes must give a
//! checkpoint or an error, never a panic (checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = checks::checkpoint(data);
});
