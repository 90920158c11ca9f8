//! A group of ranks inside one process, joined by channels: what the tests run the distributed
//! step with when no MPI is built in (each rank a thread with its own rayon pool), and what
//! shows that the chain, not the transport, makes the result equal.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use super::Collective;

struct LocalRank {
    rank: usize,
    /// `to[r]`: the channel to rank r (this rank's own slot unused).
    to: Vec<Sender<Vec<u8>>>,
    /// `from[r]`: what rank r sent to this one, in the order it was sent.
    from: Vec<Mutex<Receiver<Vec<u8>>>>,
}

/// `size` ranks, one [`Collective`] each (hand each to its own thread).
pub fn local_group(size: usize) -> Vec<Box<dyn Collective>> {
    // channels[from][to]
    let mut senders: Vec<Vec<Sender<Vec<u8>>>> = Vec::new();
    let mut receivers: Vec<Vec<Option<Receiver<Vec<u8>>>>> = (0..size).map(|_| (0..size).map(|_| None).collect()).collect();
    for from in 0..size {
        let mut row = Vec::new();
        for to_rank in receivers.iter_mut() {
            let (tx, rx) = channel();
            row.push(tx);
            to_rank[from] = Some(rx);
        }
        senders.push(row);
    }
    senders
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(rank, (to, from))| {
            let from = from.into_iter().map(|rx| Mutex::new(rx.expect("every pair has a channel"))).collect();
            Box::new(LocalRank { rank, to, from }) as Box<dyn Collective>
        })
        .collect()
}

impl Collective for LocalRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.to.len()
    }
    fn host(&self) -> String {
        format!("thread {} of this process", self.rank)
    }
    fn send(&self, to: usize, bytes: &[u8]) {
        // A peer that is gone has ended the job (its thread panicked): end this rank too.
        self.to[to].send(bytes.to_vec()).unwrap_or_else(|_| panic!("rank {} is gone", to));
    }
    fn recv(&self, from: usize, bytes: &mut [u8]) {
        let got = self.from[from].lock().expect("one receiver per pair").recv().unwrap_or_else(|_| panic!("rank {from} is gone"));
        assert_eq!(got.len(), bytes.len(), "rank {from} sent {} bytes where rank {} expected {}", got.len(), self.rank, bytes.len());
        bytes.copy_from_slice(&got);
    }
    fn abort(&self, code: i32) -> ! {
        panic!("rank {} ended the job (exit code {code})", self.rank)
    }
    fn broadcast(&self, root: usize, bytes: &mut [u8]) {
        if self.rank == root {
            for to in (0..self.size()).filter(|&r| r != root) {
                self.send(to, bytes);
            }
        } else {
            self.recv(root, bytes);
        }
    }
}
