//! [`Arena`]: one shared-memory file per server, mapped by every process of the server, with
//! the allocator state inside it so any process can allocate, seal, locate and free.
//!
//! This file holds the arena itself: making and mapping the file, its geometry and counters,
//! the lock every operation runs under (with crash recovery), and reference validation. What
//! is done to objects lives in the two submodules:
//! - `arena/objects.rs`: an object's life: alloc (a [`crate::Draft`]), seal, locate, free.
//! - `arena/ownership.rs`: who owns an object: adopt, set_owner, reclaim_owner.
//! - `arena/holds.rs`: blocks held by a producer's array and by the tasks it was handed to.

mod holds;
mod objects;
mod ownership;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use crate::allocator::Heap;
use crate::error::{Result, ShmError};
use crate::header::{BlockHeader, BlockState, Header, DATA_START, GRANULE, MAGIC, VERSION};
use crate::mapping::lock::{futex_wake_all, Acquired};
use crate::mapping::Mapping;
use crate::process;
use crate::reference::{Reference, Span};

/// Every arena file is named `mosec-arena-<server pid>-<arena id in hex>`.
pub const FILE_PREFIX: &str = "mosec-arena-";

/// Smallest data region accepted by [`Arena::create`].
const MIN_CAPACITY: u64 = 4096;
/// Largest data region: free-list links are 32-bit granule indices.
const MAX_CAPACITY: u64 = (u32::MAX as u64) * GRANULE;

/// Occupancy of an arena, for metrics and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of the data region (the file minus its header page(s)).
    pub capacity: u64,
    /// Bytes held by live objects: payloads rounded up to 64 bytes, plus a 64-byte header each.
    pub used_bytes: u64,
    /// Live objects (allocated and not yet released).
    pub objects: u64,
}

/// A mapped arena. The process that [`create`](Arena::create)s it owns the file and removes it
/// on drop; processes that [`open`](Arena::open) it only unmap. `Send + Sync`: share it between
/// threads by reference or `Arc`.
pub struct Arena {
    /// The shared mapping of the whole file; shared with the Python buffers exported from it
    /// (`ArenaBuffer`), which keep it mapped for as long as any view of them lives.
    map: Arc<Mapping>,
    /// The file, for error messages and removal.
    path: PathBuf,
    /// This arena's id (validated copy of the header's).
    id: u64,
    /// First byte of the data region (validated copy: the header is never trusted again).
    start: u64,
    /// One past the last byte of the data region (validated copy).
    end: u64,
    /// True in the process that created the file: it removes the file on drop.
    creator: bool,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("path", &self.path)
            .field("id", &format_args!("{:#018x}", self.id))
            .field("stats", &self.stats())
            .field("creator", &self.creator)
            .finish()
    }
}

impl Arena {
    /// Creates a new arena file of `size_bytes` (rounded down to 64; the first page(s) hold the
    /// header, the rest is capacity) in `dir` (`/dev/shm` in production), exclusively, with its
    /// memory reserved (so a too-small /dev/shm fails now, not with `SIGBUS` mid-request).
    ///
    /// # Errors
    /// [`ShmError::InvalidSize`] for a size outside the supported range; [`ShmError::Io`] when
    /// the file cannot be created, reserved (e.g. /dev/shm too small) or mapped.
    pub fn create(dir: impl AsRef<Path>, size_bytes: u64) -> Result<Arena> {
        let file_len = size_bytes / GRANULE * GRANULE;
        let capacity = file_len.saturating_sub(DATA_START);
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(ShmError::InvalidSize {
                requested: size_bytes,
                min: DATA_START + MIN_CAPACITY,
                max: DATA_START + MAX_CAPACITY,
            });
        }
        let len = usize::try_from(file_len).map_err(|_| ShmError::InvalidSize {
            requested: size_bytes,
            min: DATA_START + MIN_CAPACITY,
            max: usize::MAX as u64,
        })?;
        let pid = std::process::id();
        let io_err = |op, source| ShmError::Io { op, path: dir.as_ref().to_path_buf(), source };
        let id = process::random_id().map_err(|e| io_err("read /dev/urandom for", e))?;
        let path = dir.as_ref().join(format!("{FILE_PREFIX}{pid}-{id:016x}"));
        let map = Arc::new(Mapping::create(&path, len)?);

        let hdr = map.header();
        hdr.version.store(VERSION, Relaxed);
        hdr.block_header_size.store(GRANULE as u32, Relaxed);
        hdr.arena_id.store(id, Relaxed);
        hdr.creator_pid.store(pid, Relaxed);
        hdr.creator_start_ticks.store(process::start_ticks(pid).unwrap_or(0), Relaxed);
        hdr.file_len.store(file_len, Relaxed);
        hdr.data_start.store(DATA_START, Relaxed);
        hdr.data_end.store(file_len, Relaxed);
        hdr.next_generation.store(1, Relaxed);
        let arena = Arena { map, path, id, start: DATA_START, end: file_len, creator: true };
        arena.with_heap(|heap| heap.init())?;
        // Published last: `open` refuses the file until the magic is there.
        arena.map.header().magic.store(MAGIC, Release);
        Ok(arena)
    }

    /// Maps an arena that another process created.
    ///
    /// # Errors
    /// [`ShmError::Io`] when the file cannot be opened or mapped; [`ShmError::NotAnArena`] when
    /// its header is not a complete arena header of this version.
    pub fn open(path: impl AsRef<Path>) -> Result<Arena> {
        let path = path.as_ref().to_path_buf();
        let map = Arc::new(Mapping::open(&path)?);
        let hdr = map.header();
        let bad = |reason: String| ShmError::NotAnArena { path: path.clone(), reason };
        if hdr.magic.load(Acquire) != MAGIC {
            return Err(bad("no arena magic (not an arena, or still being created)".into()));
        }
        let version = hdr.version.load(Relaxed);
        if version != VERSION || hdr.block_header_size.load(Relaxed) != GRANULE as u32 {
            return Err(bad(format!("layout version {version}, expected {VERSION}")));
        }
        let (start, end) = (hdr.data_start.load(Relaxed), hdr.data_end.load(Relaxed));
        let len = map.len() as u64;
        let capacity = end.saturating_sub(start);
        if start != DATA_START
            || end > len
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || end % GRANULE != 0
        {
            return Err(bad(format!("data region [{start}, {end}) does not fit {len} bytes")));
        }
        Ok(Arena { id: hdr.arena_id.load(Relaxed), map, path, start, end, creator: false })
    }

    /// The arena file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The random id carried by every reference of this arena.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True in the process that created the file (and removes it on drop).
    pub fn is_creator(&self) -> bool {
        self.creator
    }

    /// Bytes in the data region.
    pub fn capacity(&self) -> u64 {
        self.end - self.start
    }

    /// The largest payload an empty arena can hold (capacity minus one block header).
    pub fn max_object_size(&self) -> u64 {
        self.capacity() - GRANULE
    }

    /// Current occupancy. Lock-free: reads two counters that may be a moment apart.
    pub fn stats(&self) -> Stats {
        let hdr = self.map.header();
        Stats {
            capacity: self.capacity(),
            used_bytes: hdr.used_bytes.load(Relaxed),
            objects: hdr.objects.load(Relaxed),
        }
    }

    /// How many times the allocator state has been rebuilt, in any process, because a process
    /// died while holding the arena lock (or damaged metadata was found and repaired).
    pub fn recoveries(&self) -> u32 {
        self.map.header().recoveries.load(Relaxed)
    }

    /// This process's mapping of the whole file as a Python buffer object, for Python to read
    /// and write payloads through (see [`ArenaBuffer`](crate::ArenaBuffer)).
    #[cfg(feature = "python")]
    pub fn buffer(&self) -> crate::ArenaBuffer {
        crate::ArenaBuffer::new(Arc::clone(&self.map))
    }

    // ---- used by the submodules and `draft.rs` -------------------------------------------

    /// Where a validated reference's payload lies.
    pub(crate) fn span(&self, reference: &Reference) -> Span {
        Span { offset: reference.offset as usize, len: reference.size as usize }
    }

    /// The mapping, for the payload slices of drafts.
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// Checks that `reference` names a live block of this arena: same arena, in bounds, a real
    /// block header at `offset - 64` with the same generation and size, not free. Returns the
    /// block offset, header and state (never `Free`).
    fn validate<'h>(
        &self,
        heap: &Heap<'h>,
        reference: &Reference,
    ) -> Result<(u64, &'h BlockHeader, BlockState)> {
        if reference.arena_id != self.id {
            return Err(ShmError::ForeignArena { expected: self.id, found: reference.arena_id });
        }
        let out_of_bounds = ShmError::OutOfBounds {
            offset: reference.offset,
            size: reference.size,
            start: self.start,
            end: self.end,
        };
        let in_bounds = reference.offset % GRANULE == 0
            && reference.offset >= self.start + GRANULE
            && reference.offset.checked_add(reference.size).is_some_and(|end| end <= self.end);
        if !in_bounds {
            return Err(out_of_bounds);
        }
        let offset = reference.offset - GRANULE;
        let b: &'h BlockHeader = heap.raw_block(offset).ok_or(out_of_bounds)?;
        let matches = heap.is_block_at(b, offset)
            && reference.generation != 0
            && b.generation.load(Relaxed) == reference.generation
            && b.len.load(Relaxed) == reference.size;
        match b.state() {
            Some(state) if matches && state != BlockState::Free => Ok((offset, b, state)),
            _ => Err(self.stale(reference)),
        }
    }

    /// Runs `f` with the arena lock held. Recovers the allocator if a process died holding the
    /// lock (or `f` finds the metadata inconsistent), and wakes `alloc_wait` sleepers after
    /// unlocking when `f` released space.
    fn with_heap<T>(&self, f: impl FnOnce(&Heap<'_>) -> Result<T>) -> Result<T> {
        let hdr = self.map.header();
        let (guard, acquired) = hdr.lock.lock().map_err(|source| ShmError::Io {
            op: "lock arena",
            path: self.path.clone(),
            source,
        })?;
        let heap = Heap::new(&self.map, self.start, self.end);
        if acquired == Acquired::OwnerDied {
            self.repair(&heap, hdr);
            guard.mark_consistent().map_err(|source| ShmError::Io {
                op: "recover lock of",
                path: self.path.clone(),
                source,
            })?;
        }
        if hdr.poisoned.load(Relaxed) != 0 {
            return Err(ShmError::Corrupt(
                "allocator metadata was damaged beyond repair; restart the server".into(),
            ));
        }
        let seq = hdr.free_seq.load(Relaxed);
        let out = f(&heap);
        if matches!(out, Err(ShmError::Corrupt(_))) {
            self.repair(&heap, hdr);
        }
        let released = hdr.free_seq.load(Relaxed) != seq;
        drop(guard);
        if released && hdr.waiters.load(Relaxed) != 0 {
            futex_wake_all(&hdr.free_seq);
        }
        out
    }

    /// Rebuilds the allocator state from the block chain; poisons the arena if that fails.
    fn repair(&self, heap: &Heap<'_>, hdr: &Header) {
        hdr.recoveries.fetch_add(1, Relaxed);
        if heap.rebuild().is_err() {
            hdr.poisoned.store(1, Relaxed);
        }
    }

    /// A [`ShmError::StaleReference`] for `reference`.
    fn stale(&self, reference: &Reference) -> ShmError {
        ShmError::StaleReference {
            offset: reference.offset,
            size: reference.size,
            generation: reference.generation,
        }
    }

    /// A [`ShmError::WrongState`] (or stale, for a free block).
    fn wrong_state(&self, r: &Reference, state: BlockState, wanted: &'static str) -> ShmError {
        match state {
            BlockState::Free => self.stale(r),
            state => ShmError::WrongState { offset: r.offset, state: state.name(), wanted },
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if self.creator {
            // Openers keep their mappings; the memory goes when the last one unmaps.
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for one test, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("shm-unit-{}-{name}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_lock_holder_that_died_mid_update_is_recovered_from() {
        let scratch = Scratch::new("owner-died");
        let arena = Arena::create(&scratch.0, 1 << 20).unwrap();
        let a = arena.alloc(1000).unwrap().seal().unwrap();
        let b = arena.alloc(1000).unwrap().seal().unwrap();
        let c = arena.alloc(1000).unwrap().seal().unwrap();
        arena.free(&a).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let hdr = arena.map.header();
                let (guard, _) = hdr.lock.lock().unwrap();
                // Die half-way through freeing `b`: marked free but not merged with `a`, the
                // free lists emptied, the counters wrong.
                let block = arena.map.block(b.offset - GRANULE).unwrap();
                block.set_state(BlockState::Free);
                hdr.fl_bitmap.store(0, Relaxed);
                hdr.sl_bitmap.iter().for_each(|m| m.store(0, Relaxed));
                hdr.used_bytes.store(12345, Relaxed);
                hdr.objects.store(99, Relaxed);
                std::mem::forget(guard); // the thread exits holding the robust mutex
            });
        });
        // The next locker gets EOWNERDEAD and rebuilds: `a` and `b` are one free block again.
        let ab = arena.alloc(2000).unwrap();
        assert_eq!(ab.reference().offset, a.offset);
        assert_eq!(arena.stats().objects, 2);
        drop(ab);
        arena.free(&c).unwrap();
        assert_eq!(arena.stats().used_bytes, 0);
        drop(arena.alloc(arena.max_object_size() as usize).unwrap());
    }
}
