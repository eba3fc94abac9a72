//! [`Arena`]: one shared-memory file per server, mapped by every process of the server, with
//! the allocator state inside it so any process can allocate, seal, resolve and free.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::allocator::Heap;
use crate::error::{Result, ShmError};
use crate::handle::{Draft, View};
use crate::header::{BlockHeader, BlockState, Header, DATA_START, FLAG_DRAFT, GRANULE, MAGIC};
use crate::header::{PINS_SHARED, VERSION};
use crate::lock::{futex_wait, futex_wake_all, Acquired};
use crate::mapping::Mapping;
use crate::process;
use crate::reference::{Reference, Span};

/// Every arena file is named `mosec-arena-<server pid>-<arena id in hex>`.
pub const FILE_PREFIX: &str = "mosec-arena-";

/// Smallest data region accepted by [`Arena::create`].
const MIN_CAPACITY: u64 = 4096;
/// Largest data region: free-list links are 32-bit granule indices.
const MAX_CAPACITY: u64 = (u32::MAX as u64) * GRANULE;
/// Longest single futex sleep in [`Arena::alloc_wait`]: a bound even if a wake-up is lost
/// (a waiter killed while registered, say).
const MAX_SLEEP: Duration = Duration::from_millis(50);

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
    /// The shared mapping of the whole file.
    map: Mapping,
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

impl AsRef<Arena> for Arena {
    fn as_ref(&self) -> &Arena {
        self
    }
}

impl Arena {
    /// Creates a new arena file of `size_bytes` (rounded down to 64; the first page(s) hold the
    /// header, the rest is capacity) in `dir` (`/dev/shm` in production), exclusively, with its
    /// memory reserved and pre-faulted so no request pays page faults.
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
        let map = Mapping::create(&path, len)?;

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
        let map = Mapping::open(&path)?;
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

    /// Allocates an object of `size` payload bytes (0 allowed), 64-byte aligned, owned by this
    /// process, with a fresh generation. Write it through the returned [`Draft`], then seal it
    /// (or lease it to code that writes through its own mapping). Never waits.
    ///
    /// # Errors
    /// [`ShmError::Full`] when no free block is large enough now; [`ShmError::TooLarge`] when
    /// none ever could be; [`ShmError::Corrupt`] when the metadata is damaged beyond repair.
    pub fn alloc(&self, size: usize) -> Result<Draft<'_>> {
        let requested = size as u64;
        if requested > self.max_object_size() {
            return Err(ShmError::TooLarge { requested, max: self.max_object_size() });
        }
        let block = GRANULE + requested.div_ceil(GRANULE) * GRANULE;
        let reference = self.with_heap(|heap| {
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
            b.pins.store(0, Relaxed);
            b.flags.store(FLAG_DRAFT, Relaxed);
            b.set_state(BlockState::Writing); // last: see `Heap::alloc`
            Ok(Reference {
                arena_id: self.id,
                offset: offset + GRANULE,
                size: requested,
                generation,
            })
        })?;
        Ok(Draft::new(self, reference))
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
    /// is immutable and readers may resolve it.
    ///
    /// # Errors
    /// [`ShmError::WrongState`] when the object is not leased (already sealed, or still held by
    /// a `Draft`); the reference errors of [`Arena::resolve`].
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

    /// A read-only view of a sealed object, zero-copy. The view pins the object: freeing it
    /// meanwhile is deferred until the view is dropped, so its bytes never change under it.
    ///
    /// # Errors
    /// [`ShmError::ForeignArena`], [`ShmError::OutOfBounds`], [`ShmError::StaleReference`] for a
    /// reference that names no live object of this arena; [`ShmError::WrongState`] when the
    /// object is not sealed yet.
    pub fn resolve(&self, reference: &Reference) -> Result<View<&Arena>> {
        let span = self.pin(reference)?;
        Ok(View::new(self, *reference, span))
    }

    /// [`Arena::resolve`] for an arena in an `Arc`: the view owns a clone of the `Arc`, so it
    /// can be `'static` (e.g. the body of an HTTP response).
    ///
    /// # Errors
    /// As [`Arena::resolve`].
    pub fn resolve_owned(self: &Arc<Self>, reference: &Reference) -> Result<View<Arc<Arena>>> {
        let span = self.pin(reference)?;
        Ok(View::new(Arc::clone(self), *reference, span))
    }

    /// Checks that `reference` names a sealed object and returns where its payload lies in the
    /// file, for a process that maps the file itself (a Python worker reads
    /// `mm[span.offset:span.offset + span.len]`). Nothing is pinned: the caller must stop using
    /// the bytes before the object is freed.
    ///
    /// # Errors
    /// As [`Arena::resolve`].
    pub fn locate(&self, reference: &Reference) -> Result<Span> {
        self.with_heap(|heap| {
            let (_, _, state) = self.validate(heap, reference)?;
            match state {
                BlockState::Sealed => Ok(self.span(reference)),
                other => Err(self.wrong_state(reference, other, "sealed")),
            }
        })
    }

    /// Frees an object (sealed, leased, or still being written). Any process may free any
    /// object. If views or a draft still pin it, the space is released when the last pin goes;
    /// the reference is dead at once either way.
    ///
    /// # Errors
    /// The reference errors of [`Arena::resolve`]; a second free of the same reference is a
    /// [`ShmError::StaleReference`].
    pub fn free(&self, reference: &Reference) -> Result<()> {
        self.with_heap(|heap| {
            let (offset, b, state) = self.validate(heap, reference)?;
            if state == BlockState::Doomed {
                return Err(self.stale(reference));
            }
            self.release_or_doom(heap, offset, b)
        })
    }

    /// Makes this process the owner of an object, so that [`Arena::reclaim_owner`] for its
    /// producer no longer frees it. The engine adopts every reference a worker hands over: from
    /// then on the task, not the worker, decides its life.
    ///
    /// # Errors
    /// The reference errors of [`Arena::resolve`].
    pub fn adopt(&self, reference: &Reference) -> Result<()> {
        self.set_owner(reference, std::process::id())
    }

    /// Makes process `pid` the owner of an object (see [`Arena::adopt`]); e.g. the engine can
    /// allocate space ahead of need and lease it to a worker under that worker's pid.
    ///
    /// # Errors
    /// The reference errors of [`Arena::resolve`].
    pub fn set_owner(&self, reference: &Reference, pid: u32) -> Result<()> {
        self.with_heap(|heap| {
            let (_, b, state) = self.validate(heap, reference)?;
            if state == BlockState::Doomed {
                return Err(self.stale(reference));
            }
            b.owner_pid.store(pid, Relaxed);
            Ok(())
        })
    }

    /// Frees every object owned by process `pid`, which has died (the engine calls this when a
    /// worker's link drops), and drops the pins of the views it held. Objects still pinned by
    /// views of other processes are released when those go. Returns how many objects were
    /// freed. For this process itself it frees its objects but leaves its live drafts and views
    /// alone; for another process that still runs, its drafts and references fail from now on
    /// (it must not go on using the arena).
    ///
    /// # Errors
    /// [`ShmError::Corrupt`] when the metadata is damaged beyond repair.
    pub fn reclaim_owner(&self, pid: u32) -> Result<usize> {
        let dead = pid != std::process::id();
        self.with_heap(|heap| {
            let mut affected = Vec::new();
            for offset in heap.blocks()? {
                let b = heap.block(offset)?;
                let owned = b.owner_pid.load(Relaxed) == pid;
                let pinned = dead && b.pins.load(Relaxed) > 0 && b.pin_pid.load(Relaxed) == pid;
                if b.state() != Some(BlockState::Free) && (owned || pinned) {
                    affected.push(offset);
                }
            }
            let mut freed = 0;
            for offset in affected {
                let b = heap.block(offset)?;
                if dead {
                    // A dead process holds no draft and no view any more.
                    if b.owner_pid.load(Relaxed) == pid {
                        b.flags.fetch_and(!FLAG_DRAFT, Relaxed);
                    }
                    if b.pin_pid.load(Relaxed) == pid {
                        b.pins.store(0, Relaxed);
                        b.pin_pid.store(0, Relaxed);
                    }
                }
                match b.state() {
                    Some(BlockState::Doomed) if b.unpinned() => heap.release(offset)?,
                    Some(BlockState::Doomed) => {}
                    _ if b.owner_pid.load(Relaxed) == pid => {
                        freed += 1;
                        self.release_or_doom(heap, offset, b)?;
                    }
                    _ => {}
                }
            }
            Ok(freed)
        })
    }

    // ---- used by `handle.rs` -------------------------------------------------------------

    /// Where a validated reference's payload lies.
    pub(crate) fn span(&self, reference: &Reference) -> Span {
        Span { offset: reference.offset as usize, len: reference.size as usize }
    }

    /// The mapping, for the payload slices of drafts and views.
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// Ends a draft: `to` is `Sealed` (seal), `Leased` (hand over) or `Free` (dropped unsealed).
    pub(crate) fn finish_draft(&self, reference: &Reference, to: BlockState) -> Result<()> {
        self.with_heap(|heap| {
            let (offset, b, state) = self.validate(heap, reference)?;
            b.flags.fetch_and(!FLAG_DRAFT, Relaxed);
            match (state, to) {
                (BlockState::Writing, BlockState::Free) => heap.release(offset),
                (BlockState::Writing, to) => {
                    b.set_state(to);
                    Ok(())
                }
                // Freed by reference while the draft was open: the draft was the last pin.
                (BlockState::Doomed, _) => {
                    if b.unpinned() {
                        heap.release(offset)?;
                    }
                    match to {
                        BlockState::Free => Ok(()),
                        _ => Err(self.stale(reference)),
                    }
                }
                (other, _) => Err(self.wrong_state(reference, other, "being written")),
            }
        })
    }

    /// Drops one view's pin; releases the object if it was freed meanwhile and this was the
    /// last pin.
    pub(crate) fn unpin(&self, reference: &Reference) -> Result<()> {
        self.with_heap(|heap| {
            let (offset, b, state) = self.validate(heap, reference)?;
            let pins = b.pins.load(Relaxed).saturating_sub(1);
            b.pins.store(pins, Relaxed);
            if pins == 0 {
                b.pin_pid.store(0, Relaxed);
            }
            if state == BlockState::Doomed && b.unpinned() {
                heap.release(offset)?;
            }
            Ok(())
        })
    }

    // ---- internals -----------------------------------------------------------------------

    /// Validates a sealed object and adds a pin for a view.
    fn pin(&self, reference: &Reference) -> Result<Span> {
        self.with_heap(|heap| {
            let (_, b, state) = self.validate(heap, reference)?;
            if state != BlockState::Sealed {
                return Err(self.wrong_state(reference, state, "sealed"));
            }
            let pins = b.pins.load(Relaxed);
            let more = pins.checked_add(1).ok_or_else(|| {
                ShmError::Corrupt(format!("pin count overflow at {}", reference.offset))
            })?;
            let me = std::process::id();
            if pins == 0 {
                b.pin_pid.store(me, Relaxed);
            } else if b.pin_pid.load(Relaxed) != me {
                b.pin_pid.store(PINS_SHARED, Relaxed);
            }
            b.pins.store(more, Relaxed);
            Ok(self.span(reference))
        })
    }

    /// Releases the block now if nothing pins it, else marks it doomed (released by the last
    /// unpin).
    fn release_or_doom(&self, heap: &Heap<'_>, offset: u64, b: &BlockHeader) -> Result<()> {
        if b.unpinned() {
            heap.release(offset)
        } else {
            b.set_state(BlockState::Doomed);
            Ok(())
        }
    }

    /// Checks that `reference` names a live block of this arena: same arena, in bounds, a real
    /// block header at `offset - 64` with the same generation and size, not free. Returns the
    /// block offset, header and state (`Doomed` included: callers decide).
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

    /// A [`ShmError::WrongState`] (or stale, for a doomed object).
    fn wrong_state(&self, r: &Reference, state: BlockState, wanted: &'static str) -> ShmError {
        match state {
            BlockState::Doomed | BlockState::Free => self.stale(r),
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
