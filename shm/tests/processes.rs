//! Several processes in one arena. The children are this test binary run again with
//! `SHM_TEST_CHILD=<role>`, executing only `child_entry` (which does nothing in a normal run).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use std::collections::VecDeque;
use std::env;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fill, intact, Rng, Scratch};
use shm::{Arena, Reference};

const CHILD: &str = "SHM_TEST_CHILD";
const ARENA: &str = "SHM_TEST_ARENA";
const SHARED: &str = "SHM_TEST_SHARED";
const ITERATIONS: &str = "SHM_TEST_ITERATIONS";
const READY: &str = "shm-child-ready";

/// Runs this binary again as a child playing `role` on the arena at `path`.
fn spawn(role: &str, path: &Path, vars: &[(&str, String)]) -> Child {
    let mut command = Command::new(env::current_exe().unwrap());
    command
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .env(ARENA, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// Waits for the child to print `ready`, within a bound.
fn wait_ready(child: &mut Child) {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match lines.next() {
            // libtest prints "test child_entry ... " on the same line first.
            Some(Ok(line)) if line.trim_end().ends_with(READY) => return,
            Some(_) => continue,
            None => break,
        }
    }
    panic!("child never got ready");
}

/// The children's side. Does nothing unless this process was spawned as a child.
#[test]
fn child_entry() {
    let Ok(role) = env::var(CHILD) else {
        return;
    };
    let arena = Arena::open(env::var(ARENA).unwrap()).unwrap();
    match role.as_str() {
        "churn" => churn(&arena),
        "hold" => hold(&arena),
        "storm" => storm(&arena),
        "producer" => producer(&arena),
        other => panic!("unknown role {other}"),
    }
}

/// Allocates, writes, seals, checks and frees objects of random sizes, keeping a few alive, and
/// checks the parent's shared object on the way. Bounded in count and time.
fn churn(arena: &Arena) {
    let shared = env::var(SHARED).ok().map(|hex| Reference::from_bytes(&decode(&hex)).unwrap());
    let iterations: u64 = env::var(ITERATIONS).unwrap().parse().unwrap();
    let mut rng = Rng(u64::from(std::process::id()) | 1);
    let mut live = VecDeque::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    println!("{READY}");
    for i in 0..iterations {
        if Instant::now() > deadline {
            break;
        }
        let size = rng.below(48 << 10) as usize;
        let mut draft = arena.alloc_wait(size, Duration::from_secs(10)).unwrap();
        let generation = draft.reference().generation;
        fill(draft.as_mut_slice(), generation);
        live.push_back(draft.seal().unwrap());
        if live.len() > 4 {
            let r = live.pop_front().unwrap();
            assert!(intact(arena, &r), "{r:?} damaged");
            arena.free(&r).unwrap();
        }
        if let (Some(shared), 0) = (shared, i % 16) {
            assert!(intact(arena, &shared));
        }
    }
    for r in live {
        arena.free(&r).unwrap();
    }
}

/// Allocates and frees without touching payloads, so the process spends most of its time
/// holding the arena lock: a kill then often lands inside a critical section.
fn storm(arena: &Arena) {
    let mut rng = Rng(u64::from(std::process::id()) | 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    println!("{READY}");
    while Instant::now() < deadline {
        let a = arena.alloc(rng.below(4096) as usize).unwrap().seal().unwrap();
        let b = arena.alloc(rng.below(4096) as usize).unwrap().into_lease().unwrap();
        arena.locate(&a).unwrap();
        arena.free(&a).unwrap();
        arena.free(&b).unwrap();
    }
}

/// Leaves one object in each state and waits to be killed.
fn hold(arena: &Arena) {
    let _sealed = arena.alloc(10_000).unwrap().seal().unwrap();
    let leased = arena.alloc(20_000).unwrap().into_lease().unwrap();
    let draft = arena.alloc(30_000).unwrap();
    println!("{READY}");
    std::thread::sleep(Duration::from_secs(30)); // killed long before
    drop((draft, leased));
}

/// Makes two blocks held by arrays (as NumPy's handler does), hands one over (its reference
/// written to the file in `SHARED`), and waits to be killed holding both.
fn producer(arena: &Arena) {
    let handed = arena.alloc_held(30_000).unwrap();
    let reference = arena.share_held(handed.offset as u64).unwrap();
    let _kept = arena.alloc_held(40_000).unwrap();
    std::fs::write(env::var(SHARED).unwrap(), encode(&reference.to_bytes())).unwrap();
    println!("{READY}");
    std::thread::sleep(Duration::from_secs(30)); // killed long before
}

fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn processes_share_one_arena_without_corruption() {
    let scratch = Scratch::new("processes");
    // Small enough that the children contend for space and wait on each other's frees.
    let arena = Arena::create(&scratch.dir, 1 << 20).unwrap();
    let mut draft = arena.alloc(100_000).unwrap();
    let generation = draft.reference().generation;
    fill(draft.as_mut_slice(), generation);
    let shared = draft.seal().unwrap();
    let vars = [(SHARED, encode(&shared.to_bytes())), (ITERATIONS, "400".to_string())];
    let children: Vec<Child> = (0..4).map(|_| spawn("churn", arena.path(), &vars)).collect();
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "a child failed: {status}");
    }
    assert_eq!(arena.stats().objects, 1, "only the shared object is left");
    assert!(intact(&arena, &shared));
    arena.free(&shared).unwrap();
    assert_eq!((arena.stats().used_bytes, arena.stats().objects), (0, 0));
}

#[test]
fn the_objects_of_a_killed_process_are_reclaimed() {
    let scratch = Scratch::new("killed");
    let arena = Arena::create(&scratch.dir, 4 << 20).unwrap();
    let mut child = spawn("hold", arena.path(), &[]);
    wait_ready(&mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(arena.stats().objects, 3);
    assert_eq!(arena.reclaim_owner(child.id()).unwrap(), 3);
    assert_eq!((arena.stats().used_bytes, arena.stats().objects), (0, 0));
}

#[test]
fn processes_killed_at_random_moments_leave_a_working_arena() {
    let scratch = Scratch::new("random-kills");
    let arena = Arena::create(&scratch.dir, 1 << 20).unwrap();
    let vars = [(ITERATIONS, "1000000".to_string())];
    let mut rng = Rng(99);
    for _ in 0..8 {
        let mut children: Vec<Child> = ["churn", "storm", "storm"]
            .iter()
            .map(|role| spawn(role, arena.path(), &vars))
            .collect();
        for child in &mut children {
            wait_ready(child);
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(60)));
        for child in &mut children {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert_eq!(status.signal(), Some(9), "a child failed before the kill");
        }
        // Whoever died holding the lock, the next locker repairs; then all their objects go.
        for child in &children {
            arena.reclaim_owner(child.id()).unwrap();
        }
        assert_eq!((arena.stats().used_bytes, arena.stats().objects), (0, 0));
        let whole = arena.alloc(arena.max_object_size() as usize).unwrap();
        drop(whole);
    }
    // How many kills hit a process holding the lock (0 is a valid outcome of chance).
    println!("lock recoveries: {}", arena.recoveries());
}

#[test]
fn a_dead_producer_loses_its_array_holds_and_tasks_keep_theirs() {
    let scratch = Scratch::new("producer");
    let arena = Arena::create(&scratch.dir, 1 << 20).unwrap();
    let out = scratch.dir.join("shared-reference");
    let mut child = spawn("producer", arena.path(), &[(SHARED, out.display().to_string())]);
    wait_ready(&mut child);
    let reference =
        Reference::from_bytes(&decode(&std::fs::read_to_string(&out).unwrap())).unwrap();
    arena.adopt(&reference).unwrap(); // as the engine does with a worker's output
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(arena.stats().objects, 2);
    // The block never handed over goes; the handed-over one loses only its array's hold.
    assert_eq!(arena.reclaim_owner(child.id()).unwrap(), 1);
    assert_eq!(arena.locate(&reference).unwrap().len, 30_000, "the task still reads it");
    arena.free(&reference).unwrap();
    assert_eq!(arena.stats(), shm::Stats { capacity: arena.capacity(), used_bytes: 0, objects: 0 });
}
