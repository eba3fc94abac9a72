//! Blocks with two kinds of holder: a producer's array (`alloc_held`, `release_held`) and the
//! tasks it was handed to (`share_held`, `share`, `free`). A block is reused only when every
//! holder let go; plain objects keep their one-owner behaviour. A dead producer's holds:
//! `processes.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::Scratch;
use shm::{Arena, ShmError};

fn arena(scratch: &Scratch) -> Arena {
    Arena::create(&scratch.dir, 4 << 20).unwrap()
}

#[test]
fn a_block_lives_until_both_the_array_and_the_task_let_go() {
    let scratch = Scratch::new("both-holders");
    let arena = arena(&scratch);
    // The task lets go first, then the array.
    let span = arena.alloc_held(100_000).unwrap();
    let reference = arena.share_held(span.offset as u64).unwrap();
    assert_eq!((reference.offset, reference.size), (span.offset as u64, 100_000));
    assert_eq!(arena.locate(&reference).unwrap().offset, span.offset, "sealed for readers");
    arena.free(&reference).unwrap();
    assert_eq!(arena.stats().objects, 1, "the array still holds it");
    let other = arena.alloc(100_000).unwrap().seal().unwrap();
    assert_ne!(other.offset, reference.offset, "a held block is not reused");
    arena.free(&other).unwrap();
    arena.release_held(span.offset as u64).unwrap();
    assert_eq!(arena.stats().objects, 0);

    // The array lets go first, then the task.
    let span = arena.alloc_held(100_000).unwrap();
    let reference = arena.share_held(span.offset as u64).unwrap();
    arena.release_held(span.offset as u64).unwrap();
    assert_eq!(arena.locate(&reference).unwrap().len, 100_000, "the task still reads it");
    arena.free(&reference).unwrap();
    assert_eq!(arena.stats().objects, 0);
    assert!(matches!(arena.free(&reference), Err(ShmError::StaleReference { .. })));
}

#[test]
fn an_array_never_handed_over_is_released_with_the_array() {
    let scratch = Scratch::new("unshared");
    let arena = arena(&scratch);
    let span = arena.alloc_held(4096).unwrap();
    assert_eq!(arena.held_len(span.offset as u64).unwrap(), 4096);
    arena.release_held(span.offset as u64).unwrap();
    assert_eq!(arena.stats().used_bytes, 0);
    assert!(arena.release_held(span.offset as u64).is_err(), "a second release is refused");
}

#[test]
fn each_hand_over_is_one_more_task_hold() {
    let scratch = Scratch::new("twice");
    let arena = arena(&scratch);
    let span = arena.alloc_held(1000).unwrap();
    let first = arena.share_held(span.offset as u64).unwrap();
    let second = arena.share_held(span.offset as u64).unwrap();
    assert_eq!(first, second);
    assert_eq!(arena.task_holds(&first).unwrap(), 2);
    arena.release_held(span.offset as u64).unwrap();
    arena.free(&first).unwrap();
    assert_eq!(arena.stats().objects, 1, "the second task still holds it");
    arena.free(&second).unwrap();
    assert_eq!(arena.stats().objects, 0);
}

#[test]
fn an_input_passed_through_is_freed_by_its_last_task() {
    let scratch = Scratch::new("pass-through");
    let arena = arena(&scratch);
    let reference = arena.alloc(5000).unwrap().seal().unwrap();
    assert_eq!(arena.task_holds(&reference).unwrap(), 1, "a plain object has one owner");
    arena.share(&reference).unwrap();
    assert_eq!(arena.task_holds(&reference).unwrap(), 2);
    arena.free(&reference).unwrap();
    assert_eq!(arena.locate(&reference).unwrap().len, 5000, "the next task still reads it");
    arena.free(&reference).unwrap();
    assert_eq!(arena.stats().objects, 0);
}

#[test]
fn a_plain_object_is_still_freed_at_once() {
    let scratch = Scratch::new("plain");
    let arena = arena(&scratch);
    let reference = arena.alloc(64).unwrap().seal().unwrap();
    arena.free(&reference).unwrap();
    assert_eq!(arena.stats().objects, 0);
}

#[test]
fn only_the_arrays_own_blocks_can_be_handed_over_or_released() {
    let scratch = Scratch::new("not-held");
    let arena = arena(&scratch);
    let lease = arena.alloc(100_000).unwrap().into_lease().unwrap();
    // A lease (shm_empty's kind of object) is not an array's: refused, and left alone.
    assert!(matches!(arena.share_held(lease.offset), Err(ShmError::WrongState { .. })));
    assert!(arena.release_held(lease.offset).is_err());
    // An offset inside a block, or outside the data region, names no block.
    let span = arena.alloc_held(100_000).unwrap();
    assert!(matches!(arena.share_held(span.offset as u64 + 64), Err(ShmError::OutOfBounds { .. })));
    assert!(arena.share_held(1 << 40).is_err());
    // Freeing an array's block by reference before any hand-over is refused: the array owns it.
    let reference = arena.share_held(span.offset as u64).unwrap();
    arena.free(&reference).unwrap();
    assert!(matches!(arena.free(&reference), Err(ShmError::WrongState { .. })));
    arena.release_held(span.offset as u64).unwrap();
    arena.free(&lease).unwrap();
    assert_eq!(arena.stats().objects, 0);
}
