//! The ONNX importer: bytes to a model spec and weights (the protobuf reader, the graph walk),
//! then the network, a checkpoint and an export of it. Any bytes must give a model or an error,
//! never a panic (checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = checks::onnx(data);
});
