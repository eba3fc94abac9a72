"""Two arena stages that tell how their process maps the arena, for the one-mapping test.

``--workers N`` (this script's own flag, default 2) sets the processes per stage. Both stages
have a warm-up example that goes through the arena, so every worker has opened its mapping
before it connects. Stage 1 (``Produce``) writes a ``size``-byte array into the
arena with ``shm_empty`` (default 1 MiB) and hands it on beside a report of its own process
(:func:`report`); stage 2 (``Report``) reads it and answers ``{"reports": [stage 1, stage 2],
"sum": <sum of the array's bytes>}``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from mosec import Server, Worker
from mosec.mixin import ShmIPCMixin
from mosec.store.mapping import arena_mapping

#: Default bytes of the array (over the codec's inline limit, so it goes through the arena).
SIZE = 1 << 20


def report() -> dict:
    """This process's view of the arena: pid, mappings of its file, resident bytes."""
    path = arena_mapping().client.path
    with open("/proc/self/maps") as maps:
        mappings = sum(1 for line in maps if path in line)
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    resident = {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "RssShmem")}
    return {"pid": os.getpid(), "mappings": mappings, **resident}


class Produce(ShmIPCMixin, Worker):
    """Fills an arena array and hands it over with its report."""

    example = {"size": SIZE}

    def forward(self, data):
        array = self.shm_empty(int(data.get("size", SIZE)), np.uint8)
        array.fill(1)
        return {"report": report(), "array": array}


class Report(ShmIPCMixin, Worker):
    """Reads the array and answers with both stages' reports."""

    example = {"report": {}, "array": np.ones(SIZE, np.uint8)}

    def forward(self, data):
        return {"reports": [data["report"], report()], "sum": int(data["array"].sum())}


def _workers() -> int:
    if "--workers" in sys.argv:
        return int(sys.argv[sys.argv.index("--workers") + 1])
    return 2


if __name__ == "__main__":
    workers = _workers()
    if "--workers" in sys.argv:
        index = sys.argv.index("--workers")
        del sys.argv[index : index + 2]
    server = Server()
    server.append_worker(Produce, num=workers)
    server.append_worker(Report, num=workers)
    server.run()
