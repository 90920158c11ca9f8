//! What a distributed run checks before its first step: every rank trains the same config on
//! the same data from the same weights (hashes compared across the ranks), and every batch of
//! an epoch can be shared among them (`dist::share_of`).

use std::hash::{Hash, Hasher};

use crate::config::Config;
use crate::data::Dataset;
use crate::dist::{share_of, Group};
use crate::error::{Error, Result};
use crate::model::Network;

/// A hasher with fixed keys (the standard library's SipHash): the same on every machine and
/// build.
fn hasher() -> impl Hasher {
    #[allow(deprecated)]
    std::hash::SipHasher::new()
}

/// The run's settings as they matter to the result: the config without where the data lives
/// (hosts may keep it in different folders; the data's own hash covers its content).
pub fn config_hash(cfg: &Config) -> u64 {
    let mut cfg = cfg.clone();
    cfg.run.data.path = None;
    let mut h = hasher();
    cfg.to_toml().hash(&mut h);
    h.finish()
}

pub fn data_hash(train: &Dataset) -> u64 {
    let mut h = hasher();
    (&train.images, &train.labels, train.height, train.width, train.channels).hash(&mut h);
    h.finish()
}

/// Every parameter's name and bits, and the optimiser's step count.
pub fn weights_hash(net: &Network, optimizer_steps: u64) -> u64 {
    let mut h = hasher();
    for p in net.params() {
        p.name.hash(&mut h);
        p.value.data().iter().for_each(|v| v.to_bits().hash(&mut h));
    }
    optimizer_steps.hash(&mut h);
    h.finish()
}

/// Refuses the run, on every rank alike, unless all ranks agree on each of `checks` (what, this
/// rank's hash) and every batch of an epoch of `examples` in batches of `batch` can be shared.
/// Returns the ranks' host names, in rank order.
pub fn check_ranks_agree(group: &Group, checks: &[(&str, u64)], examples: usize, batch: usize, file: &str) -> Result<Vec<String>> {
    let hosts = all_hosts(group);
    for &(what, mine) in checks {
        let all = group.all_values(mine);
        if let Some(rank) = all.iter().position(|&h| h != all[0]) {
            return Err(Error::Config {
                file: file.into(),
                detail: format!(
                    "the ranks of this distributed run disagree: rank {rank} (on {}) has a different {what} from rank 0 \
                     (on {}); every rank must train the same config on the same data",
                    hosts[rank], hosts[0]
                ),
            });
        }
    }
    let last = examples - (examples.div_ceil(batch) - 1) * batch;
    for size in [batch.min(examples), last] {
        share_of(size, group.rank(), group.size()).map_err(|e| Error::Config {
            file: file.into(),
            detail: format!("batch size {batch} over {examples} training examples: {e}"),
        })?;
    }
    Ok(hosts)
}

/// Every rank's host name, in rank order (up to 255 bytes each).
fn all_hosts(group: &Group) -> Vec<String> {
    const WORDS: usize = 32;
    (0..group.size())
        .map(|root| {
            let mut words = [0u64; WORDS];
            if root == group.rank() {
                let name = group.host();
                let bytes = &name.as_bytes()[..name.len().min(WORDS * 8 - 1)];
                let mut padded = [0u8; WORDS * 8];
                padded[..bytes.len()].copy_from_slice(bytes);
                for (w, b) in words.iter_mut().zip(padded.chunks_exact(8)) {
                    *w = u64::from_le_bytes(b.try_into().expect("8 bytes"));
                }
            }
            group.broadcast(root, &mut words);
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take_while(|&b| b != 0).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}
