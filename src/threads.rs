//! Running work on the rayon thread pool's own workers.
//!
//! Every parallel loop started from a thread outside the pool (the program's main thread) is
//! handed over to the pool and waited for: a wake-up and a hand-back per loop. A training step
//! runs dozens of parallel loops, and at batch 1 each one lasts only microseconds, so that
//! handing over cost a third of the inference latency (0.81 against 0.52 ms per image, seed
//! network, 2 threads). Running the whole pass on a worker makes the loops inside it local
//! work that the other workers steal, with one hand-over per pass instead of one per loop.

/// Runs `f` on a worker of the current rayon pool (directly if already on one) and returns
/// its result.
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}
