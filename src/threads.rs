//! Running work on the rayon thread pool's own workers.
//!
//! Every parallel loop started from a thread outside the pool (the program's main thread) is
//! handed over to the pool and waited for: a wake-up and a hand-back per loop. A training step
//! runs dozens of parallel loops, and at batch 1 each one lasts only microseconds, so that
//! handing over cost a third of the inference latency (0.81 against 0.52 ms per image, seed
//! network, 2 threads). Running the whole pass on a worker makes the loops inside it local
//! work that the other workers steal, with one hand-over per pass instead of one per loop.

/// Runs `f` on a worker of the current rayon pool (directly if already on one), with the pool's
/// other workers kept awake until it returns (see `with_helpers_awake`), and returns its result.
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        with_helpers_awake(f)
    } else {
        rayon::scope(|_| with_helpers_awake(f))
    }
}

thread_local! {
    /// Set while this worker runs a pass under `with_helpers_awake`.
    static IN_PASS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this worker while every other worker of the pool polls for the work `f` splits
/// off, instead of going to sleep between its parallel loops.
///
/// Why: an idle rayon worker sleeps after a short search, and waking it can cost more than the
/// loops of a one-image pass take (on a VM, waking an idle CPU goes through the hypervisor).
/// OpenMP runtimes (PyTorch) spin for the same reason. Measured on the seed network, batch 1,
/// 2 threads: 0.380 -> 0.341 ms per image in side-by-side sittings; training 979 -> 1001
/// images/s. The helpers spin only while a pass runs.
fn with_helpers_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let helpers = rayon::current_num_threads().saturating_sub(1);
    if helpers == 0 || IN_PASS.with(|p| p.get()) {
        return f();
    }
    let owner = rayon::current_thread_index();
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| {
                // The worker running `f` may pop this job while it waits inside `f`: spinning
                // there would wait on itself.
                if rayon::current_thread_index() == owner {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Ends the pass even if `f` panics: the helpers must stop for the scope to return.
        struct EndPass<'a>(&'a AtomicBool);
        impl Drop for EndPass<'_> {
            fn drop(&mut self) {
                IN_PASS.with(|p| p.set(false));
                self.0.store(true, Ordering::Release);
            }
        }
        IN_PASS.with(|p| p.set(true));
        let _end = EndPass(&done);
        f()
    })
}

/// Whether `init_pool` pins workers: yes unless the environment variable CONVNET_PIN_THREADS
/// is "0".
fn pinning_wanted() -> bool {
    std::env::var("CONVNET_PIN_THREADS").map_or(true, |v| v.trim() != "0")
}

/// A pool builder for `threads` workers (0: one per CPU this process may run on) that pins
/// worker i to the i-th of those CPUs, when there are no more workers than CPUs.
///
/// Why: a pass over one image forks and joins a dozen times in half a millisecond, and Linux
/// may move a thread that another wakes often onto the waker's CPU; once, during a slow
/// batch-1 run, both workers were seen on CPU 0. Pinned, each worker keeps its own CPU. The
/// gain was within the noise of the measurements (the slow runs had another cause, see
/// docs/performance.md); this is a guard, and CONVNET_PIN_THREADS=0 turns it off.
pub fn pool_builder(threads: usize) -> rayon::ThreadPoolBuilder {
    pool_builder_on(threads, allowed_cpus())
}

/// `pool_builder` for one of `local_ranks` processes of a distributed run on this machine
/// (`local_rank` from 0): where the processes share one affinity mask (mpirun --bind-to none),
/// each takes its own equal slice of it (so that "0 threads" means its share of the cores, and
/// two ranks never pin their workers to the same CPU); where mpirun bound each to its own
/// cores, the mask is already its own.
pub fn pool_builder_for_rank(threads: usize, local_rank: usize, local_ranks: usize) -> rayon::ThreadPoolBuilder {
    let cpus = allowed_cpus();
    let per_rank = cpus.len() / local_ranks.max(1);
    if local_ranks > 1 && per_rank > 0 && local_rank < local_ranks {
        pool_builder_on(threads, cpus[local_rank * per_rank..][..per_rank].to_vec())
    } else {
        pool_builder_on(threads, cpus)
    }
}

fn pool_builder_on(threads: usize, cpus: Vec<usize>) -> rayon::ThreadPoolBuilder {
    let threads = match threads {
        // Where the affinity mask is unknown (not Linux), what the standard library sees.
        0 if cpus.is_empty() => std::thread::available_parallelism().map_or(1, |n| n.get()),
        0 => cpus.len(),
        n => n,
    };
    let builder = rayon::ThreadPoolBuilder::new().num_threads(threads);
    if !pinning_wanted() || cpus.is_empty() || threads > cpus.len() {
        return builder;
    }
    builder.start_handler(move |i| pin_current_thread(cpus[i % cpus.len()]))
}

/// Builds the process-wide pool (see `pool_builder`); an error if it already exists.
pub fn init_pool(threads: usize) -> Result<(), rayon::ThreadPoolBuildError> {
    pool_builder(threads).build_global()
}

/// The CPUs this process may run on (its affinity mask), in order; empty where unknown.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Restricts the calling thread to `cpu`; silently does nothing where that is not possible
/// (pinning is a speed-up, never a condition).
#[cfg(target_os = "linux")]
fn pin_current_thread(cpu: usize) {
    // SAFETY: as above; sched_setaffinity(0, ..) applies to the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_current_thread(_cpu: usize) {}

thread_local! {
    static SCRATCH_PAIR: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with the calling thread's two scratch buffers (of any lengths, holding anything).
/// Layers run one after another, so one pair per thread serves every layer's parallel tasks
/// (the Winograd transforms' V and M, the column matrices of dW) where a pair per layer would
/// hold the sum of their sizes. A nested call, which none makes, gets a fresh pair.
pub fn with_thread_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH_PAIR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut pair) => {
            let (a, b) = &mut *pair;
            f(a, b)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// One `T` per worker of the current pool, for scratch buffers that parallel tasks reuse: a task
/// takes its own worker's slot, so the Mutex is never contended (it only keeps this safe when a
/// foreign pool with more threads calls in, as the modulo below lets two workers share a slot).
#[derive(Default)]
pub struct PerThread<T> {
    slots: Vec<std::sync::Mutex<T>>,
}

impl<T: Default> PerThread<T> {
    /// Grows to one slot per worker of the current pool; call before the parallel loop.
    pub fn for_current_pool(&mut self) -> &PerThread<T> {
        let threads = rayon::current_num_threads().max(1);
        if self.slots.len() < threads {
            self.slots.resize_with(threads, Default::default);
        }
        self
    }

    /// The calling worker's slot.
    pub fn get(&self) -> std::sync::MutexGuard<'_, T> {
        let slot = rayon::current_thread_index().unwrap_or(0) % self.slots.len().max(1);
        // A task that panicked while holding the slot left only scratch values behind.
        self.slots[slot].lock().unwrap_or_else(|e| e.into_inner())
    }
}
