//! An object's life in the arena: allocated as a [`Draft`] (or leased to a writer outside Rust,
//! such as Python), sealed, located by readers, freed.
//!
//! There is no read handle and no pin: readers view the mapping as bytes and [`Arena::locate`]
//! only validates. An object's bytes stay put until someone frees it, so whoever frees must
//! know that nobody reads it any more. In mosec that is the engine, which frees an input only
//! once the worker reading it has answered its batch or is gone (ARCHITECTURE.md, lifetime
//! rules).

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::{Duration, Instant};

use super::Arena;
use crate::draft::Draft;
use crate::error::{Result, ShmError};
use crate::header::{BlockState, GRANULE};
use crate::mapping::lock::futex_wait;
use crate::reference::{Reference, Span};

/// Longest single futex sleep in [`Arena::alloc_wait`]: a bound even if a wake-up is lost
/// (a waiter killed while registered, say).
const MAX_SLEEP: Duration = Duration::from_millis(50);

impl Arena {
    /// Allocates an object of `size` payload bytes (0 allowed), 64-byte aligned, owned by this
    /// process, with a fresh generation. Write it through the returned [`Draft`], then seal it
    /// (or lease it to code that writes it outside Rust, such as Python). Never waits.
    ///
    /// # Errors
    /// [`ShmError::Full`] when no free block is large enough now; [`ShmError::TooLarge`] when
    /// none ever could be; [`ShmError::Corrupt`] when the metadata is damaged beyond repair.
    pub fn alloc(&self, size: usize) -> Result<Draft<'_>> {
        let reference = self.alloc_block(size, BlockState::Writing, 0)?;
        Ok(Draft::new(self, reference))
    }

    /// Takes a block of `size` payload bytes owned by this process and puts it in `state`,
    /// with `producer_pid` recorded (0: no array holds it). Shared by [`Arena::alloc`] and
    /// [`Arena::alloc_held`].
    pub(crate) fn alloc_block(
        &self,
        size: usize,
        state: BlockState,
        producer_pid: u32,
    ) -> Result<Reference> {
        let requested = size as u64;
        if requested > self.max_object_size() {
            return Err(ShmError::TooLarge { requested, max: self.max_object_size() });
        }
        let block = GRANULE + requested.div_ceil(GRANULE) * GRANULE;
        self.with_heap(|heap| {
            let Some(offset) = heap.alloc(block)? else {
                return Err(ShmError::Full {
                    requested,
                    capacity: self.capacity(),
                    used: self.map.header().used_bytes.load(Relaxed),
                });
            };
            let b = heap.block(offset)?;
            let generation = self.map.header().next_generation.fetch_add(1, Relaxed);
            b.owner_pid.store(std::process::id(), Relaxed);
            b.generation.store(generation, Relaxed);
            b.len.store(requested, Relaxed);
            b.task_holds.store(0, Relaxed);
            b.producer_pid.store(producer_pid, Relaxed);
            b.set_state(state); // last: see `Heap::alloc`
            Ok(Reference {
                arena_id: self.id,
                offset: offset + GRANULE,
                size: requested,
                generation,
            })
        })
    }

    /// Like [`Arena::alloc`], but when the arena is full, sleeps until another process or
    /// thread frees space (a futex in the header, no spinning) and retries, for at most
    /// `timeout` in all.
    ///
    /// # Errors
    /// As [`Arena::alloc`]; [`ShmError::Full`] once `timeout` has passed.
    pub fn alloc_wait(&self, size: usize, timeout: Duration) -> Result<Draft<'_>> {
        let start = Instant::now();
        let hdr = self.map.header();
        loop {
            // Read the free counter before trying: a free between the failed try and the sleep
            // changes it, so the futex returns at once instead of missing the wake-up.
            let seq = hdr.free_seq.load(Acquire);
            match self.alloc(size) {
                Err(ShmError::Full { .. }) if start.elapsed() < timeout => {
                    let left = timeout.saturating_sub(start.elapsed()).min(MAX_SLEEP);
                    hdr.waiters.fetch_add(1, Relaxed);
                    futex_wait(&hdr.free_seq, seq, left);
                    hdr.waiters.fetch_sub(1, Relaxed);
                }
                other => return other,
            }
        }
    }

    /// Seals a leased object (see [`Draft::into_lease`]) once its writer is done: from now on it
    /// is immutable and readers may locate it.
    ///
    /// # Errors
    /// [`ShmError::WrongState`] when the object is not leased (already sealed, or still held by
    /// a `Draft`); the reference errors of [`Arena::locate`].
    pub fn seal(&self, reference: &Reference) -> Result<()> {
        self.with_heap(|heap| {
            let (_, b, state) = self.validate(heap, reference)?;
            match state {
                BlockState::Leased => {
                    b.set_state(BlockState::Sealed);
                    Ok(())
                }
                other => Err(self.wrong_state(reference, other, "leased (unsealed)")),
            }
        })
    }

    /// Checks that `reference` names a sealed object and returns where its payload lies in the
    /// file, for code that views the mapping as bytes (a Python worker reads
    /// `buffer[span.offset:span.offset + span.len]`). Nothing is pinned: the bytes are the object's
    /// until it is freed, and the caller must stop using them before that (in mosec the engine
    /// frees a stage's input only after that stage has answered for it).
    ///
    /// # Errors
    /// [`ShmError::ForeignArena`], [`ShmError::OutOfBounds`], [`ShmError::StaleReference`] for a
    /// reference that names no live object of this arena; [`ShmError::WrongState`] when the
    /// object is not sealed yet.
    pub fn locate(&self, reference: &Reference) -> Result<Span> {
        self.with_heap(|heap| {
            let (_, _, state) = self.validate(heap, reference)?;
            match state {
                BlockState::Sealed => Ok(self.span(reference)),
                other => Err(self.wrong_state(reference, other, "sealed")),
            }
        })
    }

    /// Frees a sealed or leased object: the reference is dead and, unless something else still
    /// holds the block, the space may be reused by the next allocation. Any process may free
    /// any such object; the caller must know that nobody still reads it through this
    /// reference. An object still being written through a [`Draft`] is refused: only the draft
    /// ends it (dropping an unsealed draft frees its object), so a draft's `&mut [u8]` never
    /// outlives its block.
    ///
    /// A block handed over while its producer's array holds it (see `arena/holds.rs`) has one
    /// hold per hand-over and one for the array: `free` drops one task's hold, and the block is
    /// released with the last hold.
    ///
    /// # Errors
    /// The reference errors of [`Arena::locate`] (a second free of the same reference is a
    /// [`ShmError::StaleReference`]); [`ShmError::WrongState`] for an object under a draft, or
    /// one only its producer's array holds (it was never handed over).
    pub fn free(&self, reference: &Reference) -> Result<()> {
        self.with_heap(|heap| {
            let (offset, b, state) = self.validate(heap, reference)?;
            if state == BlockState::Writing {
                return Err(self.wrong_state(
                    reference,
                    state,
                    "sealed or leased (its draft frees it when dropped)",
                ));
            }
            // Holds are counted only once a block has more than one holder: 0 with no
            // producer is the one owner every plain object has.
            let holds = b.task_holds.load(Relaxed);
            let producer = b.producer_pid.load(Relaxed);
            if producer != 0 && holds == 0 {
                return Err(ShmError::WrongState {
                    offset: reference.offset,
                    state: "held by its producer's array only",
                    wanted: "handed over",
                });
            }
            if producer == 0 && holds <= 1 {
                heap.release(offset)
            } else {
                b.task_holds.store(holds - 1, Relaxed);
                Ok(())
            }
        })
    }

    /// Ends a draft (called by `draft.rs` only): `to` is `Sealed` (seal), `Leased` (hand over)
    /// or `Free` (dropped unsealed).
    ///
    /// # Errors
    /// [`ShmError::StaleReference`] when the block was reclaimed meanwhile (another process
    /// called [`Arena::reclaim_owner`] for this one); nothing is left to release then.
    pub(crate) fn finish_draft(&self, reference: &Reference, to: BlockState) -> Result<()> {
        self.with_heap(|heap| {
            let (offset, b, state) = self.validate(heap, reference)?;
            match (state, to) {
                (BlockState::Writing, BlockState::Free) => heap.release(offset),
                (BlockState::Writing, to) => {
                    b.set_state(to);
                    Ok(())
                }
                (other, _) => Err(self.wrong_state(reference, other, "being written")),
            }
        })
    }
}
