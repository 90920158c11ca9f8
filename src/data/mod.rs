//! Data sets: readers, validation split, normalisation, batching.
