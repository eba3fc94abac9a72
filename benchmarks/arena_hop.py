"""Cost of one arena hop against one memcpy of the same payload, measured in the same run.

A hop is what ShmIPCMixin does between two stages: the producer's ``serialize_ipc`` (allocate,
copy the array into the arena, seal) plus the consumer's ``deserialize_ipc`` (validate the
reference, wrap a read-only view), plus the free the engine does when the consumer is done.
The in-place hop is the same for an array the producer made with ``shm_empty``: no copy.

Run from the repository root::

    python -m benchmarks.arena_hop            # 12 MiB and 192 MiB, medians of 31 runs

It prints the median times and the ratio hop / memcpy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from mosec import _engine
from mosec.mixin import ShmIPCMixin
from mosec.store.arena import arena_store
from mosec.store.settings import ARENA_ENV


def _start_engine(size: int, folder: str) -> _engine.Engine:
    config = json.loads(_engine.default_config())
    config.update(
        address="127.0.0.1",
        port=0,
        socket_path=os.path.join(folder, "engine.sock"),
        use_arena=True,
        shm_size=size,
        log_level="error",
        stages=[{"name": "A", "num": 1, "max_batch_size": 1, "max_wait_time_ms": 0}],
        routes=[{"path": "/inference", "stages": [0], "mime": "application/json"}],
    )
    engine = _engine.Engine(json.dumps(config))
    engine.start()
    return engine


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def measure(mib: int, runs: int) -> dict[str, float]:
    """Median milliseconds of a memcpy, an arena hop and an in-place hop of ``mib`` MiB."""
    worker = ShmIPCMixin()
    source = np.random.default_rng(0).random(mib * (1 << 20) // 8)
    target = np.empty_like(source)
    store = arena_store()
    copy, hop, in_place = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        np.copyto(target, source)
        copy.append(time.perf_counter() - start)

        start = time.perf_counter()
        payload = worker.serialize_ipc(source)
        received = worker.deserialize_ipc(payload)
        hop.append(time.perf_counter() - start)
        assert received.shape == source.shape
        store.discard([bytes(payload[3:35])])  # what the engine does when the consumer is done

        made = worker.shm_empty(source.shape, source.dtype)
        start = time.perf_counter()
        payload = worker.serialize_ipc(made)
        received = worker.deserialize_ipc(payload)
        in_place.append(time.perf_counter() - start)
        store.discard([bytes(payload[3:35])])
    return {
        "memcpy_ms": _median_ms(copy),
        "hop_ms": _median_ms(hop),
        "in_place_ms": _median_ms(in_place),
    }


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="12,192", help="payload sizes in MiB, comma list")
    parser.add_argument("--runs", type=int, default=31)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="mosec_bench_") as folder:
        engine = _start_engine((max(sizes) * 3 + 64) << 20, folder)
        try:
            os.environ[ARENA_ENV] = engine.arena_path() or ""
            header = ("payload", "memcpy ms", "hop ms", "ratio", "in place ms")
            print("{:>9} {:>10} {:>8} {:>6} {:>12}".format(*header))
            for mib in sizes:
                result = measure(mib, args.runs)
                ratio = result["hop_ms"] / result["memcpy_ms"]
                print(
                    f"{mib:>6}MiB {result['memcpy_ms']:>10.3f} {result['hop_ms']:>8.3f} "
                    f"{ratio:>6.2f} {result['in_place_ms']:>12.4f}"
                )
        finally:
            engine.shutdown(1000)


if __name__ == "__main__":
    main()
