//! Blocks with more than one holder: an array a producer made in the arena (through NumPy's
//! memory handler) and the tasks it was handed to.
//!
//! A producer that returns an array born in the arena hands the block itself to the next stage
//! instead of a copy. From then on two parties hold it: the producer's array, released when
//! NumPy frees the array (the handler calls [`Arena::release_held`]), and the task, released
//! by the engine's [`Arena::free`] once the consuming stage has answered. The block is reused
//! only when both are gone, so a producer that keeps its array (a cache, `self.last = out`)
//! never sees another request's bytes appear in it.
//!
//! Bookkeeping lives in the block header: `producer_pid` (the process whose array holds the
//! block, 0 when none) and `task_holds` (tasks holding it; 0 with no producer means the single
//! owner every plain object has, so plain objects behave exactly as before). A block can also
//! be handed over again by a reader that passes its input straight through ([`Arena::share`]).
//! A dead producer's holds are dropped by [`Arena::reclaim_owner`].

use std::sync::atomic::Ordering::Relaxed;

use super::Arena;
use crate::allocator::Heap;
use crate::error::{Result, ShmError};
use crate::header::{BlockHeader, BlockState, GRANULE};
use crate::reference::{Reference, Span};

impl Arena {
    /// Allocates a block of `size` payload bytes held by an array of this process: leased (the
    /// array writes it) and owned by this process until handed over. Never waits.
    ///
    /// # Errors
    /// As [`Arena::alloc`] ([`ShmError::Full`] when there is no room now).
    pub fn alloc_held(&self, size: usize) -> Result<Span> {
        let reference = self.alloc_block(size, BlockState::Leased, std::process::id())?;
        Ok(self.span(&reference))
    }

    /// Drops this process's array hold on the block whose payload starts at file offset
    /// `payload`; the block is released unless a task still holds it.
    ///
    /// # Errors
    /// [`ShmError::OutOfBounds`] when no live block starts there; [`ShmError::WrongState`] when
    /// this process's array does not hold it.
    pub fn release_held(&self, payload: u64) -> Result<()> {
        self.with_heap(|heap| {
            let (offset, b) = self.held_block(heap, payload)?;
            b.producer_pid.store(0, Relaxed);
            if b.task_holds.load(Relaxed) == 0 {
                heap.release(offset)?;
            }
            Ok(())
        })
    }

    /// Payload bytes of the block held by this process's array at `payload` (for `realloc`).
    ///
    /// # Errors
    /// As [`Arena::release_held`].
    pub fn held_len(&self, payload: u64) -> Result<u64> {
        self.with_heap(|heap| Ok(self.held_block(heap, payload)?.1.len.load(Relaxed)))
    }

    /// Hands over the block whose payload starts at `payload`, held by an array of this process
    /// (or already sealed by an earlier hand-over): seals it and counts one more task hold.
    /// Returns its reference, for the task.
    ///
    /// # Errors
    /// [`ShmError::OutOfBounds`] when no live block starts there; [`ShmError::WrongState`] when
    /// no array of this process holds it.
    pub fn share_held(&self, payload: u64) -> Result<Reference> {
        self.with_heap(|heap| {
            let (_, b) = self.held_block(heap, payload)?;
            b.set_state(BlockState::Sealed);
            b.task_holds.fetch_add(1, Relaxed);
            Ok(Reference {
                arena_id: self.id,
                offset: payload,
                size: b.len.load(Relaxed),
                generation: b.generation.load(Relaxed),
            })
        })
    }

    /// Hands a sealed object over once more, to another task (a reader passing its input
    /// straight through): the object is released only after every holder freed it.
    ///
    /// # Errors
    /// The reference errors of [`Arena::locate`]; [`ShmError::WrongState`] for an object that is
    /// not sealed.
    pub fn share(&self, reference: &Reference) -> Result<()> {
        self.with_heap(|heap| {
            let (_, b, state) = self.validate(heap, reference)?;
            if state != BlockState::Sealed {
                return Err(self.wrong_state(reference, state, "sealed"));
            }
            let holds = b.task_holds.load(Relaxed);
            let holds = if b.producer_pid.load(Relaxed) == 0 { holds.max(1) } else { holds };
            b.task_holds.store(holds + 1, Relaxed);
            Ok(())
        })
    }

    /// How many tasks may hold the object `reference` names: 1 for a plain object, the count of
    /// hand-overs for a shared one (the engine adopts a reference at most that many times).
    ///
    /// # Errors
    /// The reference errors of [`Arena::locate`].
    pub fn task_holds(&self, reference: &Reference) -> Result<u32> {
        self.with_heap(|heap| {
            let (_, b, _) = self.validate(heap, reference)?;
            let holds = b.task_holds.load(Relaxed);
            Ok(if b.producer_pid.load(Relaxed) == 0 { holds.max(1) } else { holds })
        })
    }

    /// The live block whose payload starts at `payload` and that an array of this process
    /// holds: its block offset and header.
    fn held_block<'h>(&self, heap: &Heap<'h>, payload: u64) -> Result<(u64, &'h BlockHeader)> {
        let out_of_bounds =
            || ShmError::OutOfBounds { offset: payload, size: 0, start: self.start, end: self.end };
        let offset = payload.checked_sub(GRANULE).ok_or_else(out_of_bounds)?;
        let in_data = payload % GRANULE == 0 && offset >= self.start && payload <= self.end;
        let b = heap.raw_block(offset).filter(|_| in_data).ok_or_else(out_of_bounds)?;
        let live = matches!(b.state(), Some(BlockState::Leased | BlockState::Sealed));
        if !heap.is_block_at(b, offset) || !live {
            return Err(out_of_bounds());
        }
        if b.producer_pid.load(Relaxed) != std::process::id() {
            return Err(ShmError::WrongState {
                offset: payload,
                state: "not held by an array of this process",
                wanted: "held by this process",
            });
        }
        Ok((offset, b))
    }
}
