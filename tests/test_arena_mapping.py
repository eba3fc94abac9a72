"""One mapping of the arena per worker process, and no populate pass over it.

The server (``servers/arena_maps.py``: two ``ShmIPCMixin`` stages of two workers each, a warm-up
through the arena) runs with a 256 MiB arena. Each worker's memory is read twice: by the worker
itself while it answers a request (its report), and from outside through ``/proc/<pid>`` for
every worker process of the server, so none is missed.
"""

from __future__ import annotations

from pathlib import Path

from server_util import StartServer, wait_until

#: The test arena's bytes (``--shm-size``).
ARENA_BYTES = 256 << 20
#: Workers per stage.
WORKERS = 2
#: The most arena bytes a worker may have resident after start and a request of 1 MiB: what
#: it touched (the header, the allocator, its objects' pages), far from the whole arena.
RESIDENT_LIMIT = ARENA_BYTES // 8


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its children, theirs, ...), from ``/proc``."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
            listed = " ".join((task / "children").read_text() for task in tasks)
            children = [int(pid) for pid in listed.split()]
        except FileNotFoundError:  # it exited meanwhile
            continue
        found += children
        todo += children
    return found


def arena_lines(pid: int) -> list[str]:
    """The lines of ``/proc/<pid>/maps`` that map an arena file."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):  # it exited meanwhile
        return []
    return [line for line in maps if "/mosec-arena-" in line]


def rss_shmem(pid: int) -> int:
    """Resident shared-memory bytes of a process (``RssShmem`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssShmem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssShmem for {pid}")


def test_each_worker_maps_the_arena_once_and_touches_only_what_it_uses(
    start_server: StartServer,
) -> None:
    server = start_server(
        "arena_maps.py", "--shm-size", str(ARENA_BYTES), "--workers", str(WORKERS)
    )
    response = server.post(json={"size": 1 << 20})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["sum"] == 1 << 20
    for report in answer["reports"]:
        assert report["mappings"] == 1, report
        assert report["RssShmem"] < RESIDENT_LIMIT, report

    # Every worker warms up through the arena before it connects; wait until all have mapped it.
    def mapped() -> list[int] | None:
        workers = [pid for pid in descendants(server.pid) if arena_lines(pid)]
        return workers if len(workers) == 2 * WORKERS else None

    workers = wait_until(mapped, 30.0, f"{2 * WORKERS} workers mapping the arena")
    assert {report["pid"] for report in answer["reports"]} <= set(workers)
    for pid in workers:
        assert len(arena_lines(pid)) == 1, (pid, arena_lines(pid))
        assert rss_shmem(pid) < RESIDENT_LIMIT, (pid, rss_shmem(pid))
