//! The MPI transport (cargo feature `mpi`): the ranks of `mpirun -np N convnet train
//! --distributed`, over whatever network OpenMPI picks (shared memory on one machine, TCP or a
//! fabric between machines).

use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::{Collective, Group};
use crate::error::{Error, Result};

/// MPI's counts are C ints: larger buffers travel in pieces of this many bytes.
const PIECE: usize = 1 << 30;

/// This process's place in the MPI job. Holds the MPI environment: dropping it finalises MPI.
pub struct MpiRanks {
    world: SimpleCommunicator,
    host: String,
    _universe: Universe,
}

// SAFETY: MPI is initialised with at least MPI_THREAD_SERIALIZED (checked in `join`), which
// lets any thread call MPI as long as no two calls overlap; the ranks' collectives are made one
// at a time, by whichever worker runs the training step, never concurrently.
unsafe impl Send for MpiRanks {}
// SAFETY: as for Send: the communicator is only used by one thread at a time.
unsafe impl Sync for MpiRanks {}

/// Joins the MPI job this process was started in (by mpirun; a process started alone is a job
/// of one rank).
pub fn join() -> Result<Group> {
    let refuse = |detail: String| Error::invalid("distributed", detail);
    let (universe, level) =
        mpi::initialize_with_threading(Threading::Multiple).ok_or_else(|| refuse("MPI was already initialised in this process".into()))?;
    if level < Threading::Serialized {
        return Err(refuse(format!("this MPI library offers threads at level {level:?}; convnet needs MPI_THREAD_SERIALIZED or more")));
    }
    let world = universe.world();
    let host = mpi::environment::processor_name().unwrap_or_else(|_| "an unnamed host".into());
    Ok(Group::new(Box::new(MpiRanks { world, host, _universe: universe })))
}

impl Collective for MpiRanks {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn host(&self) -> String {
        self.host.clone()
    }
    fn send(&self, to: usize, bytes: &[u8]) {
        let peer = self.world.process_at_rank(to as i32);
        for piece in bytes.chunks(PIECE) {
            peer.send(piece);
        }
    }
    fn recv(&self, from: usize, bytes: &mut [u8]) {
        let peer = self.world.process_at_rank(from as i32);
        for piece in bytes.chunks_mut(PIECE) {
            peer.receive_into(piece);
        }
    }
    fn broadcast(&self, root: usize, bytes: &mut [u8]) {
        let root = self.world.process_at_rank(root as i32);
        for piece in bytes.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
