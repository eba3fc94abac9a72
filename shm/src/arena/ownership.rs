//! Who owns an arena object: the pid that allocated it, until the engine adopts it. Ownership
//! decides only what [`Arena::reclaim_owner`] frees when a process dies; it never keeps an
//! object alive (freeing is always explicit).

use std::sync::atomic::Ordering::Relaxed;

use super::Arena;
use crate::error::Result;
use crate::header::BlockState;
use crate::reference::Reference;

impl Arena {
    /// Makes this process the owner of an object, so that [`Arena::reclaim_owner`] for its
    /// producer no longer frees it. The engine adopts every reference a worker hands over: from
    /// then on the task, not the worker, decides its life.
    ///
    /// # Errors
    /// As [`Arena::set_owner`].
    pub fn adopt(&self, reference: &Reference) -> Result<()> {
        self.set_owner(reference, std::process::id())
    }

    /// Makes process `pid` the owner of an object (see [`Arena::adopt`]); e.g. the engine can
    /// allocate space ahead of need and lease it to a worker under that worker's pid.
    ///
    /// # Errors
    /// The reference errors of [`Arena::locate`]; [`crate::ShmError::WrongState`] for an object
    /// still under its [`crate::Draft`] (it changes hands once sealed or leased, so a reclaim
    /// of another pid can never release a block a live draft writes).
    pub fn set_owner(&self, reference: &Reference, pid: u32) -> Result<()> {
        self.with_heap(|heap| {
            let (_, b, state) = self.validate(heap, reference)?;
            if state == BlockState::Writing {
                return Err(self.wrong_state(reference, state, "sealed or leased"));
            }
            b.owner_pid.store(pid, Relaxed);
            Ok(())
        })
    }

    /// Frees every object owned by process `pid`, which has died (the engine calls this when a
    /// worker's link drops); returns how many. For another process, that includes objects it
    /// was still writing through a draft (a dead process holds no draft; one that still runs
    /// must not go on using the arena: its drafts and references fail from now on). For this
    /// process itself it frees its sealed and leased objects and leaves its open drafts alone.
    /// Blocks another owner holds that a dead `pid`'s arrays also held lose that hold only.
    ///
    /// # Errors
    /// [`crate::ShmError::Corrupt`] when the metadata is damaged beyond repair.
    pub fn reclaim_owner(&self, pid: u32) -> Result<usize> {
        let other = pid != std::process::id();
        self.with_heap(|heap| {
            let mut owned = Vec::new();
            for offset in heap.blocks()? {
                let b = heap.block(offset)?;
                let state = b.state();
                let live = state.is_some_and(|s| s != BlockState::Free);
                let drafted = state == Some(BlockState::Writing);
                if live && b.owner_pid.load(Relaxed) == pid && (other || !drafted) {
                    owned.push(offset);
                } else if live && other && b.producer_pid.load(Relaxed) == pid {
                    // Handed over (so adopted) while its dead producer's array held it too:
                    // only that array's hold goes (see `arena/holds.rs`).
                    b.producer_pid.store(0, Relaxed);
                    if b.task_holds.load(Relaxed) == 0 {
                        owned.push(offset);
                    }
                }
            }
            // Releasing merges only free neighbours, so the other collected blocks (not free)
            // keep their headers and offsets.
            for &offset in &owned {
                heap.release(offset)?;
            }
            Ok(owned.len())
        })
    }
}
