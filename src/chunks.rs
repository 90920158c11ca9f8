//! The fixed sizes parallel work is split into. Where a result is a sum, each chunk's partial
//! sum is taken on its own and the partials are added in chunk order, so the result depends on
//! these sizes and never on the number of threads: the same seed gives the same bits on any
//! machine. Changing one changes results in the last bits. The ranks of a distributed step hold
//! whole chunks and fold them in the same order (`crate::dist`).

/// Images per task in a convolution's backward pass (the partial weight gradients) and in the
/// Winograd forward pass of large batches.
pub(crate) const IMAGES_PER_CHUNK: usize = 8;

/// Images per partial weight gradient of a dense layer (dW = the sum over these chunks of
/// X_chunk^T dY_chunk): one GEMM per chunk, large enough to keep the GEMM efficient.
pub(crate) const DENSE_IMAGES_PER_CHUNK: usize = 32;

/// Values per task in the L2 penalty's sum and in the elementwise optimiser and L2-gradient
/// updates.
pub(crate) const VALUES_PER_CHUNK: usize = 1 << 14;

/// Rows (pixels) per task in batch norm's per-channel sums, at most: a chunk never spans two
/// groups of `IMAGES_PER_CHUNK` images, nor part of one image and part of another (so that
/// the ranks of a distributed step, which hold whole groups, hold whole chunks).
pub(crate) const ROWS_PER_CHUNK: usize = 256;
