//! The checkpoint loader: safetensors bytes to Checkpoint (metadata, config, normalisation,
//! tensors), then the network with its weights and the optimiser state. Any bytes must give a
//! checkpoint or an error, never a panic.
#![no_main]

use std::path::Path;

use convnet::optim::Optimizer;
use convnet::train::Checkpoint;
use libfuzzer_sys::fuzz_target;

/// As in the config target: larger models are checked but not built.
const MAX_BUILD_PARAMS: u64 = 2_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(ck) = Checkpoint::from_bytes(data, Path::new("fuzz.safetensors")) else { return };
    if ck.config.model.param_count().is_none_or(|p| p > MAX_BUILD_PARAMS) {
        return;
    }
    let Ok(net) = ck.network() else { return };
    // What `train --resume` does with the rest of the file.
    let _ = ck.check_compatible(&ck.config.model);
    let Ok(mut optimizer) = Optimizer::new(ck.config.run.optimizer.clone()) else { return };
    let sizes = net.trainable_sizes();
    let _ = optimizer.load_state(ck.meta.optimizer_step, ck.optimizer_state(), &sizes);
});
