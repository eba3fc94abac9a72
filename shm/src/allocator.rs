//! The allocator: a two-level segregated fit (TLSF) over the data region, with its state in the
//! shared header so any process holding the arena lock can allocate and free.
//!
//! # Why TLSF and not a buddy allocator
//! Both are O(1) and coalesce. A buddy allocator rounds every block up to a power of two: a
//! 12 MiB tensor takes 16 MiB and a 192 MiB batch takes 256 MiB, so up to half the arena is lost
//! to rounding exactly for the large objects this arena exists for. TLSF splits blocks to the
//! granule (64 bytes) and merges a freed block with its free physical neighbours at once, so
//! after any churn the free space is maximal runs and a large object fits again as soon as its
//! bytes are free and contiguous.
//!
//! - Size classes: 32 per power of two (exact below 2 KiB), each with a LIFO free list, plus
//!   two bitmaps to find the smallest non-empty class with one `trailing_zeros` each.
//! - LIFO reuse: `alloc` first tries the head of the request's own class (the most recently
//!   freed block of about that size, still warm in cache) before the good-fit search.
//! - Boundary tags: each block header records its own size and its previous neighbour's, so
//!   coalescing needs no search.
//!
//! # Crash consistency
//! A process may die holding the lock, at any instruction. Updates are ordered so that the chain
//! of blocks (`offset + size` from the start of the data region) is always walkable: a new
//! header is written before the size that makes it reachable, and a merge commits by growing
//! the surviving block's size before erasing the absorbed header. [`Heap::rebuild`] walks that
//! chain and rebuilds free lists, bitmaps, boundary tags and counters from it.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::error::{Result, ShmError};
use crate::header::{
    BlockHeader, BlockState, Header, BLOCK_MAGIC, FL_COUNT, GRANULE, NONE, SL_COUNT, SL_LOG2,
};
use crate::mapping::Mapping;

/// The allocator's view of an arena. Only built while the arena lock is held.
pub(crate) struct Heap<'a> {
    /// The mapping, for block headers.
    map: &'a Mapping,
    /// The arena header (allocator state).
    hdr: &'a Header,
    /// First byte of the data region: this process's validated copy, never re-read.
    start: u64,
    /// One past the last byte of the data region (validated copy).
    end: u64,
}

impl<'a> Heap<'a> {
    /// The allocator over `[start, end)` of `map`. The caller holds the lock and has validated
    /// the geometry against the mapping's length.
    pub(crate) fn new(map: &'a Mapping, start: u64, end: u64) -> Heap<'a> {
        Heap { map, hdr: map.header(), start, end }
    }

    /// Sets up a fresh arena: empty free lists, then one free block spanning the data region.
    pub(crate) fn init(&self) -> Result<()> {
        self.clear_free_lists();
        let b = self.write_header(self.start, self.end - self.start, 0)?;
        b.set_state(BlockState::Free);
        self.insert_free(self.start)
    }

    /// The block header at `offset`, checked to be a real block of this heap.
    pub(crate) fn block(&self, offset: u64) -> Result<&'a BlockHeader> {
        let b = self
            .map
            .block(offset)
            .filter(|_| offset < self.end)
            .ok_or_else(|| corrupt(format!("block offset {offset} outside the data region")))?;
        let size = b.size();
        let fits = size >= GRANULE
            && size % GRANULE == 0
            && offset.checked_add(size).is_some_and(|e| e <= self.end);
        if !self.is_block_at(b, offset) || !fits {
            return Err(corrupt(format!("no valid block header at offset {offset}")));
        }
        Ok(b)
    }

    /// The header at `offset` if it lies in the data region, without checking its contents
    /// (reference validation checks them itself, reporting a stale reference, not corruption).
    pub(crate) fn raw_block(&self, offset: u64) -> Option<&'a BlockHeader> {
        self.map.block(offset).filter(|_| offset < self.end)
    }

    /// Takes a free block of exactly `size` bytes (a multiple of [`GRANULE`]) off the free lists,
    /// splitting off the unused tail. `None` when nothing fits. The block is still marked free:
    /// the caller fills in owner and generation and sets its state last, so a process dying
    /// half-way leaves either a free block (put back by recovery) or one its owner pid claims.
    pub(crate) fn alloc(&self, size: u64) -> Result<Option<u64>> {
        let want = size / GRANULE;
        let Some(offset) = self.find_fit(want)? else {
            return Ok(None);
        };
        self.remove_free(offset)?;
        let b = self.block(offset)?;
        let have = b.size();
        if have > size {
            // The tail header is written in full before the size change that makes it reachable.
            let tail = offset + size;
            let t = self.write_header(tail, have - size, size)?;
            t.set_state(BlockState::Free);
            b.size.store(size, Relaxed);
            self.set_prev_size(tail + (have - size), have - size)?;
            self.insert_free(tail)?;
        }
        self.hdr.used_bytes.fetch_add(size, Relaxed);
        self.hdr.objects.fetch_add(1, Relaxed);
        Ok(Some(offset))
    }

    /// Returns the non-free block at `offset` to the free lists, merged with free neighbours.
    /// Bumps the futex word that `alloc_wait` sleeps on.
    pub(crate) fn release(&self, offset: u64) -> Result<()> {
        let b = self.block(offset)?;
        let size = b.size();
        b.set_state(BlockState::Free);
        b.generation.store(0, Relaxed);
        b.task_holds.store(0, Relaxed);
        b.producer_pid.store(0, Relaxed);
        self.hdr.used_bytes.fetch_sub(size, Relaxed);
        self.hdr.objects.fetch_sub(1, Relaxed);

        let mut start = offset;
        let mut total = size;
        let mut absorbed = Vec::new();
        let next = offset + size;
        if next < self.end && self.block(next)?.state() == Some(BlockState::Free) {
            self.remove_free(next)?;
            total += self.block(next)?.size();
            absorbed.push(next);
        }
        let prev_size = b.prev_size.load(Relaxed);
        if prev_size != 0 {
            let prev = offset
                .checked_sub(prev_size)
                .filter(|p| *p >= self.start)
                .ok_or_else(|| corrupt(format!("bad previous size at offset {offset}")))?;
            if self.block(prev)?.state() == Some(BlockState::Free) {
                self.remove_free(prev)?;
                total += self.block(prev)?.size();
                absorbed.push(offset);
                start = prev;
            }
        }
        // Commit point: the surviving block grows over the absorbed ones, then their headers
        // are erased so they can never validate again.
        self.block(start)?.size.store(total, Relaxed);
        for a in absorbed {
            if let Some(h) = self.map.block(a) {
                h.magic.store(0, Relaxed);
            }
        }
        self.set_prev_size(start + total, total)?;
        self.insert_free(start)?;
        self.hdr.free_seq.fetch_add(1, Release);
        Ok(())
    }

    /// Offsets of all blocks, in address order.
    pub(crate) fn blocks(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let mut offset = self.start;
        while offset < self.end {
            out.push(offset);
            offset += self.block(offset)?.size();
        }
        Ok(out)
    }

    /// Rebuilds all allocator state from the chain of blocks, after a process died holding the
    /// lock: boundary tags, merges of adjacent free blocks, free lists, bitmaps and counters.
    ///
    /// # Errors
    /// [`ShmError::Corrupt`] when the chain itself is broken.
    pub(crate) fn rebuild(&self) -> Result<()> {
        let mut prev: Option<(u64, bool)> = None; // (offset, is free) of the previous block
        let mut offset = self.start;
        while offset < self.end {
            let b = self.block(offset)?;
            let free = match b.state() {
                Some(BlockState::Free) => true,
                Some(_) => false,
                None => return Err(corrupt(format!("bad block state at offset {offset}"))),
            };
            match prev {
                Some((p, true)) if free => {
                    let pb = self.block(p)?;
                    pb.size.store(pb.size() + b.size(), Relaxed);
                    b.magic.store(0, Relaxed);
                    offset = p + pb.size();
                    continue;
                }
                Some((p, _)) => b.prev_size.store(offset - p, Relaxed),
                None => b.prev_size.store(0, Relaxed),
            }
            prev = Some((offset, free));
            offset += b.size();
        }

        self.clear_free_lists();
        let (mut used, mut objects) = (0, 0);
        for offset in self.blocks()? {
            let b = self.block(offset)?;
            if b.state() == Some(BlockState::Free) {
                self.insert_free(offset)?;
            } else {
                used += b.size();
                objects += 1;
            }
        }
        self.hdr.used_bytes.store(used, Relaxed);
        self.hdr.objects.store(objects, Relaxed);
        Ok(())
    }

    /// The free block to use for `want` granules: the head of the request's own class when it
    /// is big enough (LIFO reuse), else the head of the smallest class whose blocks all fit.
    fn find_fit(&self, want: u64) -> Result<Option<u64>> {
        let (fl, sl) = class_of(want);
        let head = self.hdr.heads[fl][sl].load(Relaxed);
        if head != NONE {
            let offset = self.offset_of(head);
            if self.free_block(offset)?.size() >= want * GRANULE {
                return Ok(Some(offset));
            }
        }
        let Some((fl, sl)) = search_class(want) else {
            return Ok(None);
        };
        let mut fl = fl;
        let mut sl_map = self.hdr.sl_bitmap[fl].load(Relaxed) & (u32::MAX << sl);
        if sl_map == 0 {
            let above = u32::MAX.checked_shl(fl as u32 + 1).unwrap_or(0);
            let fl_map = self.hdr.fl_bitmap.load(Relaxed) & above;
            if fl_map == 0 {
                return Ok(None);
            }
            fl = fl_map.trailing_zeros() as usize;
            sl_map = self.hdr.sl_bitmap.get(fl).map_or(0, |m| m.load(Relaxed));
        }
        if sl_map == 0 {
            return Err(corrupt("free-list bitmaps disagree".into()));
        }
        let sl = sl_map.trailing_zeros() as usize;
        let head = self.hdr.heads[fl][sl].load(Relaxed);
        if head == NONE {
            return Err(corrupt(format!("bitmap marks empty free list ({fl}, {sl})")));
        }
        let offset = self.offset_of(head);
        if self.free_block(offset)?.size() < want * GRANULE {
            return Err(corrupt(format!("block {offset} is too small for its class")));
        }
        Ok(Some(offset))
    }

    /// The block at `offset`, which a free list names: it must be a valid, free block.
    fn free_block(&self, offset: u64) -> Result<&'a BlockHeader> {
        let b = self.block(offset)?;
        if b.state() != Some(BlockState::Free) {
            return Err(corrupt(format!("free list names block {offset}, which is not free")));
        }
        Ok(b)
    }

    /// Empties every free list and bitmap.
    fn clear_free_lists(&self) {
        self.hdr.fl_bitmap.store(0, Relaxed);
        for (bitmap, heads) in self.hdr.sl_bitmap.iter().zip(&self.hdr.heads) {
            bitmap.store(0, Relaxed);
            for head in heads {
                head.store(NONE, Relaxed);
            }
        }
    }

    /// Pushes the free block at `offset` on the head of its class's list.
    fn insert_free(&self, offset: u64) -> Result<()> {
        let b = self.block(offset)?;
        let (fl, sl) = class_of(b.size() / GRANULE);
        let me = self.index_of(offset);
        let head = self.hdr.heads[fl][sl].load(Relaxed);
        if head != NONE {
            self.block(self.offset_of(head))?.prev_free.store(me, Relaxed);
        }
        b.next_free.store(head, Relaxed);
        b.prev_free.store(NONE, Relaxed);
        self.hdr.heads[fl][sl].store(me, Relaxed);
        self.hdr.sl_bitmap[fl].fetch_or(1 << sl, Relaxed);
        self.hdr.fl_bitmap.fetch_or(1 << fl, Relaxed);
        Ok(())
    }

    /// Unlinks the free block at `offset` from its class's list.
    fn remove_free(&self, offset: u64) -> Result<()> {
        let b = self.block(offset)?;
        let (fl, sl) = class_of(b.size() / GRANULE);
        let (next, prev) = (b.next_free.load(Relaxed), b.prev_free.load(Relaxed));
        if next != NONE {
            self.block(self.offset_of(next))?.prev_free.store(prev, Relaxed);
        }
        if prev != NONE {
            self.block(self.offset_of(prev))?.next_free.store(next, Relaxed);
        } else if self.hdr.heads[fl][sl].load(Relaxed) == self.index_of(offset) {
            self.hdr.heads[fl][sl].store(next, Relaxed);
            if next == NONE {
                let left = self.hdr.sl_bitmap[fl].fetch_and(!(1 << sl), Relaxed) & !(1 << sl);
                if left == 0 {
                    self.hdr.fl_bitmap.fetch_and(!(1 << fl), Relaxed);
                }
            }
        } else {
            return Err(corrupt(format!("free block {offset} missing from its list")));
        }
        Ok(())
    }

    /// Writes a complete header for a new block at `offset` (state left for the caller).
    fn write_header(&self, offset: u64, size: u64, prev_size: u64) -> Result<&'a BlockHeader> {
        let b = self
            .map
            .block(offset)
            .ok_or_else(|| corrupt(format!("block offset {offset} outside the mapping")))?;
        b._reserved_flags.store(0, Relaxed);
        b.owner_pid.store(0, Relaxed);
        b.task_holds.store(0, Relaxed);
        b.size.store(size, Relaxed);
        b.prev_size.store(prev_size, Relaxed);
        b.self_index.store(self.index_of(offset), Relaxed);
        b.producer_pid.store(0, Relaxed);
        b.generation.store(0, Relaxed);
        b.len.store(0, Relaxed);
        b.next_free.store(NONE, Relaxed);
        b.prev_free.store(NONE, Relaxed);
        b.magic.store(BLOCK_MAGIC, Relaxed);
        Ok(b)
    }

    /// Records `prev_size` in the block at `offset`, if there is one (not at the region end).
    fn set_prev_size(&self, offset: u64, prev_size: u64) -> Result<()> {
        if offset < self.end {
            self.block(offset)?.prev_size.store(prev_size, Relaxed);
        }
        Ok(())
    }

    /// True when `b` carries the block magic and names `offset` as its own position.
    pub(crate) fn is_block_at(&self, b: &BlockHeader, offset: u64) -> bool {
        b.magic.load(Relaxed) == BLOCK_MAGIC && b.self_index.load(Relaxed) == self.index_of(offset)
    }

    /// Free-list links are granule indices from the start of the data region (they fit in u32).
    fn index_of(&self, offset: u64) -> u32 {
        u32::try_from((offset - self.start) / GRANULE).unwrap_or(NONE)
    }

    /// Inverse of [`Heap::index_of`].
    fn offset_of(&self, index: u32) -> u64 {
        self.start + u64::from(index) * GRANULE
    }
}

/// The `(first, second)` level class of a free block of `granules` (>= 1) granules.
pub(crate) fn class_of(granules: u64) -> (usize, usize) {
    if granules < SL_COUNT as u64 {
        return (0, granules as usize);
    }
    let log = 63 - granules.leading_zeros(); // floor(log2), >= SL_LOG2
    let fl = (log - SL_LOG2 + 1) as usize;
    let sl = (granules >> (log - SL_LOG2)) as usize - SL_COUNT;
    (fl.min(FL_COUNT - 1), sl)
}

/// The smallest class all of whose blocks hold `granules`: the request rounded up to the next
/// class boundary. `None` when that is beyond the largest class.
pub(crate) fn search_class(granules: u64) -> Option<(usize, usize)> {
    let rounded = if granules < SL_COUNT as u64 {
        granules
    } else {
        let log = 63 - granules.leading_zeros();
        granules.checked_add((1u64 << (log - SL_LOG2)) - 1)?
    };
    let log = 63 - rounded.max(1).leading_zeros();
    if rounded >= SL_COUNT as u64 && (log - SL_LOG2 + 1) as usize >= FL_COUNT {
        return None;
    }
    Some(class_of(rounded))
}

/// A [`ShmError::Corrupt`].
fn corrupt(what: String) -> ShmError {
    ShmError::Corrupt(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first granule count of class `(fl, sl)`.
    fn class_base(fl: usize, sl: usize) -> u64 {
        if fl == 0 {
            return sl as u64;
        }
        let log = fl as u32 + SL_LOG2 - 1;
        (1u64 << log) + ((sl as u64) << (log - SL_LOG2))
    }

    #[test]
    fn classes_are_monotonic_and_contain_their_sizes() {
        let mut last = (0, 0);
        for g in (1..5000u64).chain([1 << 20, (1 << 20) + 1, (1 << 31) + 12345, (1 << 32) - 1]) {
            let c = class_of(g);
            assert!(c >= last || g > 5000, "class order at {g}");
            last = c;
            assert!(class_base(c.0, c.1) <= g, "{g} below its class base");
        }
    }

    #[test]
    fn search_class_only_holds_blocks_that_fit() {
        for g in (1..5000u64).chain([12 << 14, (192 << 14) + 3, (1 << 31) + 1]) {
            let (fl, sl) = search_class(g).unwrap();
            assert!(class_base(fl, sl) >= g, "class ({fl},{sl}) may hold blocks < {g}");
            // ... and it is the smallest such class: the class before it has a base < g.
            let (pfl, psl) = if sl > 0 { (fl, sl - 1) } else { (fl - 1, SL_COUNT - 1) };
            if fl > 0 || sl > 0 {
                assert!(class_base(pfl, psl) < g, "a smaller class would do for {g}");
            }
        }
        assert!(search_class(u64::MAX / 2).is_none());
    }
}
