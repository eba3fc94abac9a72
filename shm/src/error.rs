//! The one error type of the crate.
//!
//! Every variant carries the numbers a person needs to act on it (sizes, offsets, ids), because
//! these messages end up in HTTP error bodies and server logs.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong with an arena.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The arena has no free block large enough right now. Freeing objects may help; the caller
    /// decides how long to wait (see [`crate::Arena::alloc_wait`]).
    #[error(
        "shared-memory arena is full: requested {requested} bytes, capacity {capacity} bytes, \
         {used} bytes in use"
    )]
    Full {
        /// Payload bytes asked for.
        requested: u64,
        /// Bytes the arena can hold in all.
        capacity: u64,
        /// Bytes held by live objects (payloads plus their 64-byte block headers).
        used: u64,
    },

    /// The object can never fit, even in an empty arena: waiting will not help.
    #[error(
        "object of {requested} bytes can never fit in the shared-memory arena (at most {max} \
         bytes per object): raise the arena size (--shm-size / MOSEC_SHM_SIZE)"
    )]
    TooLarge {
        /// Payload bytes asked for.
        requested: u64,
        /// The largest payload an empty arena could hold.
        max: u64,
    },

    /// The reference was made by another arena (another server, or a restarted one).
    #[error("reference belongs to arena {found:#018x}, not to this arena {expected:#018x}")]
    ForeignArena {
        /// This arena's id.
        expected: u64,
        /// The id in the reference.
        found: u64,
    },

    /// The reference points outside the arena's data region, or is misaligned: it was forged or
    /// corrupted on the way.
    #[error(
        "reference out of bounds: offset {offset}, size {size} outside the arena's data region \
         [{start}, {end}) or not 64-byte aligned"
    )]
    OutOfBounds {
        /// Payload offset in the reference.
        offset: u64,
        /// Payload size in the reference.
        size: u64,
        /// First byte of the data region.
        start: u64,
        /// One past the last byte of the data region.
        end: u64,
    },

    /// The reference names no live object: it was freed already (double free), its space was
    /// reused by a newer object (its generation is old), or it never named an object at all.
    #[error(
        "stale reference: no live object of generation {generation} and size {size} at offset \
         {offset} (freed already, reused, or never allocated)"
    )]
    StaleReference {
        /// Payload offset in the reference.
        offset: u64,
        /// Payload size in the reference.
        size: u64,
        /// Generation in the reference.
        generation: u64,
    },

    /// The object exists but the operation is not allowed in its state, e.g. locating an object
    /// that its producer has not sealed yet, or sealing one twice.
    #[error("object at offset {offset} is {state}, but this needs it {wanted}")]
    WrongState {
        /// Payload offset of the object.
        offset: u64,
        /// The state it is in.
        state: &'static str,
        /// The state the operation needs.
        wanted: &'static str,
    },

    /// A serialized reference had the wrong length.
    #[error("a reference is {expected} bytes, got {found}")]
    BadReference {
        /// [`crate::Reference::LEN`].
        expected: usize,
        /// Bytes received.
        found: usize,
    },

    /// The requested arena size is outside what this crate supports.
    #[error("arena size {requested} bytes is outside the supported range [{min}, {max}]")]
    InvalidSize {
        /// Bytes asked for.
        requested: u64,
        /// Smallest supported data region.
        min: u64,
        /// Largest supported data region.
        max: u64,
    },

    /// The file is not an arena of this version, or its header is damaged.
    #[error("{path} is not a usable arena: {reason}")]
    NotAnArena {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The allocator metadata inside the mapping is inconsistent (a process wrote over it, or
    /// died in a way recovery could not repair). The arena must be recreated.
    #[error("shared-memory arena is corrupt: {0}")]
    Corrupt(String),

    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("create", "mmap", ...).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = ShmError> = std::result::Result<T, E>;
