//! The fixed sizes parallel work is split into. Where a result is a sum, each chunk's partial
//! sum is taken on its own and the partials are added in chunk order, so the result depends on
//! these sizes and never on the number of threads: the same seed gives the same bits on any
//! machine. Changing one changes results in the last bits.

/// Images per task in a convolution's backward pass (the partial weight gradients) and in the
/// Winograd forward pass of large batches.
pub(crate) const IMAGES_PER_CHUNK: usize = 8;

/// Values per task in the L2 penalty's sum and in the elementwise optimiser and L2-gradient
/// updates.
pub(crate) const VALUES_PER_CHUNK: usize = 1 << 14;

/// Rows (pixels of all images) per task in batch norm's per-channel sums.
pub(crate) const ROWS_PER_CHUNK: usize = 256;
