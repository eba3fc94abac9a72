//! Times one hop through the arena against one plain memcpy of the same payload.
//!
//! ```text
//! cargo run --release -p shm --example bench_copy [-- SIZE_MIB [RUNS [DIR]]]
//! ```
//!
//! - memcpy: `dst.copy_from_slice(&src)` between two warm heap buffers.
//! - arena hop: alloc + memcpy into the draft + seal + locate (the consumer's validation; it
//!   then reads in place through its own mapping, which costs nothing until touched) + free:
//!   what a producer that copies its output pays, plus the consumer and the engine.
//! - in place: the same without the memcpy, i.e. a producer that writes straight into the arena.
//!
//! Each is the median of RUNS timed repetitions (interleaved, after warm-up). Also prints the minor page faults
//! taken during the arena runs (0 when pre-faulting works).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic

use std::hint::black_box;
use std::time::{Duration, Instant};

use shm::Arena;

fn main() {
    let mut args = std::env::args().skip(1);
    let size_mib: usize = args.next().map_or(12, |a| a.parse().expect("SIZE_MIB"));
    let runs: usize = args.next().map_or(101, |a| a.parse().expect("RUNS"));
    let dir = args.next().unwrap_or_else(|| "/dev/shm".into());
    let size = size_mib << 20;

    let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    let mut dst = vec![1u8; size];
    let arena = Arena::create(&dir, (4 * size + (1 << 20)) as u64).expect("create arena");
    let mut memcpy = || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    };
    let hop = |copy: bool| {
        let mut draft = arena.alloc(size).unwrap();
        if copy {
            draft.as_mut_slice().copy_from_slice(black_box(&src));
        }
        let reference = draft.seal().unwrap();
        black_box(arena.locate(&reference).unwrap());
        arena.free(&reference).unwrap();
    };

    // Interleaved, so a load change on a shared machine hits all three alike.
    for _ in 0..3 {
        memcpy();
        hop(true);
        hop(false);
    }
    let faults_before = minor_faults();
    let mut times = [(); 3].map(|()| Vec::with_capacity(runs.max(1)));
    for _ in 0..runs.max(1) {
        times[0].push(timed(&mut memcpy));
        times[1].push(timed(|| hop(true)));
        times[2].push(timed(|| hop(false)));
    }
    let faults = minor_faults().saturating_sub(faults_before);
    let [memcpy, arena_hop, in_place] = times.map(median);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("payload            {size_mib} MiB, median of {runs} runs, arena in {dir}");
    println!("memcpy             {:.3} ms", ms(memcpy));
    println!("arena hop          {:.3} ms", ms(arena_hop));
    println!("in-place hop       {:.4} ms (no copy)", ms(in_place));
    println!(
        "ratio              {:.3} (arena hop / memcpy)",
        arena_hop.as_secs_f64() / memcpy.as_secs_f64()
    );
    println!("minor page faults  {faults} during {} arena hops", 2 * runs);
}

/// How long one call of `f` takes.
fn timed(mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// The median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// This process's minor page faults so far (field 10 of /proc/self/stat).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    rest.split_whitespace().nth(7).and_then(|f| f.parse().ok()).unwrap_or(0)
}
