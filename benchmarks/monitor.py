"""CPU seconds and peak memory of process trees over a measured window.

A background thread samples every process of the watched trees (server, workers, redis-server):
CPU time (user + system) and resident memory. The CPU used in the window is, per process, its last
sample minus its first one (zero for a process born during the window).

Memory is the largest, over the samples, of ``memory.tree_bytes``: private anonymous memory of
every process plus each shared-memory object once. The plain sum of RSS, which counts shared
pages once per process, is kept as well.
"""

import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import psutil

from benchmarks.memory import tree_bytes
from benchmarks.processes import ProcessTree

_Key = Tuple[int, float]


@dataclass
class Usage:
    """What a tree used during a window.

    Attributes:
        cpu_s: CPU seconds, user plus system, summed over the tree.
        peak_memory_bytes: the largest private anonymous memory of the tree plus its shared
            memory objects counted once, at one sample (``memory.tree_bytes``).
        peak_rss_bytes: the largest sum of resident memory over the tree at one sample.
        processes: how many processes the tree had at the largest.
    """

    cpu_s: float
    peak_memory_bytes: int
    peak_rss_bytes: int
    processes: int


class ResourceMonitor:
    """Sample some process trees until stopped; use as a context manager around a load run."""

    def __init__(self, trees: Sequence[ProcessTree], interval_s: float = 0.1):
        self._trees = list(trees)
        self._interval_s = interval_s
        self._first: Dict[_Key, float] = {}
        self._last: Dict[_Key, float] = {}
        self._peak_rss = 0
        self._peak_memory = 0
        self._peak_count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-monitor", daemon=True)

    def __enter__(self) -> "ResourceMonitor":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def usage(self) -> Usage:
        """The totals for the window (call after the ``with`` block)."""
        cpu = sum(self._last[key] - self._first.get(key, 0.0) for key in self._last)
        return Usage(
            cpu_s=max(cpu, 0.0),
            peak_memory_bytes=self._peak_memory,
            peak_rss_bytes=self._peak_rss,
            processes=self._peak_count,
        )

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        rss = 0
        procs: List[psutil.Process] = [p for tree in self._trees for p in tree.processes()]
        count = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    own_rss = proc.memory_info().rss
            except psutil.Error:
                continue
            count += 1
            rss += own_rss
            cpu = times.user + times.system
            if key not in self._last and self._thread.is_alive():
                self._first.setdefault(key, 0.0)  # born during the window: all its CPU counts
            self._first.setdefault(key, cpu)
            self._last[key] = cpu
        self._peak_rss = max(self._peak_rss, rss)
        memory = tree_bytes(p.pid for p in procs)
        self._peak_memory = max(self._peak_memory, memory)
        self._peak_count = max(self._peak_count, count)


def tree_cpu_s(trees: Sequence[ProcessTree]) -> float:
    """CPU seconds used so far by the live processes of ``trees``."""
    total = 0.0
    for proc in [p for tree in trees for p in tree.processes()]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def cpu_rate(trees: Sequence[ProcessTree], seconds: float) -> float:
    """The trees' CPU use over the next ``seconds``, in cores (1.0 = one core busy)."""
    before = tree_cpu_s(trees)
    time.sleep(seconds)
    return (tree_cpu_s(trees) - before) / seconds


def wait_idle(
    trees: Sequence[ProcessTree],
    timeout_s: float,
    idle_rate: float = 0.0,
    interval_s: float = 0.2,
    busy_fraction: float = 0.1,
) -> float:
    """Wait until the trees are back to idle: an interval under ``idle_rate`` (their own CPU use
    when idle, some servers poll) plus ``busy_fraction`` of a core.

    The load generator abandons its in-flight requests when a run ends, but the server still
    computes them; measuring before they are done would charge them to the next run (and for slow
    scenarios leave it no time at all). Returns the seconds waited, at most ``timeout_s``.
    """
    start = time.monotonic()
    last = tree_cpu_s(trees)
    limit = (idle_rate + busy_fraction) * interval_s
    while time.monotonic() - start < timeout_s:
        time.sleep(interval_s)
        now = tree_cpu_s(trees)
        if now - last < limit:
            break
        last = now
    return time.monotonic() - start
