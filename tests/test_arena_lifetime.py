"""An arena input outlives its request while the worker reading it is still in ``forward``.

The lifetime rule (ARCHITECTURE.md, section 4): an input handed to a worker in a BATCH is freed
only when that worker has answered the batch, or its link has ended. Here a request times out
(408) while stage 2 holds it inside ``forward``, reading its input in place: the engine drops
the task at once but keeps the input. Meanwhile other requests of the same size allocate and
write the arena (a freed block would be the first one reused) and are served by the stage's
other worker. The held worker's digest of its input at the end of ``forward`` matches the one
at the start and the payload sent; once it answers, the arena is back at its baseline.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from arena_util import NS, arena_usage, hold_keys, wait_at_rest
from inflight import Hold, Request
from server_util import StartServer, wait_until
from servers.ipc_arena import HEADER, payload

#: The engine's deadline for a request; the stages' own forward timeouts are 30 s. Long enough
#: for the other requests to be served well within it on a loaded 2-core machine (a worker maps
#: the arena on its first request), short enough to keep the test quick.
TIMEOUT_MS = 5000
SIZE = 1 << 20
#: Per-object overhead and alignment of the arena's blocks (``GRANULE`` in shm/src/header.rs).
GRANULE = 64


def block(size: int) -> int:
    """Bytes an object of ``size`` payload bytes holds in the arena."""
    return GRANULE + -(-size // GRANULE) * GRANULE


def digest(seed: int) -> str:
    """Stage 2's digest of the payload of a request with ``seed``."""
    return hashlib.sha256(payload(SIZE, seed).tobytes()).hexdigest()


def test_a_timed_out_input_lives_until_its_reader_answers(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(
        "ipc_arena.py", "--timeout", str(TIMEOUT_MS), "--workers", "2", "--shm-size", "64M"
    )
    wait_at_rest(server)

    reader = Hold(tmp_path, "reader")
    digests = tmp_path / "digests.json"
    body = {"size": SIZE, "seed": 1, "digests2": str(digests)} | hold_keys(reader, "2")
    held = Request(server, json=body)
    reader.wait_inside()
    assert held.result().status_code == 408
    wait_until(lambda: server.metric(f"{NS}_remaining_task") == 0, 10, "the task removed")
    # The task is gone, its input is not: the worker reading it has not answered.
    assert arena_usage(server) == (block(HEADER + SIZE), 1)

    others = []
    for seed in range(2, 8):
        response = server.post(json={"size": SIZE, "seed": seed})
        assert response.status_code == 200, response.text
        assert response.json()["sha256"] == digest(seed)
        others.append(response.json()["offset"])
    assert arena_usage(server) == (block(HEADER + SIZE), 1), "the others leave nothing behind"

    reader.release()
    wait_until(digests.exists, 30, "the held worker's digests")
    seen = json.loads(digests.read_text())
    assert seen["start"] == digest(1)
    assert seen["end"] == seen["start"], "the input changed under its reader"
    assert seen["offset"] not in others, "another request was given the held input's space"
    wait_at_rest(server)
