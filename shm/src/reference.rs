//! [`Reference`]: the small, self-describing name of an object that crosses process boundaries,
//! and [`Span`]: where its bytes lie in the arena file.

use crate::error::{Result, ShmError};

/// Names one object in one arena. Fixed size, `Copy`, and checked on every use: a reference that
/// outlived its object, belongs to another arena or was made up is rejected with an error.
///
/// # Wire layout (32 bytes, little-endian)
///
/// | bytes   | field        | meaning                                                   |
/// | ------- | ------------ | --------------------------------------------------------- |
/// | 0..8    | `arena_id`   | random id written in the arena header at creation         |
/// | 8..16   | `offset`     | byte offset of the payload from the start of the file     |
/// | 16..24  | `size`       | payload length in bytes                                   |
/// | 24..32  | `generation` | unique per allocation in this arena, never 0              |
///
/// `offset` is a file offset, so code that views the mapping as bytes (Python, through an
/// `ArenaBuffer`) reads the payload at `buffer[offset:offset + size]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The arena that made it.
    pub arena_id: u64,
    /// Payload offset from the start of the arena file; always a multiple of 64.
    pub offset: u64,
    /// Payload length in bytes.
    pub size: u64,
    /// The allocation's generation: a stale reference to reused space differs here.
    pub generation: u64,
}

impl Reference {
    /// Length of [`Reference::to_bytes`].
    pub const LEN: usize = 32;

    /// The 32-byte little-endian wire form (layout in the type's docs).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..8].copy_from_slice(&self.arena_id.to_le_bytes());
        out[8..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.size.to_le_bytes());
        out[24..32].copy_from_slice(&self.generation.to_le_bytes());
        out
    }

    /// Parses the wire form. Only the length is checked here; the arena checks the rest when
    /// the reference is used.
    ///
    /// # Errors
    /// [`ShmError::BadReference`] when `bytes` is not exactly [`Reference::LEN`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Reference> {
        let bytes: &[u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| ShmError::BadReference { expected: Self::LEN, found: bytes.len() })?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Ok(Reference { arena_id: word(0), offset: word(1), size: word(2), generation: word(3) })
    }
}

/// Where a sealed object's payload lies in the arena file, for code that reads the mapping as
/// bytes (Python): bytes `offset .. offset + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Byte offset from the start of the file (a multiple of 64).
    pub offset: usize,
    /// Payload length in bytes.
    pub len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_in_little_endian() {
        let r = Reference {
            arena_id: 0x0102_0304_0506_0708,
            offset: 4096 + 64,
            size: 12 << 20,
            generation: 7,
        };
        let b = r.to_bytes();
        assert_eq!(b[0], 0x08, "arena id is little-endian");
        assert_eq!(&b[24..32], &7u64.to_le_bytes());
        assert_eq!(Reference::from_bytes(&b).unwrap(), r);
    }

    #[test]
    fn wrong_length_is_rejected() {
        let err = Reference::from_bytes(&[0u8; 31]).unwrap_err();
        assert!(matches!(err, ShmError::BadReference { expected: 32, found: 31 }));
    }
}
