"""Memory of a process tree, with shared memory counted once.

Summing RSS over a tree counts a shared page once per process that maps it: a 1 GiB arena mapped
by four workers (some map it twice) would read as 6 GiB. Here a tree's memory is:

- the private anonymous memory of every process (``RssAnon`` in ``/proc/<pid>/status``: heaps,
  numpy arrays, interpreter state), summed; plus
- every shared-memory object mapped by any of them (files in ``/dev/shm``, memfds, SysV segments),
  each counted once by device and inode, at the memory it holds (its allocated blocks).

Program text and shared libraries (file-backed, clean, shared with every other process) are left
out. Everything is read from cheap ``/proc`` counters and maps; no page-table walk.
"""

import os
from typing import Dict, Iterable, Tuple

_SHARED_PREFIXES = ("/dev/shm/", "/memfd:", "/SYSV")

ObjectKey = Tuple[str, str]  # (device, inode) of a shared-memory object


def anon_bytes(pid: int) -> int:
    """The process's private anonymous resident memory, or 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def shared_objects(pid: int) -> Dict[ObjectKey, int]:
    """The shared-memory objects the process maps, with the bytes each one holds."""
    found: Dict[ObjectKey, int] = {}
    try:
        with open(f"/proc/{pid}/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith(_SHARED_PREFIXES):
            continue
        key = (parts[3], parts[4])
        if key in found:
            continue
        found[key] = _held_bytes(pid, parts[0])
    return found


def _held_bytes(pid: int, address_range: str) -> int:
    """Bytes a mapped shared object holds: its allocated blocks (tmpfs keeps only those)."""
    try:
        return os.stat(f"/proc/{pid}/map_files/{address_range}").st_blocks * 512
    except OSError:  # not root, or gone: fall back to the mapping's length, an upper bound
        start, _, end = address_range.partition("-")
        return int(end, 16) - int(start, 16)


def tree_bytes(pids: Iterable[int]) -> int:
    """Private anonymous memory of every process plus each shared object once."""
    total = 0
    shared: Dict[ObjectKey, int] = {}
    for pid in set(pids):
        total += anon_bytes(pid)
        for key, size in shared_objects(pid).items():
            shared.setdefault(key, size)
    return total + sum(shared.values())
