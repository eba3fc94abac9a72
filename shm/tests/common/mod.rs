//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // test helpers may panic

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use shm::{Arena, Reference, Result};

/// A fresh directory for a test's arena files, removed on drop. Under /dev/shm when it exists
/// (the production file system, tmpfs), else the temp dir.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("shm-test-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// xorshift64*: a tiny deterministic generator for sizes and orders.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The byte pattern an object of generation `generation` is filled with: position-dependent so
/// a shifted or overlapping block is caught, generation-dependent so a reused one is.
pub fn pattern(generation: u64, i: usize) -> u8 {
    (generation as usize).wrapping_mul(31).wrapping_add(i.wrapping_mul(7)) as u8
}

pub fn fill(bytes: &mut [u8], generation: u64) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(generation, i);
    }
}

pub fn check(bytes: &[u8], generation: u64) -> bool {
    bytes.iter().enumerate().all(|(i, b)| *b == pattern(generation, i))
}

/// Reads a sealed object the way a Python consumer does: [`Arena::locate`] validates the
/// reference, then the bytes are read from the file at the returned offset (the same pages as
/// every mapping of it). The arena has no Rust read handle.
pub fn read(arena: &Arena, reference: &Reference) -> Result<Vec<u8>> {
    let span = arena.locate(reference)?;
    let mut bytes = vec![0u8; span.len];
    File::open(arena.path()).unwrap().read_exact_at(&mut bytes, span.offset as u64).unwrap();
    Ok(bytes)
}

/// True when the sealed object `reference` still holds the pattern of its generation.
pub fn intact(arena: &Arena, reference: &Reference) -> bool {
    read(arena, reference).is_ok_and(|bytes| check(&bytes, reference.generation))
}
