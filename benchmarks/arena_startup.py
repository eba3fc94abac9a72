"""Start-up time and memory of arena workers: time to ``GET /`` 200 and each worker's RSS after.

Each run starts ``tests/servers/arena_maps.py`` (two ``ShmIPCMixin`` stages whose warm-up goes
through the arena, so every worker has mapped it before the engine accepts connections) with
``--shm-size`` bytes and ``--workers`` processes per stage, on a free port of 127.0.0.1, polls
``GET /`` every ``--poll-ms`` from just before the spawn until the first 200, then reads every
worker's ``/proc/<pid>/status`` (``VmRSS``, and ``RssShmem``: the arena pages it has mapped) and
counts the arena file's lines in its ``/proc/<pid>/maps``. The server is stopped by PID.

Run from the repository root::

    python -m benchmarks.arena_startup                          # 1 GiB arena, 2 x 2 workers, 5 runs
    python -m benchmarks.arena_startup --shm-size 2147483648 --repeats 3

It prints one line per run and the medians (over runs; RSS over every worker of every run).
"""

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

from benchmarks.net import HOST, free_port
from benchmarks.processes import ProcessTree
from benchmarks.runtimes import REPO, RUNTIMES
from benchmarks.startup import StartupError, _poll

SCRIPT = Path("tests") / "servers" / "arena_maps.py"
MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Worker:
    """One worker process after start."""

    pid: int
    mappings: int
    vm_rss: int
    rss_shmem: int


@dataclasses.dataclass(frozen=True)
class Run:
    """One start: seconds from the spawn to ``GET /`` 200, and the workers then."""

    root_s: float
    workers: List[Worker]


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    top = argparse.ArgumentParser(
        prog="python -m benchmarks.arena_startup", description=__doc__.splitlines()[0]
    )
    top.add_argument("--repeats", type=int, default=5, help="starts")
    top.add_argument("--shm-size", type=int, default=1 << 30, help="arena bytes")
    top.add_argument("--workers", type=int, default=2, help="worker processes per stage (2 stages)")
    top.add_argument("--poll-ms", type=float, default=10.0, help="interval between polls")
    top.add_argument("--timeout", type=float, default=120.0, help="seconds until a start fails")
    top.add_argument(
        "--repo",
        type=Path,
        default=REPO,
        help="the checkout whose mosec and server script run (another one: a before/after run)",
    )
    return top


def _status_bytes(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    return 0


def _worker(pid: int) -> Optional[Worker]:
    """The worker's memory, or ``None`` when ``pid`` maps no arena (or is gone)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        mappings = sum(1 for line in maps if "/mosec-arena-" in line)
        if not mappings:
            return None
        return Worker(pid, mappings, _status_bytes(pid, "VmRSS"), _status_bytes(pid, "RssShmem"))
    except OSError:
        return None


def start_once(args: argparse.Namespace, log_path: Path) -> Run:
    """Spawn the server, time its first ``GET /`` 200, read its workers, stop it by PID.

    Raises:
        StartupError: it exited or did not get ready within ``--timeout``.
    """
    port = free_port()
    argv = [str(RUNTIMES["ours"].python), str(SCRIPT), "--address", HOST, "--port", str(port)]
    argv += ["--shm-size", str(args.shm_size), "--workers", str(args.workers)]
    env = RUNTIMES["ours"].env()
    env["PYTHONPATH"] = str(args.repo)
    tree = ProcessTree(argv, log_path, env=env, cwd=args.repo)
    spawned = time.perf_counter()
    tree.start()
    try:
        deadline = spawned + args.timeout
        root = _poll(tree, port, ("GET", "/", None), args.poll_ms / 1000, deadline)
        leader = tree.pid
        workers = [w for p in tree.processes() if p.pid != leader for w in [_worker(p.pid)] if w]
    finally:
        tree.stop()
    if len(workers) != 2 * args.workers:
        raise StartupError(f"{len(workers)} workers map the arena, expected {2 * args.workers}")
    return Run(root - spawned, workers)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the starts and print each one and the medians."""
    args = parser().parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="arena_startup_") as folder:
        for repeat in range(args.repeats):
            run = start_once(args, Path(folder) / f"server-{repeat}.log")
            runs.append(run)
            rss = ", ".join(f"{w.vm_rss / MIB:.0f}/{w.rss_shmem / MIB:.0f}" for w in run.workers)
            print(f"run {repeat}: GET / 200 after {run.root_s:.3f} s; VmRSS/RssShmem MiB: {rss}")
    workers = [w for run in runs for w in run.workers]
    print(
        f"median of {len(runs)} runs, --shm-size {args.shm_size / MIB:.0f} MiB, "
        f"{2 * args.workers} workers: GET / 200 after "
        f"{statistics.median(run.root_s for run in runs):.3f} s; per worker: "
        f"VmRSS {statistics.median(w.vm_rss for w in workers) / MIB:.1f} MiB, "
        f"RssShmem {statistics.median(w.rss_shmem for w in workers) / MIB:.1f} MiB, "
        f"arena mappings {sorted({w.mappings for w in workers})}"
    )


if __name__ == "__main__":
    main()
