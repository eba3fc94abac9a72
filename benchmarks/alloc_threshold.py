"""Where NumPy's arena handler pays: allocation and hand-over cost by array size, in one run.

For each size, alternating in one process, it times what a stage does with an array its
``forward`` makes:

- **temporary**: make an array (``np.add`` of an existing one, so every byte is written) and
  drop it, with NumPy's own allocator and with the arena handler;
- **hop**: make it, hand it over (``serialize_ipc``), read it back (``deserialize_ipc``), and
  free it as the engine would: heap + copy (today's path, handler off) against arena + lend.

Run from the repository root::

    python -m benchmarks.alloc_threshold          # 16 KiB to 16 MiB, medians of 201 runs

The break-even of the hop is where "arena hop / heap hop" drops under 1; the temporary column
shows what routing arrays that are never returned through the arena costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

from benchmarks.arena_hop import _start_engine
from mosec.mixin import ShmIPCMixin
from mosec.store.arena import arena_store
from mosec.store.mapping import arena_mapping
from mosec.store.numpy_arena import ArenaArrays
from mosec.store.settings import ARENA_ENV


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def measure(nbytes: int, runs: int, arrays: ArenaArrays) -> dict[str, float]:
    """Median microseconds of each case for arrays of ``nbytes``."""
    worker = ShmIPCMixin()
    store = arena_store()
    source = np.random.default_rng(0).random(nbytes // 8)

    def temporary() -> None:
        np.add(source, 1.0)

    def hop() -> None:
        made = np.add(source, 1.0)
        payload = worker.serialize_ipc(made)
        worker.deserialize_ipc(payload)
        del made
        if payload[0] != 0x80:  # a reference: free what the engine would free
            store.discard([bytes(payload[3:35])])

    def timed(case: Callable[[], None], in_arena: bool) -> float:
        start = time.perf_counter()
        if in_arena:
            with arrays:
                case()
        else:
            case()
        return time.perf_counter() - start

    samples: dict[str, list[float]] = {
        key: [] for key in ("tmp_heap", "tmp_arena", "hop_heap", "hop_arena")
    }
    for _ in range(runs):
        samples["tmp_heap"].append(timed(temporary, False))
        samples["tmp_arena"].append(timed(temporary, True))
        samples["hop_heap"].append(timed(hop, False))
        samples["hop_arena"].append(timed(hop, True))
    return {key: _median_us(values) for key, values in samples.items()}


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="16,64,256,1024,4096,16384", help="array sizes in KiB, comma list"
    )
    parser.add_argument("--runs", type=int, default=201)
    args = parser.parse_args()
    sizes = [int(size) << 10 for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="mosec_bench_") as folder:
        engine = _start_engine(max(sizes) * 4 + (64 << 20), folder)
        try:
            os.environ[ARENA_ENV] = engine.arena_path() or ""
            arrays = ArenaArrays(arena_mapping(), 1)
            header = ("size", "tmp heap", "tmp arena", "×", "hop heap+copy", "hop arena", "×")
            print("{:>9} {:>9} {:>9} {:>6} {:>13} {:>9} {:>6}   (µs, medians)".format(*header))
            for nbytes in sizes:
                r = measure(nbytes, args.runs, arrays)
                print(
                    f"{nbytes >> 10:>6}KiB {r['tmp_heap']:>9.1f} {r['tmp_arena']:>9.1f} "
                    f"{r['tmp_arena'] / r['tmp_heap']:>6.2f} {r['hop_heap']:>13.1f} "
                    f"{r['hop_arena']:>9.1f} {r['hop_arena'] / r['hop_heap']:>6.2f}"
                )
        finally:
            engine.shutdown(1000)


if __name__ == "__main__":
    main()
