"""What a fault left behind: arena bytes and objects, open files, processes, arena files.

A ``Snapshot`` is taken at rest before the fault (after a warm-up, so lazily opened connections
and mappings are already there) and again after the load stopped, polling until the server is
back at its baseline or a deadline passes: what is still above the baseline then is a leak.

- arena bytes and objects, and tasks in flight: our engine's metrics (``None`` on upstream);
- open files: the sum of ``/proc/<pid>/fd`` over the server's live processes (workers replaced
  after a kill count with their replacements);
- after a graceful stop (SIGTERM to the server, as a user's process manager does): the
  processes of the tree still alive after ``grace_s`` and the arena files of the server's pid
  still in ``/dev/shm``.
"""

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import psutil

from benchmarks.chaos.target import ChaosServer

SHM = Path("/dev/shm")


@dataclass
class Snapshot:
    """The server's resources at one moment.

    Attributes:
        arena: ``(bytes, objects)`` in our arena, ``None`` without one.
        fds: open file descriptors of all its processes.
        tasks: tasks in our engine's table, ``None`` on upstream.
    """

    arena: Optional[Tuple[int, int]]
    fds: int
    tasks: Optional[int]


@dataclass
class Leaks:
    """What stayed above the baseline once the server settled.

    Attributes:
        arena_bytes, arena_objects: arena usage over the baseline (``None``: no arena).
        fds: file descriptors over the baseline (0 when at or below it).
        tasks: tasks still in the table (``None`` on upstream).
    """

    arena_bytes: Optional[int]
    arena_objects: Optional[int]
    fds: int
    tasks: Optional[int]

    @property
    def any(self) -> bool:
        """Whether anything leaked."""
        return bool(self.arena_bytes or self.arena_objects or self.fds or self.tasks)


def snapshot(server: ChaosServer) -> Snapshot:
    """The server's resources now."""
    assert server.tree is not None
    fds = 0
    for proc in server.tree.processes():
        try:
            fds += proc.num_fds()
        except psutil.Error:
            continue
    tasks = server.metrics().get("remaining_task") if server.spec.runtime == "ours" else None
    return Snapshot(server.arena(), fds, None if tasks is None else int(tasks))


def _settled(now: Snapshot, baseline: Snapshot) -> bool:
    return now.arena == baseline.arena and now.fds <= baseline.fds and not now.tasks


def settle(server: ChaosServer, baseline: Snapshot, timeout_s: float) -> Leaks:
    """Poll until the server is back at ``baseline`` (or ``timeout_s`` passed); the leaks then."""
    deadline = time.monotonic() + timeout_s
    now = snapshot(server)
    while not _settled(now, baseline) and time.monotonic() < deadline:
        time.sleep(0.1)
        now = snapshot(server)
    arena_bytes = arena_objects = None
    if now.arena is not None and baseline.arena is not None:
        arena_bytes = now.arena[0] - baseline.arena[0]
        arena_objects = now.arena[1] - baseline.arena[1]
    return Leaks(arena_bytes, arena_objects, max(now.fds - baseline.fds, 0), now.tasks)


def rest(server: ChaosServer, timeout_s: float) -> Snapshot:
    """A baseline: poll until two snapshots in a row agree (or ``timeout_s``), return the last."""
    deadline = time.monotonic() + timeout_s
    last = snapshot(server)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = snapshot(server)
        if now == last and not now.tasks:
            return now
        last = now
    return last


@dataclass
class Leftovers:
    """What a graceful stop left.

    Attributes:
        processes: processes of the tree still alive ``grace_s`` after SIGTERM.
        files: the server's arena files still in ``/dev/shm`` (``None`` on upstream).
        exit_code: the server's exit code (``None``: it did not exit in time).
    """

    processes: int
    files: Optional[int]
    exit_code: Optional[int]


def stop_gracefully(server: ChaosServer, grace_s: float) -> Leftovers:
    """SIGTERM the server (unless it already exited), wait ``grace_s`` for its whole tree to go.

    The caller still calls ``server.stop()``, which kills whatever is left, by PID.
    """
    tree = server.tree
    assert tree is not None
    tree.processes()  # remember every process of the tree before the leader goes
    if tree.exit_code() is None:
        try:
            os.kill(tree.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (tree.exit_code() is None or tree.remaining()):
        time.sleep(0.05)
    files = None
    if server.spec.runtime == "ours":
        files = len(list(SHM.glob(f"mosec-arena-{tree.pid}-*")))
    return Leftovers(len(tree.remaining()), files, tree.exit_code())
