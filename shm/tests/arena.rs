//! The arena through its public API, in one process: allocator properties, generations and
//! reference checks, seal and free rules, ownership, waiting, and threads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::time::{Duration, Instant};

use common::{fill, intact, read, Rng, Scratch};
use shm::{Arena, Reference, ShmError, FILE_PREFIX};

const MIB: u64 = 1 << 20;

/// Allocates, fills and seals an object of `size` bytes.
fn put(arena: &Arena, size: usize) -> Reference {
    let mut draft = arena.alloc(size).unwrap();
    let generation = draft.reference().generation;
    fill(draft.as_mut_slice(), generation);
    draft.seal().unwrap()
}

#[test]
fn create_open_and_drop_removes_the_file() {
    let scratch = Scratch::new("lifecycle");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    let name = arena.path().file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with(&format!("{FILE_PREFIX}{}-", std::process::id())));
    assert!(arena.is_creator());
    assert_eq!(std::fs::metadata(arena.path()).unwrap().len(), 4 * MIB);

    let other = Arena::open(arena.path()).unwrap();
    assert!(!other.is_creator());
    assert_eq!(other.id(), arena.id());
    let r = put(&arena, 1000);
    assert!(intact(&other, &r), "a second mapping sees it");
    other.free(&r).unwrap();
    assert_eq!(arena.stats().objects, 0, "freed through the other mapping");

    let path = arena.path().to_path_buf();
    drop(other);
    assert!(path.exists(), "an opener only unmaps");
    drop(arena);
    assert!(!path.exists(), "the creator removes the file");
    assert!(matches!(Arena::open(&path), Err(ShmError::Io { .. })));
}

#[test]
fn sizes_outside_the_range_and_non_arenas_are_refused() {
    let scratch = Scratch::new("sizes");
    assert!(matches!(Arena::create(&scratch.dir, 100), Err(ShmError::InvalidSize { .. })));
    let junk = scratch.dir.join("junk");
    std::fs::write(&junk, vec![7u8; 1 << 16]).unwrap();
    let err = Arena::open(&junk).unwrap_err();
    assert!(matches!(err, ShmError::NotAnArena { .. }), "{err}");
}

#[test]
fn payloads_are_aligned_and_never_overlap() {
    let scratch = Scratch::new("align");
    let arena = Arena::create(&scratch.dir, 8 * MIB).unwrap();
    let mut rng = Rng(42);
    let mut sizes = vec![0usize, 1, 63, 64, 65, 127, 128, 4095, 4096, 4097, 100_000];
    sizes.extend((0..200).map(|_| rng.below(20_000) as usize));
    let refs: Vec<Reference> = sizes.iter().map(|&s| put(&arena, s)).collect();

    let mut spans: Vec<(u64, u64)> = refs.iter().map(|r| (r.offset, r.size)).collect();
    spans.sort();
    for (offset, _) in &spans {
        assert_eq!(offset % 64, 0, "payload at {offset} not 64-byte aligned");
    }
    for pair in spans.windows(2) {
        let ((a, a_len), (b, _)) = (pair[0], pair[1]);
        assert!(a + a_len.max(1) <= b, "objects at {a} (+{a_len}) and {b} overlap");
    }
    for r in &refs {
        assert!(intact(&arena, r), "object {r:?} damaged");
    }
    let stats = arena.stats();
    assert_eq!(stats.objects, refs.len() as u64);
    let payload: u64 = sizes.iter().map(|&s| s as u64).sum();
    assert!(stats.used_bytes >= payload + 64 * refs.len() as u64);
    for r in &refs {
        arena.free(r).unwrap();
    }
    assert_eq!((arena.stats().used_bytes, arena.stats().objects), (0, 0));
}

#[test]
fn the_most_recently_freed_block_is_reused_first() {
    let scratch = Scratch::new("lifo");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    // a, b, c of one size with separators, so freeing them coalesces nothing.
    let mut objects = Vec::new();
    for _ in 0..3 {
        objects.push(put(&arena, 10_000));
        put(&arena, 100);
    }
    for r in &objects {
        arena.free(r).unwrap();
    }
    // LIFO: c, then b, then a.
    for expected in objects.iter().rev() {
        let r = put(&arena, 10_000);
        assert_eq!(r.offset, expected.offset);
        assert_ne!(r.generation, expected.generation);
    }
}

#[test]
fn coalescing_lets_a_big_object_fit_again_after_churn() {
    let scratch = Scratch::new("coalesce");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    let mut rng = Rng(7);
    let mut small = Vec::new();
    loop {
        match arena.alloc(1 + rng.below(8192) as usize) {
            Ok(d) => small.push(d.seal().unwrap()),
            Err(ShmError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(small.len() > 500, "filled with {} objects", small.len());
    assert!(matches!(arena.alloc(MIB as usize), Err(ShmError::Full { .. })));
    rng.shuffle(&mut small);
    for r in &small {
        arena.free(r).unwrap();
    }
    assert_eq!(arena.stats().used_bytes, 0);
    let big = arena.alloc(arena.max_object_size() as usize).unwrap();
    assert_eq!(big.len() as u64, arena.capacity() - 64, "all space is one block again");
}

#[test]
fn a_full_arena_says_how_full() {
    let scratch = Scratch::new("full");
    let arena = Arena::create(&scratch.dir, MIB).unwrap();
    let capacity = arena.capacity();
    let _held = put(&arena, 600_000);
    let err = arena.alloc(600_000).unwrap_err();
    match err {
        ShmError::Full { requested, capacity: c, used } => {
            assert_eq!((requested, c), (600_000, capacity));
            assert_eq!(used, 64 + 600_000u64.div_ceil(64) * 64);
        }
        other => panic!("expected Full, got {other}"),
    }
    let message = arena.alloc(600_000).unwrap_err().to_string();
    assert!(message.contains("600000") && message.contains(&capacity.to_string()));
    assert!(matches!(arena.alloc(capacity as usize), Err(ShmError::TooLarge { .. })));
}

#[test]
fn stale_double_freed_forged_and_foreign_references_are_rejected() {
    let scratch = Scratch::new("refs");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    let other = Arena::create(&scratch.dir, MIB).unwrap();
    let old = put(&arena, 5000);
    arena.free(&old).unwrap();
    let stale = |e: ShmError| matches!(e, ShmError::StaleReference { .. });

    assert!(stale(arena.locate(&old).unwrap_err()), "use after free");
    assert!(stale(arena.free(&old).unwrap_err()), "double free");
    let new = put(&arena, 5000);
    assert_eq!(new.offset, old.offset, "same space reused...");
    assert!(stale(arena.locate(&old).unwrap_err()), "...old generation");
    assert!(intact(&arena, &new));

    let foreign = put(&other, 5000);
    assert!(matches!(arena.locate(&foreign), Err(ShmError::ForeignArena { .. })));
    let forged = |f: fn(&mut Reference)| {
        let mut r = new;
        f(&mut r);
        arena.locate(&r).unwrap_err()
    };
    let oob = |e: ShmError| matches!(e, ShmError::OutOfBounds { .. });
    assert!(oob(forged(|r| r.offset += 8)), "misaligned");
    assert!(oob(forged(|r| r.offset = 0)), "in the header");
    assert!(oob(forged(|r| r.offset += 64 * MIB)), "past the end");
    assert!(oob(forged(|r| r.size = u64::MAX)), "size overflows");
    assert!(stale(forged(|r| r.offset += 64)), "inside a payload");
    assert!(stale(forged(|r| r.size += 1)), "wrong size");
    assert!(stale(forged(|r| r.generation += 1)), "wrong generation");
    assert!(stale(forged(|r| r.generation = 0)), "generation 0");
    assert!(stale(forged(|r| r.offset += 128 * 64)), "free space");

    let wire = Reference::from_bytes(&new.to_bytes()).unwrap();
    assert!(intact(&arena, &wire));
}

#[test]
fn only_sealed_objects_locate_and_only_its_draft_ends_a_draft() {
    let scratch = Scratch::new("seal");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    let wrong = |e: ShmError| matches!(e, ShmError::WrongState { .. });

    let draft = arena.alloc(100).unwrap();
    let r = draft.reference();
    assert!(wrong(arena.locate(&r).unwrap_err()), "still being written");
    assert!(wrong(arena.seal(&r).unwrap_err()), "a draft seals itself");
    let r = draft.into_lease().unwrap();
    assert!(wrong(arena.locate(&r).unwrap_err()), "leased, unsealed");
    arena.seal(&r).unwrap();
    assert!(wrong(arena.seal(&r).unwrap_err()), "sealed twice");
    let span = arena.locate(&r).unwrap();
    assert_eq!((span.offset as u64, span.len as u64), (r.offset, r.size));
    arena.free(&r).unwrap();

    // An open draft's object cannot be freed or given away by reference: its bytes stay the
    // draft's until the draft ends.
    let mut draft = arena.alloc(100).unwrap();
    assert!(wrong(arena.free(&draft.reference()).unwrap_err()), "freed under its draft");
    assert!(wrong(arena.set_owner(&draft.reference(), 999_999_999).unwrap_err()));
    assert!(wrong(arena.adopt(&draft.reference()).unwrap_err()));
    fill(draft.as_mut_slice(), 5);
    let r = draft.seal().unwrap();
    assert_eq!(read(&arena, &r).unwrap(), {
        let mut expected = vec![0; 100];
        fill(&mut expected, 5);
        expected
    });
    arena.free(&r).unwrap();
    assert_eq!(arena.stats().objects, 0);

    // A dropped, unfinished draft frees its object.
    drop(arena.alloc(100).unwrap());
    assert_eq!(arena.stats().used_bytes, 0);
}

#[test]
fn free_releases_at_once_and_the_space_is_reused() {
    // No pins: a free is final, which is why the engine frees an input only after its reader
    // answered (engine/src/tasks.rs). A reader that kept the bytes would see the next object.
    let scratch = Scratch::new("free-now");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    let r = put(&arena, 3000);
    let span = arena.locate(&r).unwrap();
    arena.free(&r).unwrap();
    assert_eq!(arena.stats().objects, 0);
    assert!(matches!(arena.locate(&r), Err(ShmError::StaleReference { .. })));
    assert!(matches!(arena.free(&r), Err(ShmError::StaleReference { .. })));
    let next = put(&arena, 3000);
    assert_eq!(arena.locate(&next).unwrap(), span, "the freed space is reused first");
    assert!(intact(&arena, &next));
}

#[test]
fn reclaim_owner_frees_what_a_process_owned() {
    let scratch = Scratch::new("reclaim");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    let dead_pid = 999_999_999; // no such process; stands in for a dead worker
    let sealed = put(&arena, 1000);
    let leased = arena.alloc(2000).unwrap().into_lease().unwrap();
    let kept = put(&arena, 4000);
    for r in [&sealed, &leased] {
        arena.set_owner(r, dead_pid).unwrap();
    }
    assert_eq!(arena.reclaim_owner(dead_pid).unwrap(), 2);
    assert_eq!(arena.reclaim_owner(dead_pid).unwrap(), 0, "nothing left");
    assert!(matches!(arena.locate(&sealed), Err(ShmError::StaleReference { .. })));
    assert_eq!(arena.stats().objects, 1);
    assert!(intact(&arena, &kept));

    // This process's own open drafts survive a reclaim of its own pid; the rest goes.
    let mut draft = arena.alloc(500).unwrap();
    assert_eq!(arena.reclaim_owner(std::process::id()).unwrap(), 1);
    let generation = draft.reference().generation;
    fill(draft.as_mut_slice(), generation);
    let sealed = draft.seal().unwrap();
    assert!(intact(&arena, &sealed), "the draft's bytes were never taken");
    arena.free(&sealed).unwrap();
    assert_eq!(arena.stats().used_bytes, 0);
}

#[test]
fn sweep_removes_only_arenas_of_dead_servers() {
    let scratch = Scratch::new("sweep");
    let live = Arena::create(&scratch.dir, MIB).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = scratch.dir.join(format!("{FILE_PREFIX}{dead_pid}-0123456789abcdef"));
    std::fs::write(&dead, b"left by a crashed server").unwrap();
    let unrelated = scratch.dir.join("something-else");
    std::fs::write(&unrelated, b"not ours").unwrap();

    let removed = Arena::sweep_stale(&scratch.dir).unwrap();
    assert_eq!(removed, vec![dead.clone()]);
    assert!(!dead.exists() && unrelated.exists() && live.path().exists());
}

#[test]
fn alloc_wait_takes_space_freed_meanwhile_and_gives_up_in_time() {
    let scratch = Scratch::new("wait");
    let arena = Arena::create(&scratch.dir, MIB).unwrap();
    let hog = put(&arena, 900_000);

    let started = Instant::now();
    let err = arena.alloc_wait(500_000, Duration::from_millis(100)).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, ShmError::Full { .. }));
    assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(2));

    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            arena.free(&hog).unwrap();
        });
        let started = Instant::now();
        let draft = arena.alloc_wait(500_000, Duration::from_secs(5)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "woken by the free");
        draft.seal().unwrap();
    });
}

#[test]
fn threads_share_one_arena_without_corruption() {
    let scratch = Scratch::new("threads");
    let arena = Arena::create(&scratch.dir, 4 * MIB).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let arena = &arena;
            s.spawn(move || {
                let mut rng = Rng(t + 1);
                let mut live = std::collections::VecDeque::new();
                for _ in 0..1500 {
                    let mut draft = arena
                        .alloc_wait(rng.below(16_384) as usize, Duration::from_secs(10))
                        .unwrap();
                    let generation = draft.reference().generation;
                    fill(draft.as_mut_slice(), generation);
                    live.push_back(draft.seal().unwrap());
                    if live.len() > 8 {
                        let r = live.pop_front().unwrap();
                        assert!(intact(arena, &r));
                        arena.free(&r).unwrap();
                    }
                }
                for r in live {
                    arena.free(&r).unwrap();
                }
            });
        }
    });
    assert_eq!((arena.stats().used_bytes, arena.stats().objects), (0, 0));
    let whole = arena.alloc(arena.max_object_size() as usize).unwrap();
    drop(whole);
}
