//! The two structures that live inside the mapping: the arena [`Header`] at offset 0 and the
//! 64-byte [`BlockHeader`] in front of every block of the data region.
//!
//! # The rule `mapping.rs` relies on
//! Every field of both structs is an atomic integer (or the [`RobustMutex`], which is plain bytes
//! to Rust). So every bit pattern is a valid value, and another process writing these bytes at
//! any moment cannot make our reads undefined behaviour: at worst we read a wrong number, and
//! every number read from the mapping is bounds-checked before it is used as an offset. Do not
//! add a non-atomic field.
//!
//! Fields are read and written with `Relaxed` ordering while the arena lock is held (the mutex
//! orders them); the few read outside the lock say why where they are used.
//!
//! # File layout
//! ```text
//! 0            Header (magic, geometry, lock, allocator state)
//! DATA_START   block | block | ... | block          (DATA_START is page aligned)
//! block     := BlockHeader (64 bytes) | payload (a multiple of 64 bytes)
//! ```
//! A reference's offset is the payload's offset: block offset + 64.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::mapping::lock::RobustMutex;

/// "MOSECAR1": the header magic, written last at creation so a half-built arena never opens.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MOSECAR1");
/// Bumped whenever the layout in this file, or the meaning of a field or state, changes.
/// 2: pins and the `Doomed` state removed (their bytes are reserved, zero).
/// 3: `task_holds` and `producer_pid`: blocks shared by a producer's array and tasks.
pub(crate) const VERSION: u32 = 3;
/// Allocation unit, alignment of every payload, and the size of a [`BlockHeader`].
pub(crate) const GRANULE: u64 = 64;
/// Marks a real block header ("MBLK"); cleared when a block is absorbed by a neighbour.
pub(crate) const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"MBLK");
/// Where the data region starts: the header rounded up to a page.
pub(crate) const DATA_START: u64 = (size_of::<Header>() as u64).div_ceil(4096) * 4096;
/// Second level of the two-level segregated-fit index: 2^5 = 32 size classes per power of two.
pub(crate) const SL_LOG2: u32 = 5;
/// Number of second-level classes per first-level class.
pub(crate) const SL_COUNT: usize = 1 << SL_LOG2;
/// Number of first-level classes: enough for blocks of up to 2^32 granules.
pub(crate) const FL_COUNT: usize = 28;
/// "No block" in free-list links.
pub(crate) const NONE: u32 = u32::MAX;

/// The arena header at offset 0 of the file.
#[repr(C)]
pub(crate) struct Header {
    /// [`MAGIC`] once the arena is fully initialised.
    pub magic: AtomicU64,
    /// [`VERSION`] of the layout.
    pub version: AtomicU32,
    /// [`GRANULE`], recorded so a build with another block size refuses the file.
    pub block_header_size: AtomicU32,
    /// Random id copied into every reference, so references from another arena are rejected.
    pub arena_id: AtomicU64,
    /// Pid of the server that created the arena (also in the file name), for `sweep_stale`.
    pub creator_pid: AtomicU32,
    /// Reserved, zero.
    pub _reserved: AtomicU32,
    /// The creator's start time (clock ticks after boot, from /proc), so `sweep_stale` is not
    /// fooled by a new process that reused the pid.
    pub creator_start_ticks: AtomicU64,
    /// Total file length in bytes.
    pub file_len: AtomicU64,
    /// First byte of the data region ([`DATA_START`]).
    pub data_start: AtomicU64,
    /// One past the last byte of the data region.
    pub data_end: AtomicU64,
    /// Guards everything below it and all block headers.
    pub lock: RobustMutex,
    /// Next generation to hand out; starts at 1 so 0 is never valid.
    pub next_generation: AtomicU64,
    /// Bytes in non-free blocks (block headers included).
    pub used_bytes: AtomicU64,
    /// Number of non-free blocks.
    pub objects: AtomicU64,
    /// Times the allocator state was rebuilt after a process died holding the lock (or damage
    /// was found): worth a log line and a metric.
    pub recoveries: AtomicU32,
    /// Non-zero once recovery found the metadata beyond repair: every call then fails.
    pub poisoned: AtomicU32,
    /// Futex word bumped on every release of space; `alloc_wait` sleeps on it.
    pub free_seq: AtomicU32,
    /// Processes sleeping on `free_seq`, so `free` skips the wake syscall when nobody waits.
    pub waiters: AtomicU32,
    /// Bit `fl` set when any free list of first-level class `fl` is non-empty.
    pub fl_bitmap: AtomicU32,
    /// Bit `sl` of entry `fl` set when free list `(fl, sl)` is non-empty.
    pub sl_bitmap: [AtomicU32; FL_COUNT],
    /// Free-list heads (granule index of the most recently freed block, or [`NONE`]).
    pub heads: [[AtomicU32; SL_COUNT]; FL_COUNT],
}

impl Header {
    /// Reads `(creator_pid, creator_start_ticks)` from the first bytes of an arena file, without
    /// mapping it (used by `sweep_stale`). `None` when the bytes are not an arena header.
    pub(crate) fn creator_from_bytes(bytes: &[u8]) -> Option<(u32, u64)> {
        let word = |at: usize, len: usize| -> Option<u64> {
            let field = bytes.get(at..at + len)?;
            let mut w = [0u8; 8];
            w[..len].copy_from_slice(field);
            Some(u64::from_le_bytes(w))
        };
        if word(offset_of!(Header, magic), 8)? != MAGIC {
            return None;
        }
        let pid = u32::try_from(word(offset_of!(Header, creator_pid), 4)?).ok()?;
        let ticks = word(offset_of!(Header, creator_start_ticks), 8)?;
        Some((pid, ticks))
    }
}

/// The life of a block. Stored as one byte in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum BlockState {
    /// On a free list.
    Free = 1,
    /// Allocated; a [`crate::Draft`] in its owner process writes it. Only that draft may end
    /// this state (seal, lease, or drop it): `free` and `set_owner` refuse a block in it, and
    /// `reclaim_owner` releases it only for a process other than the caller (one that died).
    Writing = 2,
    /// Allocated and handed to code that writes through its own mapping (a Python worker); it
    /// calls `seal` by reference when done.
    Leased = 3,
    /// Written and immutable: readers may locate it.
    Sealed = 4,
}

impl BlockState {
    /// Decodes the state byte; `None` for garbage.
    pub(crate) fn from_u8(v: u8) -> Option<BlockState> {
        Some(match v {
            1 => BlockState::Free,
            2 => BlockState::Writing,
            3 => BlockState::Leased,
            4 => BlockState::Sealed,
            _ => return None,
        })
    }

    /// Name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BlockState::Free => "free",
            BlockState::Writing => "being written (unsealed)",
            BlockState::Leased => "leased for writing (unsealed)",
            BlockState::Sealed => "sealed",
        }
    }
}

/// The 64-byte header in front of every block (free or not).
#[repr(C)]
pub(crate) struct BlockHeader {
    /// [`BLOCK_MAGIC`] on a real block.
    pub magic: AtomicU32,
    /// A [`BlockState`].
    pub state: AtomicU8,
    /// Reserved, zero (version 1 kept a draft flag here).
    pub _reserved_flags: AtomicU8,
    /// Reserved, zero.
    pub _reserved: AtomicU16,
    /// Pid of the process that allocated it (or adopted it); `reclaim_owner` matches on it.
    pub owner_pid: AtomicU32,
    /// Tasks holding a block that was handed over while something else also holds it (see
    /// `arena/holds.rs`); 0 for a block with one owner, which `free` releases at once.
    pub task_holds: AtomicU32,
    /// Block length in bytes, header included; a multiple of [`GRANULE`]. The next block starts
    /// at `offset + size`: this chain is what recovery walks.
    pub size: AtomicU64,
    /// Length of the physically previous block (0 for the first), to coalesce with it.
    pub prev_size: AtomicU64,
    /// The block's own position (granule index from the data start): a header copied
    /// elsewhere does not validate.
    pub self_index: AtomicU32,
    /// Pid of the process whose array still holds the block (NumPy's memory handler made it
    /// there), 0 when none does; see `arena/holds.rs`.
    pub producer_pid: AtomicU32,
    /// Generation of the current allocation; references must match it.
    pub generation: AtomicU64,
    /// Payload length asked for (<= size - 64); references must match it.
    pub len: AtomicU64,
    /// Free-list link: granule index of the next free block in the same class, or [`NONE`].
    pub next_free: AtomicU32,
    /// Free-list link: granule index of the previous one, or [`NONE`] at the head.
    pub prev_free: AtomicU32,
}

const _: () = assert!(size_of::<BlockHeader>() as u64 == GRANULE);
const _: () = assert!(DATA_START % 4096 == 0);

impl BlockHeader {
    /// The state, `None` when the byte is garbage.
    pub(crate) fn state(&self) -> Option<BlockState> {
        BlockState::from_u8(self.state.load(Relaxed))
    }

    /// Sets the state.
    pub(crate) fn set_state(&self, state: BlockState) {
        self.state.store(state as u8, Relaxed);
    }

    /// Block length in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Relaxed)
    }
}
