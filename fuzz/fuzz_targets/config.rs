//! The config parser: TOML text to Config (with its validation) to Network::build,
//! then one forward and backward pass on a batch of one, for models small enough to run
//! quickly. Any text must give a network or an error, never a panic or an unbounded
//! allocation.
#![no_main]

use convnet::model::{Loss, Network};
use convnet::Config;
use convnet::Tensor;
use libfuzzer_sys::fuzz_target;

/// Models above this many parameters are parsed and validated but not built: the fuzzer looks
/// for panics, and building a model of a billion parameters (within the config limits) would
/// only measure the allocator.
const MAX_BUILD_PARAMS: u64 = 2_000_000;
/// Models whose input has more values than this are built but not run.
const MAX_RUN_INPUT: usize = 1 << 14;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = Config::from_toml(text, "fuzz.toml") else { return };
    // A config that parsed must also serialise and parse back (the run folder's config.toml).
    let back = Config::from_toml(&cfg.to_toml(), "config.toml").expect("a valid config survives to_toml");
    assert_eq!(back, cfg);
    if cfg.model.param_count().is_none_or(|p| p > MAX_BUILD_PARAMS) {
        return;
    }
    let Ok(mut net) = Network::build(&cfg.model, 0) else { return };
    let [h, w, c] = cfg.model.input;
    if h * w * c > MAX_RUN_INPUT || net.flops() > 50_000_000 {
        return;
    }
    let x = Tensor::zeros(&[1, h, w, c]);
    let _ = net.predict(&x);
    let _ = net.compute_gradients(&x, &[0], Loss::default());
});
