//! Which images of a global batch each rank computes.

use std::ops::Range;

use crate::chunks::{DENSE_IMAGES_PER_CHUNK, IMAGES_PER_CHUNK};
use crate::error::{Error, Result};

/// Ranks take whole units of this many images: a multiple of every chunk a batch sum is split
/// into (`crate::chunks`), so that no chunk is cut between two ranks.
pub const IMAGES_PER_SHARE_UNIT: usize = DENSE_IMAGES_PER_CHUNK;
const _: () =
    assert!(IMAGES_PER_SHARE_UNIT.is_multiple_of(IMAGES_PER_CHUNK) && IMAGES_PER_SHARE_UNIT.is_multiple_of(DENSE_IMAGES_PER_CHUNK));

/// Rank `rank`'s images of a batch of `batch` among `ranks`: a contiguous run of whole units,
/// the units dealt out as evenly as they go (rank r starts at unit floor(r units / ranks); the
/// batch's last, partial unit goes to the last rank). Every rank needs at least one unit.
pub fn share_of(batch: usize, rank: usize, ranks: usize) -> Result<Range<usize>> {
    let units = batch.div_ceil(IMAGES_PER_SHARE_UNIT);
    if ranks == 0 || rank >= ranks {
        return Err(Error::invalid("distributed", format!("rank {rank} of {ranks}")));
    }
    if units < ranks {
        return Err(Error::invalid(
            "distributed",
            format!(
                "a batch of {batch} images cannot be shared by {ranks} ranks: each rank takes whole groups of \
                 {IMAGES_PER_SHARE_UNIT} images, so a batch needs at least {} (the last batch of an epoch too)",
                (ranks - 1) * IMAGES_PER_SHARE_UNIT + 1
            ),
        ));
    }
    let unit_start = |r: usize| r * units / ranks;
    let (start, end) = (unit_start(rank) * IMAGES_PER_SHARE_UNIT, unit_start(rank + 1) * IMAGES_PER_SHARE_UNIT);
    Ok(start..end.min(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_contiguous_whole_units_covering_the_batch() {
        for ranks in 1..=5 {
            for batch in ranks * IMAGES_PER_SHARE_UNIT - IMAGES_PER_SHARE_UNIT + 1..=300 {
                let shares: Vec<_> = (0..ranks).map(|r| share_of(batch, r, ranks).unwrap()).collect();
                assert_eq!(shares[0].start, 0);
                assert_eq!(shares[ranks - 1].end, batch);
                for pair in shares.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                }
                for s in &shares {
                    assert!(!s.is_empty(), "batch {batch} ranks {ranks}: {shares:?}");
                    assert_eq!(s.start % IMAGES_PER_SHARE_UNIT, 0);
                }
                let sizes: Vec<usize> = shares.iter().map(|s| s.len().div_ceil(IMAGES_PER_SHARE_UNIT)).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn a_batch_too_small_for_the_ranks_is_refused_with_the_sizes() {
        let err = share_of(64, 0, 3).unwrap_err().to_string();
        assert!(err.contains("64 images") && err.contains("3 ranks") && err.contains("at least 65"), "{err}");
        assert!(share_of(65, 2, 3).is_ok());
        assert!(share_of(10, 1, 1).is_err());
    }
}
