//! [`Draft`]: the one handle that gives Rust code access to payload bytes, a producer's
//! exclusive write access to an object it has just allocated and not yet sealed.
//!
//! Its bytes come from `mapping.rs` through the block's one [`ExclusiveSpan`], where the safety
//! argument (the arena protocol around the `Writing` state, see `header.rs`) and all the
//! `unsafe` live. Sealed objects have no Rust handle: readers (Python, through the process's
//! mapping exported as an `ArenaBuffer`, or another mapping of the file) validate with
//! [`Arena::locate`] and read the span.

use std::fmt;

use crate::arena::Arena;
use crate::error::Result;
use crate::header::BlockState;
use crate::mapping::ExclusiveSpan;
use crate::reference::Reference;

/// A freshly allocated, unsealed object: only its producer may write it, through this handle.
/// End it with [`Draft::seal`] (readers may then locate it) or [`Draft::into_lease`] (code
/// writing through the mapping, such as Python, seals it later by reference). Dropping an unfinished draft
/// frees the object, so an error path leaks nothing.
pub struct Draft<'a> {
    /// The arena it lives in.
    arena: &'a Arena,
    /// The object.
    reference: Reference,
    /// Where the payload lies: the block's one exclusive span.
    span: ExclusiveSpan,
    /// False once sealed, leased or freed, so drop does nothing more.
    open: bool,
}

impl<'a> Draft<'a> {
    /// Wraps a block the arena just allocated in state `Writing`.
    pub(crate) fn new(arena: &'a Arena, reference: Reference) -> Draft<'a> {
        let span = ExclusiveSpan::of_new_block(arena.span(&reference));
        Draft { arena, reference, span, open: true }
    }

    /// The object's reference (not locatable until sealed).
    pub fn reference(&self) -> Reference {
        self.reference
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.reference.size as usize
    }

    /// True for a 0-byte object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload, to write in place. Its initial content is unspecified (old data).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.arena.mapping().exclusive_mut(&mut self.span).unwrap_or_default()
    }

    /// The payload as written so far.
    pub fn as_slice(&self) -> &[u8] {
        self.arena.mapping().exclusive(&self.span).unwrap_or_default()
    }

    /// Seals the object: immutable from now on, locatable by readers. Returns its reference.
    ///
    /// # Errors
    /// [`crate::ShmError::StaleReference`] when another process reclaimed this one's objects
    /// while the draft was open; the space is free already.
    pub fn seal(mut self) -> Result<Reference> {
        self.open = false;
        self.arena.finish_draft(&self.reference, BlockState::Sealed).map(|()| self.reference)
    }

    /// Hands the unsealed object to code that writes it outside Rust (a Python worker, through
    /// the process's mapping exported as an `ArenaBuffer`), which then calls [`Arena::seal`] with the returned reference. Rust
    /// code in this process must not write it any more.
    ///
    /// # Errors
    /// As [`Draft::seal`].
    pub fn into_lease(mut self) -> Result<Reference> {
        self.open = false;
        self.arena.finish_draft(&self.reference, BlockState::Leased).map(|()| self.reference)
    }
}

impl Drop for Draft<'_> {
    fn drop(&mut self) {
        if self.open {
            // An error means the block was reclaimed already (or the arena is corrupt): nothing
            // is left to release, and there is nobody to tell from a drop.
            let _ = self.arena.finish_draft(&self.reference, BlockState::Free);
        }
    }
}

impl fmt::Debug for Draft<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Draft").field("reference", &self.reference).finish()
    }
}
