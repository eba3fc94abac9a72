//! The mmap arena: mosec's default object store. One shared-memory file per server, mapped by
//! the engine and every worker; a stage's output is written into it once and only a 32-byte
//! [`Reference`] crosses the worker link.
//!
//! ```no_run
//! use shm::Arena;
//! # fn main() -> Result<(), shm::ShmError> {
//! let arena = Arena::create("/dev/shm", 512 << 20)?; // the server, at start
//! let mut draft = arena.alloc(12 << 20)?;            // a producer
//! draft.as_mut_slice().fill(1);
//! let reference = draft.seal()?;                     // 32 bytes travel: reference.to_bytes()
//! let span = arena.locate(&reference)?;              // a consumer: validate, then read
//! assert_eq!(span.len, 12 << 20);                    // bytes span.offset.. of the mapping
//! arena.free(&reference)?;                           // the engine, once the consumer answered
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `error.rs`: [`ShmError`], the one error type, with the numbers needed to act on each.
//! - `reference.rs`: [`Reference`] (arena id, offset, size, generation; 32-byte wire form) and
//!   [`Span`].
//! - `arena.rs`: [`Arena`]: create/open, geometry, [`Stats`], the lock and its recovery,
//!   reference validation; its submodules `arena/objects.rs` (alloc, alloc_wait, seal, locate,
//!   free) and `arena/ownership.rs` (adopt, set_owner, reclaim_owner).
//! - `draft.rs`: [`Draft`], a producer's write access to an unsealed object.
//! - `allocator.rs`: the two-level segregated-fit allocator over the shared data region, and
//!   its crash recovery.
//! - `header.rs`: the arena header and 64-byte block headers as laid out in the file.
//! - `mapping.rs`: `mmap` and typed access to the mapping; with feature `python`,
//!   `ArenaBuffer`, the mapping exported to Python by the buffer protocol. **Unsafe.**
//! - `mapping/lock.rs`: the robust process-shared mutex and the futex, part of `mapping`. **Unsafe.**
//! - `mapping/numpy_handler.rs` (feature `python`): NumPy's memory handler over the arena, part
//!   of `mapping`. **Unsafe.**
//! - `arena/holds.rs`: blocks held by a producer's array and the tasks it was lent to.
//! - `sweep.rs`: [`Arena::sweep_stale`], removing arenas of crashed servers.
//! - `process.rs`: pid liveness and start times from /proc, random ids.
//!
//! # Unsafe code
//! The `mapping` module (`mapping.rs`, its `lock.rs` and its `numpy_handler.rs`) holds all of it, each block with a `// SAFETY:` line and each
//! unsafe fn with a `# Safety` section. Payload bytes are reached only through the safe
//! `Mapping::exclusive(_mut)`, whose soundness rests on a block's one `ExclusiveSpan` (held by
//! its `Draft`). Every other module is compiled with `unsafe_code` denied.
//! `mapping.rs` documents the hazard of memory modified by another process.
//!
//! # Design, and where it departs from the first plan
//! - **One file, made once.** `/dev/shm/mosec-arena-<server pid>-<arena id>`, created with
//!   `O_CREAT | O_EXCL` and mode 0600, its memory reserved with `posix_fallocate` (a too-small
//!   /dev/shm fails at start with a clear message instead of `SIGBUS` mid-request) and mapped
//!   `MAP_SHARED` once in every process (no populate pass: the pages are resident already, and
//!   a process touches only the header, the allocator and its own objects; see `mapping.rs`).
//!   No file, `mmap` or `unlink` per object.
//! - **Allocator state lives in the mapping** (the header), so every process allocates and
//!   frees without asking the engine, under one robust process-shared pthread mutex (why not a
//!   spinlock: see `mapping/lock.rs`). A process killed while holding it is detected by the kernel
//!   (`EOWNERDEAD`); the next locker rebuilds the allocator state from the chain of block
//!   headers, which every update keeps walkable.
//! - **TLSF instead of a buddy allocator** (why: see `allocator.rs`): a buddy system would round a
//!   12 MiB tensor to 16 MiB and a 192 MiB batch to 256 MiB. TLSF keeps 64-byte granularity,
//!   coalesces at once, and reuses the most recently freed block of a size class first (LIFO,
//!   warm in cache).
//! - **Block metadata sits in a 64-byte header in front of each payload**, so references need
//!   no table, payloads stay 64-byte aligned, and validation is one cache line: arena id,
//!   bounds, a block magic, the header's own offset, the generation and the size must all
//!   match. Threat model: bugs (stale, double-freed, corrupted or foreign references), not
//!   hostile code in a worker, which can write the whole mapping anyway.
//! - **States**: `Writing` (a [`Draft`] in the producer) → `Sealed`, or `Writing` → `Leased`
//!   (handed to a Python writer) → `Sealed` via [`Arena::seal`] → freed. Only sealed objects
//!   locate; only a draft ends `Writing` (`free` refuses it), so a draft's `&mut [u8]` is
//!   sound.
//! - **No pins, no read handle.** Readers view the mapping as bytes and [`Arena::locate`] only
//!   validates; [`Arena::free`] releases at once. The first version also had a pinning `View`
//!   and a deferred-free `Doomed` state; nothing in production used them (Python cannot hold a
//!   Rust view, and pins in shared memory need per-process bookkeeping to survive crashes), so
//!   they were removed. The lifetime rule is enforced by the one party that knows who reads
//!   what: the engine frees a stage's input only after the worker holding it answered its
//!   batch, or died (`engine/src/tasks.rs`, ARCHITECTURE.md section 4).
//! - **Ownership hand-over (an addition)**: an object belongs to the pid that allocated it, so
//!   [`Arena::reclaim_owner`] frees what a dead worker left; the engine calls [`Arena::adopt`]
//!   on each reference a worker returns, so a finished output is not reclaimed with its
//!   producer while the next stage still needs it.
//! - **Bounded waits**: [`Arena::alloc`] fails at once with [`ShmError::Full`];
//!   [`Arena::alloc_wait`] sleeps on a futex in the header that every release bumps.

//! # Using it from Python (workers)
//! The arena path travels to workers (e.g. in their config); each worker calls [`Arena::open`]
//! through the engine's bindings for the allocator calls, and reads and writes the bytes
//! through that same mapping, exported by `Arena::buffer` (feature `python`) as an
//! `ArenaBuffer`: `mm = memoryview(client.buffer())`. One mapping per process, and nothing
//! pre-faults it. A reference's `offset` and `size` are file offsets: a producer that leased
//! an object writes `mm[offset:offset + size]` (or `np.frombuffer(mm, dtype, count, offset)`
//! and fills the array in place), then calls `seal`;
//! a consumer calls `locate`, which validates the reference, and reads the same range
//! (read-only numpy views: `arr.flags.writeable = False`). Allocation, sealing, freeing and
//! validation always go through Rust, never by poking the header from Python. Open the arena
//! in each worker process (workers are spawned, not forked with live handles).
//!
//! Limitations worth knowing: nothing stops code that ignores the protocol from writing a
//! sealed object through its mapping (see `mapping.rs`), or from reading one after it was
//! freed (the bytes may then belong to a newer object); [`Arena::sweep_stale`] judges liveness
//! by pid, so servers in different pid namespaces must not share one /dev/shm directory.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod allocator;
mod arena;
mod draft;
mod error;
mod header;
// The one module with unsafe code: the mapping, and the process-shared lock that lives in it.
#[allow(unsafe_code)]
mod mapping;
mod process;
mod reference;
mod sweep;

pub use arena::{Arena, Stats, FILE_PREFIX};
pub use draft::Draft;
pub use error::{Result, ShmError};
#[cfg(feature = "python")]
pub use mapping::numpy_handler::{
    failed_frees as numpy_failed_frees, set_handler as set_numpy_handler, NumpyHandler,
    HANDLER_CAPSULE_NAME as NUMPY_HANDLER_CAPSULE,
};
#[cfg(feature = "python")]
pub use mapping::ArenaBuffer;
pub use reference::{Reference, Span};
