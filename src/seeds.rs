//! Every seed of a run, derived from the run's one seed in one place. Each purpose mixes its own
//! odd constant into the seed, so that the generators of initialisation, shuffling, dropout and
//! augmentation never draw the same stream, and each is a function of (seed, position) alone:
//! a resumed run needs no RNG state from the checkpoint to continue bit-identically.
//!
//! The constants are part of the results: changing one changes every run's numbers.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// 2^64 / golden ratio: consecutive indexes multiplied by it land far apart in seed space.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// Mixed into the seed for the initial weights.
const INIT: u64 = 0x1A17_5EED;
/// Multiplies the layer index in a training step's dropout seeds.
const LAYER: u64 = 0xD1B5_4A32_D192_ED03;
/// Multiplies the global step in a training step's augmentation seed.
const AUGMENT: u64 = 0xA24B_AED4_963E_E407;
/// Multiplies the image index in alternating flip's first-epoch coin.
const FLIP: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// The generator of the initial weights of a network built with `seed`.
pub(crate) fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ INIT)
}

/// The generator of epoch `epoch`'s shuffle (0-based).
pub(crate) fn shuffle_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    // +1 keeps epoch 0 from reducing to the bare seed.
    ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_add(1).wrapping_mul(GOLDEN))
}

/// The generator of the augmentation of global step `step`'s batch.
pub(crate) fn augment_rng(seed: u64, step: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_add(1).wrapping_mul(AUGMENT))
}

/// The seed of the randomness (dropout) of built layer `layer` of a network in global step
/// `step`.
pub(crate) fn layer_step_seed(seed: u64, step: u64, layer: usize) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(GOLDEN) ^ (layer as u64).wrapping_add(1).wrapping_mul(LAYER)
}

/// Image `index`'s coin for alternating flip (`data::augment::alternating_flip`): whether it is
/// mirrored in the first epoch.
pub(crate) fn flip_coin(seed: u64, index: usize) -> bool {
    use rand::Rng;
    ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_add(1).wrapping_mul(FLIP)).gen()
}

/// The seed of built layer `layer` of a residual block's body, from the block's own seed.
pub(crate) fn block_layer_seed(block_seed: u64, layer: usize) -> u64 {
    block_seed ^ (layer as u64).wrapping_add(1).wrapping_mul(GOLDEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn the_derivations_are_the_ones_runs_were_trained_with() {
        // The formulas written out as they stood in each file before they moved here, so that a
        // slip in this module cannot silently change every run.
        let (seed, step, layer, epoch) = (12345u64, 678u64, 3usize, 9usize);
        assert_eq!(init_rng(seed).next_u64(), ChaCha8Rng::seed_from_u64(seed ^ 0x1A17_5EED).next_u64());
        let shuffle = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert_eq!(shuffle_rng(seed, epoch).next_u64(), ChaCha8Rng::seed_from_u64(shuffle).next_u64());
        let augment = seed ^ (step + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        assert_eq!(augment_rng(seed, step).next_u64(), ChaCha8Rng::seed_from_u64(augment).next_u64());
        let dropout = seed ^ (step + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (layer as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        assert_eq!(layer_step_seed(seed, step, layer), dropout);
        assert_eq!(block_layer_seed(seed, layer), seed ^ (layer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Each purpose draws its own stream.
        assert_ne!(init_rng(seed).next_u64(), shuffle_rng(seed, 0).next_u64());
        assert_ne!(layer_step_seed(seed, step, 0), layer_step_seed(seed, step, 1));
    }
}
