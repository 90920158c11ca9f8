//! Data-parallel training across processes (docs/distributed.md): N ranks, each holding the
//! whole model, each computing the gradient of its share of every batch, give bit for bit what
//! one process computes with the whole batch.
//!
//! How. Every sum over the batch in a training step is already a left fold over fixed chunks of
//! images, taken in order (`crate::chunks`): conv dW, dense dW, batch norm's statistics, the
//! loss. A rank holds a contiguous run of whole chunks ([`share_of`]). In a distributed step
//! each such sum becomes a chain ([`ordered_fold`]):
//!
//! ```text
//!   rank 0:  acc = 0            fold its chunks    send acc to rank 1
//!   rank r:  acc = recv(r - 1)  fold its chunks    send acc to rank r + 1
//!   last:    acc = recv(N - 2)  fold its chunks    broadcast acc: the whole batch's sum
//! ```
//!
//! so the additions happen in exactly the single-process order and every rank ends with the
//! same bits. A rank computes its chunks' partial sums before it waits for the running sum, so
//! the waiting overlaps the other ranks' work; only the additions are serial. Integer counts
//! (images, rows, correct answers) are folded the same way (exactly).
//!
//! The ops read the group from a thread-local set around a training step ([`with_group`]); with
//! none set (one process, evaluation) every helper here is the plain local sum.

mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
mod shares;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub use local::local_group;
pub use shares::{share_of, IMAGES_PER_SHARE_UNIT};

/// Point-to-point and broadcast of raw bytes between the ranks of a job: what an MPI
/// communicator gives, and what the in-process group of the tests imitates with channels.
/// Failures are not returned: a transport that cannot deliver ends the job (MPI's default
/// error handler aborts every rank), so no rank waits forever for a peer that is gone.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// The machine this rank runs on (for messages naming a rank).
    fn host(&self) -> String;
    fn send(&self, to: usize, bytes: &[u8]);
    /// Receives exactly `bytes.len()` bytes sent by `from`.
    fn recv(&self, from: usize, bytes: &mut [u8]);
    /// `root`'s `bytes` to every rank (all call it with the same root and length).
    fn broadcast(&self, root: usize, bytes: &mut [u8]);
    /// Ends every rank of the job at once, with exit code `code` (after an error on this rank:
    /// the others may be waiting for it).
    fn abort(&self, code: i32) -> !;
}

/// A job's ranks, with counters of the traffic and of the time spent communicating (waiting
/// included), for `convnet bench --distributed`.
pub struct Group {
    comm: Box<dyn Collective>,
    bytes_sent: AtomicU64,
    nanos: AtomicU64,
}

impl Group {
    pub fn new(comm: Box<dyn Collective>) -> Group {
        Group { comm, bytes_sent: AtomicU64::new(0), nanos: AtomicU64::new(0) }
    }
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    pub fn size(&self) -> usize {
        self.comm.size()
    }
    pub fn host(&self) -> String {
        self.comm.host()
    }
    /// See [`Collective::abort`].
    pub fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }
    /// Bytes this rank has sent (broadcasts counted once per receiving rank when it is the root).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }
    /// Seconds this rank has spent in sends, receives and broadcasts.
    pub fn seconds_communicating(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }

    fn timed<R>(&self, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        self.nanos.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn send<T: Wire>(&self, to: usize, values: &[T]) {
        let bytes = as_bytes(values);
        self.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.timed(|| self.comm.send(to, bytes));
    }
    fn recv<T: Wire>(&self, from: usize, values: &mut [T]) {
        self.timed(|| self.comm.recv(from, as_bytes_mut(values)));
    }
    /// `root`'s values to every rank.
    pub fn broadcast<T: Wire>(&self, root: usize, values: &mut [T]) {
        if self.rank() == root {
            self.bytes_sent.fetch_add((std::mem::size_of_val(values) * (self.size() - 1)) as u64, Ordering::Relaxed);
        }
        self.timed(|| self.comm.broadcast(root, as_bytes_mut(values)));
    }

    /// The chain of the module comment: `acc` starts as the running sum of the ranks before this
    /// one (zeros on rank 0), `add_local` adds this rank's part in order, and every rank returns
    /// with the last rank's total.
    pub fn ordered_fold<T: Wire>(&self, acc: &mut [&mut [T]], add_local: impl FnOnce(&mut [&mut [T]])) {
        let (rank, size) = (self.rank(), self.size());
        for buf in acc.iter_mut() {
            if rank == 0 {
                buf.fill(T::default());
            } else {
                self.recv(rank - 1, buf);
            }
        }
        add_local(acc);
        // Every send before any broadcast: a rank waiting in a broadcast must not hold back a
        // buffer the next rank still waits to receive.
        if rank + 1 < size {
            for buf in acc.iter() {
                self.send(rank + 1, buf);
            }
        }
        for buf in acc.iter_mut() {
            self.broadcast(size - 1, buf);
        }
    }

    /// The sum over the ranks of an integer (exact, so in any order).
    pub fn sum_count(&self, local: u64) -> u64 {
        let mut total = [0u64];
        self.ordered_fold(&mut [&mut total], |acc| acc[0][0] += local);
        total[0]
    }

    /// Every rank's value, in rank order (for the start-up checks that configs, data and
    /// weights agree).
    pub fn all_values(&self, mine: u64) -> Vec<u64> {
        (0..self.size())
            .map(|root| {
                let mut v = [if root == self.rank() { mine } else { 0 }];
                self.broadcast(root, &mut v);
                v[0]
            })
            .collect()
    }
}

/// The values the collectives carry: plain numbers, any bit pattern valid, no padding.
pub trait Wire: Copy + Default + Send + 'static + sealed::Sealed {}
impl Wire for f32 {}
impl Wire for f64 {}
impl Wire for u64 {}
mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u64 {}
}

fn as_bytes<T: Wire>(values: &[T]) -> &[u8] {
    // SAFETY: T is f32, f64 or u64 (sealed): no padding, so every byte of the slice is
    // initialised; u8 has alignment 1 and the length covers exactly the same memory.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn as_bytes_mut<T: Wire>(values: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`, and any bytes written through the view form a valid T (every
    // bit pattern is an f32, f64 or u64).
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// What a distributed training step runs under: the group, and where this rank's share starts
/// in the global batch (for the layers that draw random numbers per value, as dropout).
#[derive(Clone)]
struct Active {
    group: Arc<Group>,
    first_image: usize,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Runs `f` with `group` as the batch's group on this thread (this rank's share starting at
/// image `first_image` of the global batch); with `None`, as one process.
pub fn with_group<R>(group: Option<&Arc<Group>>, first_image: usize, f: impl FnOnce() -> R) -> R {
    let next = group.map(|g| Active { group: g.clone(), first_image });
    let before = ACTIVE.with(|a| std::mem::replace(&mut *a.borrow_mut(), next));
    struct Restore(Option<Option<Active>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take().flatten();
            ACTIVE.with(|a| *a.borrow_mut() = before);
        }
    }
    let _restore = Restore(Some(before));
    f()
}

/// Whether a distributed step is running on this thread (`with_group`).
pub fn in_group() -> bool {
    active().is_some()
}

fn active() -> Option<Active> {
    ACTIVE.with(|a| a.borrow().clone())
}

/// A sum over the batch in the single-process order: `add_local` adds this rank's part (the
/// whole batch in one process) to `acc`, which starts at zero; see [`Group::ordered_fold`].
pub fn ordered_fold<T: Wire>(acc: &mut [&mut [T]], add_local: impl FnOnce(&mut [&mut [T]])) {
    match active() {
        Some(a) => a.group.ordered_fold(acc, add_local),
        None => {
            for buf in acc.iter_mut() {
                buf.fill(T::default());
            }
            add_local(acc)
        }
    }
}

/// The batch's total of a count this rank has `local` of (images, rows, correct answers).
pub fn batch_count(local: usize) -> usize {
    match active() {
        Some(a) => a.group.sum_count(local as u64) as usize,
        None => local,
    }
}

/// `values` as the first rank holds them (the values of the batch's first image).
pub fn from_first_rank<T: Wire>(values: &mut [T]) {
    if let Some(a) = active() {
        a.group.broadcast(0, values);
    }
}

/// Where this rank's images start in the global batch (0 in one process).
pub fn first_image() -> usize {
    active().map_or(0, |a| a.first_image)
}
