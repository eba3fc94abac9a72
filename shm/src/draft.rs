//! The two handles that give Rust code access to payload bytes: [`Draft`] (the producer's
//! exclusive write access to an unsealed object) and [`View`] (a reader's pin on a sealed one).
//!
//! These are the only callers of the `unsafe` slice functions of `mapping.rs`; the safety
//! argument is the arena protocol each handle embodies.

use std::fmt;
use std::ops::Deref;

use crate::arena::Arena;
use crate::error::Result;
use crate::header::BlockState;
use crate::reference::{Reference, Span};

/// A freshly allocated, unsealed object: only its producer may write it, through this handle.
/// End it with [`Draft::seal`] (readers may then resolve it) or [`Draft::into_lease`] (code
/// writing through its own mapping seals it later by reference). Dropping an unfinished draft
/// frees the object, so an error path leaks nothing.
pub struct Draft<'a> {
    /// The arena it lives in.
    arena: &'a Arena,
    /// The object.
    reference: Reference,
    /// False once sealed, leased or freed, so drop does nothing more.
    open: bool,
}

impl<'a> Draft<'a> {
    /// Wraps a block the arena just allocated in state `Writing` with the draft flag set.
    pub(crate) fn new(arena: &'a Arena, reference: Reference) -> Draft<'a> {
        Draft { arena, reference, open: true }
    }

    /// The object's reference (not resolvable until sealed).
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
        let span = self.span();
        // SAFETY: this draft is the only handle to an unsealed block: `resolve` refuses unsealed
        // objects and `alloc` makes one draft per block, so no other slice of these bytes exists
        // in this process; `&mut self` makes this slice exclusive among the draft's own; and the
        // draft flag keeps the block from being released (even by `free`) while the draft lives.
        unsafe { self.arena.mapping().bytes_mut(span) }.unwrap_or_default()
    }

    /// The payload as written so far.
    pub fn as_slice(&self) -> &[u8] {
        let span = self.span();
        // SAFETY: as in `as_mut_slice`; `&self` excludes a live `&mut` from `as_mut_slice`.
        unsafe { self.arena.mapping().bytes(span) }.unwrap_or_default()
    }

    /// Seals the object: immutable from now on, resolvable by readers. Returns its reference.
    ///
    /// # Errors
    /// [`crate::ShmError::StaleReference`] when the object was freed by reference (or its owner
    /// reclaimed) while being written; it is released now.
    pub fn seal(mut self) -> Result<Reference> {
        self.open = false;
        self.arena.finish_draft(&self.reference, BlockState::Sealed).map(|()| self.reference)
    }

    /// Hands the unsealed object to code that writes through its own mapping of the arena file
    /// (a Python worker), which then calls [`Arena::seal`] with the returned reference. Rust
    /// code in this process must not write it any more.
    ///
    /// # Errors
    /// As [`Draft::seal`].
    pub fn into_lease(mut self) -> Result<Reference> {
        self.open = false;
        self.arena.finish_draft(&self.reference, BlockState::Leased).map(|()| self.reference)
    }

    /// Where the payload lies.
    fn span(&self) -> Span {
        self.arena.span(&self.reference)
    }
}

impl Drop for Draft<'_> {
    fn drop(&mut self) {
        if self.open {
            // An error here means the arena is corrupt; there is nobody to tell from a drop.
            let _ = self.arena.finish_draft(&self.reference, BlockState::Free);
        }
    }
}

impl fmt::Debug for Draft<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Draft").field("reference", &self.reference).finish()
    }
}

/// A read-only, zero-copy view of a sealed object; dereferences to its bytes. While it lives the
/// object is pinned: a `free` in any process is deferred until the view drops. `A` is `&Arena`
/// ([`Arena::resolve`]) or `Arc<Arena>` ([`Arena::resolve_owned`]).
pub struct View<A: AsRef<Arena>> {
    /// The arena it lives in.
    arena: A,
    /// The object.
    reference: Reference,
    /// Where its payload lies (validated).
    span: Span,
}

impl<A: AsRef<Arena>> View<A> {
    /// Wraps a sealed object that the arena just pinned for this view.
    pub(crate) fn new(arena: A, reference: Reference, span: Span) -> View<A> {
        View { arena, reference, span }
    }

    /// The object's reference.
    pub fn reference(&self) -> Reference {
        self.reference
    }

    /// Where the payload lies in the arena file.
    pub fn span(&self) -> Span {
        self.span
    }
}

impl<A: AsRef<Arena>> Deref for View<A> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the object is sealed (checked when the view was made), so no draft writes it,
        // and this view's pin keeps it from being released and reused until the view drops;
        // readers only ever read. Only another process breaking the protocol could write it
        // (the hazard in `mapping.rs`).
        unsafe { self.arena.as_ref().mapping().bytes(self.span) }.unwrap_or_default()
    }
}

impl<A: AsRef<Arena>> AsRef<[u8]> for View<A> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl<A: AsRef<Arena>> Drop for View<A> {
    fn drop(&mut self) {
        // An error here means the arena is corrupt; there is nobody to tell from a drop.
        let _ = self.arena.as_ref().unpin(&self.reference);
    }
}

impl<A: AsRef<Arena>> fmt::Debug for View<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("reference", &self.reference)
            .field("span", &self.span)
            .finish()
    }
}
