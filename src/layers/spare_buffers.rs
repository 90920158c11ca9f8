//! Buffers lent between the layers of a `Sequential` in a training step, so that memory goes
//! only to the tensors still needed. Each layer owns an output y and an input gradient dx, but
//! not all of them live for the whole step:
//!
//! - a layer's output whose values the next layer's backward pass does not read (a
//!   convolution's output under max pooling, which keeps its argmax) is dead once the next
//!   layer's forward has run: its buffer is lent out (`Tensor::take_values`);
//! - layer i's input gradient is dead once layer i - 1's backward has read it: at most two are
//!   live at a time (the first layer's, the block's own input gradient, is kept);
//! - an output that its layer can compute again from its kept input (GELU, an activation: see
//!   `Layer::recomputable`) is lent out after the next layer's forward and computed again just
//!   before a backward pass reads it (recomputation, as in gradient checkpointing, at the cost
//!   of one elementwise pass).
//!
//! Which buffer serves which request is planned, as a graph compiler plans its memory: every
//! training step makes the same requests (a layer's y or dx, of a size) in the same order, so
//! each step's requests are logged (when given, when given back) and, when they differ from
//! the plan's, the next step gets a new plan. The plan packs the requests given back within
//! the step into few bytes: first fit by decreasing size, a request sharing a buffer with the
//! requests whose lifetimes it does not overlap. A request the plan does not hold (the first
//! step, a layer that was not hollow) gets no buffer (the layer allocates one), and a buffer
//! the plan does not hold is freed when lent: unplanned memory never piles up.

use std::collections::HashMap;

use crate::tensor::Tensor;

/// Which buffer of a `Sequential` a request is for: (layer index, output or input gradient,
/// how many such requests came before it in the step: an output computed again is asked for
/// twice).
pub(crate) type Key = (usize, Role, usize);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Role {
    Output,
    InputGrad,
}

#[derive(Default)]
pub(crate) struct SpareBuffers {
    /// The plan's buffers, by slot; None while lent out.
    slots: Vec<Option<Vec<f32>>>,
    /// How many values of each slot's buffer are initialized (written at least once): a buffer
    /// comes back as long as its last request, and gets this length back without being filled
    /// again (each step would otherwise zero the gap between a short request and a long one).
    initialized: Vec<usize>,
    /// The plan: the slot of each request it holds, and the request's length when planned.
    plan: HashMap<Key, (usize, usize)>,
    /// Buffers of the plan lent out: the buffer's address -> its slot.
    out: HashMap<usize, usize>,
    /// This training step's requests (given at `start`, given back at `end`; None: kept past
    /// the step), the clock that orders them, and how many times each (layer, role) asked.
    log: HashMap<Key, Request>,
    given: HashMap<usize, Key>,
    asked: HashMap<(usize, Role), usize>,
    clock: usize,
    /// Whether a training step is being logged (`begin_step`).
    logging: bool,
    /// How many plans have been made (a new one only when the requests change).
    plans_made: usize,
}

#[derive(Clone, Copy, PartialEq, Debug)]
struct Request {
    len: usize,
    start: usize,
    end: Option<usize>,
}

impl SpareBuffers {
    /// Starts logging a training step; if the last step's requests differ from the plan's,
    /// plans them and fits the buffers held to the new plan.
    pub fn begin_step(&mut self) {
        let planned = |log: &HashMap<Key, Request>, plan: &HashMap<Key, (usize, usize)>| {
            let closed = log.iter().filter(|(_, r)| r.end.is_some());
            closed.clone().count() == plan.len() && closed.into_iter().all(|(k, r)| plan.get(k).is_some_and(|&(_, len)| len == r.len))
        };
        if self.logging && !planned(&self.log, &self.plan) {
            self.replan();
        }
        self.log.clear();
        self.given.clear();
        self.asked.clear();
        self.clock = 0;
        self.logging = true;
    }

    /// Ends logging (an evaluation pass): its requests are served by the plan where it can.
    pub fn end_step(&mut self) {
        self.logging = false;
    }

    /// First fit by decreasing size over the last step's requests given back within it, then
    /// the idle buffers matched to the new slots, the largest first; the others are freed.
    fn replan(&mut self) {
        let mut order: Vec<(Key, Request)> = self.log.iter().filter(|(_, r)| r.end.is_some()).map(|(k, r)| (*k, *r)).collect();
        // Decreasing size; ties by start, so that the plan does not depend on the map's order.
        order.sort_by_key(|(_, r)| (std::cmp::Reverse(r.len), r.start));
        let overlap = |a: &Request, b: &Request| a.start < b.end.unwrap_or(usize::MAX) && b.start < a.end.unwrap_or(usize::MAX);
        let mut slot_requests: Vec<Vec<Request>> = Vec::new();
        let mut plan = HashMap::new();
        for (key, r) in order {
            let free = slot_requests.iter().position(|rs| rs.iter().all(|o| !overlap(&r, o)));
            let slot = free.unwrap_or_else(|| {
                slot_requests.push(Vec::new());
                slot_requests.len() - 1
            });
            slot_requests[slot].push(r);
            plan.insert(key, (slot, r.len));
        }
        // Each slot's first request is its largest. The buffers lent out are not reused.
        let mut idle: Vec<Vec<f32>> = self.slots.iter_mut().filter_map(Option::take).collect();
        idle.sort_by_key(|b| b.capacity());
        self.slots = slot_requests
            .iter()
            .map(|rs| {
                let size = rs[0].len;
                let mut buffer = match idle.iter().position(|b| b.capacity() >= size) {
                    Some(i) => idle.remove(i),
                    None => idle.pop().unwrap_or_default(),
                };
                if buffer.capacity() < size {
                    // Grown now, so that no request's `resize` moves it (it is found by address).
                    buffer.clear();
                    buffer.reserve_exact(size);
                }
                if buffer.len() < size {
                    buffer.resize(size, 0.0);
                }
                Some(buffer)
            })
            .collect();
        self.initialized = self.slots.iter().map(|b| b.as_ref().map_or(0, Vec::len)).collect();
        self.out.clear();
        self.plan = plan;
        self.plans_made += 1;
    }

    /// Takes `t`'s buffer (its shape stays; see `Tensor::take_values`): back to its slot if the
    /// plan holds it, else freed.
    pub fn lend(&mut self, t: &mut Tensor) {
        let buffer = t.take_values();
        let address = buffer.as_ptr() as usize;
        self.clock += 1;
        if let Some(request) = self.given.remove(&address).and_then(|key| self.log.get_mut(&key)) {
            request.end = Some(self.clock);
        }
        if let Some(slot) = self.out.remove(&address) {
            let mut buffer = buffer;
            let initialized = &mut self.initialized[slot];
            if buffer.len() < *initialized {
                // SAFETY: the values up to `initialized` were written (by `replan`'s resize or a
                // request's) and the buffer has not moved since (it is found by its address, so
                // its capacity still holds them); shortening a Vec<f32> leaves them in place,
                // and nothing writes uninitialized values into one.
                unsafe { buffer.set_len(*initialized) };
            }
            *initialized = buffer.len();
            self.slots[slot] = Some(buffer);
        }
    }

    /// Gives `t`, if it has no values (hollow, or never sized), the buffer the plan holds for
    /// `key` (`len` values); else leaves it to the layer's `resize` to allocate one.
    pub fn fill(&mut self, t: &mut Tensor, (layer, role): (usize, Role), len: usize) {
        if !t.is_empty() {
            return;
        }
        let nth = self.asked.entry((layer, role)).or_insert(0);
        let key = (layer, role, *nth);
        *nth += 1;
        self.clock += 1;
        if self.logging {
            self.log.insert(key, Request { len, start: self.clock, end: None });
        }
        let slot = self.plan.get(&key).map(|&(slot, _)| slot);
        let buffer = slot.and_then(|s| self.slots[s].take_if(|b| b.capacity() >= len));
        // A never-sized tensor (shape [0]) keeps the buffer's capacity for its first `resize`.
        match (slot, buffer) {
            (Some(slot), Some(buffer)) => {
                self.out.insert(buffer.as_ptr() as usize, slot);
                t.restore_values(buffer);
            }
            _ => t.restore_values(Vec::with_capacity(len)),
        }
        if self.logging {
            self.given.insert(t.data().as_ptr() as usize, key);
        }
    }

    /// The idle buffers' (address, capacity), by slot.
    #[cfg(test)]
    pub fn idle_buffers(&self) -> Vec<(usize, usize)> {
        self.slots.iter().flatten().map(|b| (b.as_ptr() as usize, b.capacity())).collect()
    }

    #[cfg(test)]
    pub fn plans_made(&self) -> usize {
        self.plans_made
    }

    /// Whether every slot of the plan holds its buffer (none lent out, none lost).
    #[cfg(test)]
    pub fn all_idle(&self) -> bool {
        self.slots.iter().all(Option::is_some)
    }

    #[cfg(test)]
    fn idle_capacities(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self.slots.iter().flatten().map(|b| b.capacity()).collect();
        c.sort_unstable();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of four requests: the output of layers 0 and 1 (lent out), the input gradient
    /// of layer 2 (lent out), the output of layer 3 (kept past the step). The tensors are
    /// hollow or never sized where a `Sequential` would ask, sized as a layer would.
    fn step(spares: &mut SpareBuffers, t: &mut [Tensor; 4]) {
        spares.begin_step();
        let [a, b, c, d] = t;
        spares.fill(a, (0, Role::Output), 100);
        a.resize(&[100]);
        spares.fill(b, (1, Role::Output), 50);
        b.resize(&[50]);
        spares.lend(a);
        spares.fill(c, (2, Role::InputGrad), 80);
        c.resize(&[80]);
        spares.lend(b);
        spares.lend(c);
        spares.fill(d, (3, Role::Output), 10);
        d.resize(&[10]);
    }

    #[test]
    fn requests_whose_lifetimes_do_not_overlap_share_a_buffer_of_the_plan() {
        let mut spares = SpareBuffers::default();
        let mut t = [Tensor::empty(), Tensor::empty(), Tensor::empty(), Tensor::empty()];
        step(&mut spares, &mut t);
        // No plan yet: each request got a buffer of its own, freed when lent.
        assert!(spares.idle_capacities().is_empty());
        assert!(t[0].is_hollow() && t[1].is_hollow() && t[2].is_hollow() && !t[3].is_hollow());
        let kept = t[3].data().as_ptr();
        // Planned from the first step: 100 (layer 0's output, then layer 2's input gradient,
        // which is asked for after it was given back) and 50 (layer 1's output, live beside both).
        step(&mut spares, &mut t);
        assert_eq!(spares.idle_capacities(), [50, 100]);
        assert_eq!(spares.plan.len(), 3);
        let slot = |spares: &SpareBuffers, key: Key| spares.plan[&key].0;
        assert_eq!(slot(&spares, (0, Role::Output, 0)), slot(&spares, (2, Role::InputGrad, 0)));
        assert_ne!(slot(&spares, (0, Role::Output, 0)), slot(&spares, (1, Role::Output, 0)));
        // Layer 3 kept its buffer and asked for none.
        assert_eq!(t[3].data().as_ptr(), kept);
        assert!(!spares.plan.contains_key(&(3, Role::Output, 0)));
        // The same requests again: served by the plan, which stays (the same two buffers).
        let before: Vec<usize> = spares.slots.iter().flatten().map(|b| b.as_ptr() as usize).collect();
        step(&mut spares, &mut t);
        step(&mut spares, &mut t);
        let after: Vec<usize> = spares.slots.iter().flatten().map(|b| b.as_ptr() as usize).collect();
        assert_eq!(before, after, "no buffer replaced");
        // The 100-value buffer came back from the 80-value request at its full length: the
        // next 100-value request needs no filling.
        let lengths: Vec<usize> = spares.slots.iter().flatten().map(Vec::len).collect();
        assert_eq!(lengths, spares.initialized);
        assert!(lengths.contains(&100) && lengths.contains(&50), "{lengths:?}");
        // A hollow tensor gets the planned buffer, filled to its shape.
        spares.begin_step();
        spares.fill(&mut t[0], (0, Role::Output), 100);
        assert_eq!(t[0].len(), 100);
        assert!(before.contains(&(t[0].data().as_ptr() as usize)));
    }

    #[test]
    fn a_new_plan_holds_its_buffers_at_their_full_length() {
        // Sized once when planned, so that no step has to fill them (found by cargo mutants:
        // a plan of empty buffers went unnoticed, being filled by the first requests).
        let mut spares = SpareBuffers::default();
        let mut t = [Tensor::empty(), Tensor::empty(), Tensor::empty(), Tensor::empty()];
        step(&mut spares, &mut t);
        spares.begin_step();
        let mut lengths: Vec<usize> = spares.slots.iter().flatten().map(Vec::len).collect();
        assert_eq!(lengths, spares.initialized);
        lengths.sort_unstable();
        assert_eq!(lengths, [50, 100]);
    }

    #[test]
    fn a_request_larger_than_its_planned_buffer_gets_its_own_and_the_next_step_plans_again() {
        let mut spares = SpareBuffers::default();
        let mut t = [Tensor::empty(), Tensor::empty(), Tensor::empty(), Tensor::empty()];
        step(&mut spares, &mut t);
        step(&mut spares, &mut t);
        spares.begin_step();
        let mut big = Tensor::zeros(&[200]);
        big.take_values();
        spares.fill(&mut big, (0, Role::Output), 200);
        assert_eq!(big.len(), 200);
        spares.lend(&mut big);
        assert_eq!(spares.idle_capacities(), [50, 100], "the larger buffer is freed, the plan's kept");
        spares.begin_step();
        assert_eq!(spares.idle_capacities(), [200]);
    }
}
