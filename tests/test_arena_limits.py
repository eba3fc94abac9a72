"""The arena's edges: a full arena, forged and stale references, and the in-place producer.

One server (``servers/ipc_arena.py``, two ``ShmIPCMixin`` stages, an 8 MiB arena) serves the
module; every test starts and ends with the arena at rest (no task in flight, no object alive).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from arena_util import NS, WAIT_S, arena_usage, hold_keys, wait_at_rest
from inflight import Hold, Request
from server_util import Server, StartServer, run_server, wait_until
from servers.ipc_arena import HEADER

#: Slack over a bound, for a loaded 2-core machine.
SLACK_S = 4.0
#: The module server's ``--shm-wait``: longer than the default, so the flag is seen to reach
#: the workers that wait.
SHM_WAIT_S = WAIT_S * 1.5
#: Per-object overhead and alignment of the arena's blocks (``GRANULE`` in shm/src/header.rs,
#: which the extension does not export).
GRANULE = 64


def block(payload: int) -> int:
    """Bytes an object of ``payload`` bytes holds in the arena (header plus rounded payload)."""
    return GRANULE + -(-payload // GRANULE) * GRANULE


def digest(size: int, seed: int) -> str:
    """What stage 2 answers for a payload (see ``payload`` in ``ipc_arena.py``)."""
    data = np.random.default_rng(seed).bytes(size)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The module's server."""
    with run_server(
        "ipc_arena.py",
        "--shm-size",
        "8M",
        "--timeout",
        "20000",
        "--shm-wait",
        str(int(SHM_WAIT_S * 1000)),
        log_dir=tmp_path_factory.mktemp("arena-limits"),
    ) as running:
        yield running


@pytest.fixture
def server(module_server: Server) -> Iterator[Server]:
    """The module's server, at rest before and after the test."""
    wait_at_rest(module_server)
    yield module_server
    wait_at_rest(module_server)


def test_a_full_arena_answers_503_within_its_bound(server: Server, tmp_path: Path) -> None:
    capacity = int(server.metric(f"{NS}_shm_capacity_bytes"))
    size = 5 << 20  # two never fit in 8 MiB
    held = Hold(tmp_path, "holder")
    first = Request(server, json={"size": size, "seed": 1, **hold_keys(held, "2")})
    held.wait_inside()
    assert arena_usage(server) == (block(HEADER + size), 1)
    full_before = server.metric(f"{NS}_store_full_total")

    started = time.monotonic()
    response = server.post(json={"size": size, "seed": 2})
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    match = re.fullmatch(
        r"store full: shared-memory arena: shared-memory arena is full: requested (\d+) bytes, "
        r"capacity (\d+) bytes, (\d+) bytes in use",
        response.text,
    )
    assert match, response.text
    assert int(match[1]) == HEADER + size
    assert int(match[2]) == capacity
    assert int(match[3]) == block(HEADER + size)
    assert SHM_WAIT_S * 0.95 <= elapsed < SHM_WAIT_S + SLACK_S, f"answered after {elapsed:.2f}s"
    assert server.metric(f"{NS}_store_full_total") == full_before + 1

    held.release()
    assert first.result().status_code == 200
    wait_at_rest(server)
    # The room is back: the request that did not fit goes through now.
    response = server.post(json={"size": size, "seed": 2})
    assert response.status_code == 200
    assert response.json()["sha256"] == digest(size, 2)


def test_an_object_larger_than_the_arena_fails_at_once(server: Server) -> None:
    full_before = server.metric(f"{NS}_store_full_total")
    started = time.monotonic()
    response = server.post(json={"size": 9 << 20})
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "can never fit in the shared-memory arena" in response.text
    assert "--shm-size" in response.text
    assert elapsed < SHM_WAIT_S, "waiting cannot help an object that never fits"
    assert server.metric(f"{NS}_store_full_total") == full_before + 1


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (
            "generation",
            r"inference internal error: invalid arena reference: stale reference: no live "
            r"object of generation \d+ and size 64 at offset \d+ \(freed already, reused, or "
            r"never allocated\)",
        ),
        (
            "arena",
            r"inference internal error: invalid arena reference: reference belongs to arena "
            r"0x[0-9a-f]{16}, not to this arena 0x[0-9a-f]{16}",
        ),
        (
            "offset",
            r"inference internal error: invalid arena reference: reference out of bounds: "
            r"offset 1125899906842624, size 64 outside the arena's data region \[\d+, \d+\) or "
            r"not 64-byte aligned",
        ),
        (
            "garbage",
            r"inference internal error: malformed store reference: arena reference cut short",
        ),
        (
            "store",
            r"inference internal error: store reference names store 9, which this server does "
            r"not run",
        ),
        (
            "store-empty",
            r"inference internal error: store reference names store 9, which this server does "
            r"not run",
        ),
        (
            "unsealed",
            r"invalid store reference: object at offset \d+ is leased for writing \(unsealed\), "
            r"but this needs it sealed",
        ),
    ],
)
def test_a_forged_reference_is_a_clear_error(server: Server, forge: str, message: str) -> None:
    response = server.post(json={"forge": forge})
    assert response.status_code == 500
    assert re.fullmatch(message, response.text), response.text
    wait_at_rest(server)
    # The arena is still fine for everyone else.
    response = server.post(json={"size": 100_000, "seed": 3})
    assert response.status_code == 200
    assert response.json()["sha256"] == digest(100_000, 3)


def test_a_reference_kept_from_a_finished_request_is_stale(server: Server, tmp_path: Path) -> None:
    kept = tmp_path / "kept.ref"
    first = server.post(json={"size": 100_000, "seed": 4, "keep": str(kept)})
    assert first.status_code == 200
    assert first.json()["sha256"] == digest(100_000, 4)
    wait_at_rest(server)
    # Reuse the space so that the kept reference points at a live object of a newer generation.
    held = Hold(tmp_path, "reuser")
    reuser = Request(server, json={"size": 100_000, "seed": 5, **hold_keys(held, "2")})
    held.wait_inside()
    response = server.post(json={"forge": "replay", "replay": str(kept)})
    assert response.status_code == 500
    assert re.fullmatch(
        r"inference internal error: invalid arena reference: stale reference: no live object "
        r"of generation \d+ and size 102048 at offset \d+ \(freed already, reused, or never "
        r"allocated\)",
        response.text,
    ), response.text
    held.release()
    assert reuser.result().json()["sha256"] == digest(100_000, 5)


def test_a_reference_handed_over_twice_is_refused(server: Server, tmp_path: Path) -> None:
    """A worker replays the reference of a request that is still in flight: the engine must not
    let two tasks own (and the second read) the first task's object."""
    kept = tmp_path / "kept.ref"
    carried = server.metric(f"{NS}_ipc_bytes_total", carried="reference")
    held = Hold(tmp_path, "owner")
    owner = Request(
        server, json={"size": 100_000, "seed": 6, "keep": str(kept), **hold_keys(held, "2")}
    )
    held.wait_inside()
    replay = Request(server, json={"forge": "replay", "replay": str(kept)})
    # The replayed task has either failed already or moved on to stage 2 holding the object.
    wait_until(
        lambda: (
            replay.response is not None
            or server.metric(f"{NS}_ipc_bytes_total", carried="reference") - carried
            >= 2 * (HEADER + 100_000)
        ),
        15,
        "the replayed reference to be judged",
    )
    held.release()
    assert owner.result().json()["sha256"] == digest(100_000, 6)
    response = replay.result()
    assert response.status_code == 500, f"the replay got the owner's data: {response.text}"
    assert re.fullmatch(
        r"inference internal error: invalid arena reference: object at offset \d+ already "
        r"belongs to another request",
        response.text,
    ), response.text


def test_a_refused_payload_leaves_nothing_behind(start_server: StartServer) -> None:
    """One valid object then a forged one: the request fails, and the valid one is freed."""
    own = start_server("ipc_arena.py", "--shm-size", "8M", "--workers", "1")
    response = own.post(json={"forge": "partial"})
    assert response.status_code == 500
    assert "stale reference" in response.text
    wait_until(lambda: arena_usage(own) == (0, 0), 5, "the payload's valid object to be freed")


def test_the_in_place_producer_hands_over_without_a_copy(server: Server) -> None:
    size = 3 << 20
    carried = server.metric(f"{NS}_ipc_bytes_total", carried="reference")
    inline = server.metric(f"{NS}_ipc_bytes_total", carried="inline")
    response = server.post(json={"size": size, "seed": 7, "inplace": True})
    assert response.status_code == 200
    answer = response.json()
    assert answer["sha256"] == digest(size, 7)
    assert answer["size"] == size
    # Stage 2 read the very bytes stage 1 wrote: same place in the arena, no copy between.
    assert answer["inplace_offset"] is not None
    assert answer["offset"] == answer["inplace_offset"]
    assert answer["writeable"] is False
    assert server.metric(f"{NS}_ipc_bytes_total", carried="reference") == carried + HEADER + size
    # Only the reference crossed the engine.
    assert server.metric(f"{NS}_ipc_bytes_total", carried="inline") - inline < 1024


def test_a_slice_of_an_in_place_array_is_copied(server: Server) -> None:
    size = 1 << 20
    response = server.post(json={"size": size, "seed": 8, "inplace": True, "slice": True})
    assert response.status_code == 200
    answer = response.json()
    half = np.random.default_rng(8).bytes(size)[: size // 2]
    assert answer["sha256"] == hashlib.sha256(half).hexdigest()
    assert answer["offset"] is not None
    assert answer["offset"] != answer["inplace_offset"]


def test_unused_in_place_arrays_are_freed_after_the_batch(server: Server, tmp_path: Path) -> None:
    size = 1 << 20
    held = Hold(tmp_path, "consumer")
    request = Request(
        server,
        json={"size": size, "seed": 9, "inplace": True, "spare": 3, "spare_size": 500_000}
        | hold_keys(held, "2"),
    )
    held.wait_inside()
    # Stage 1 has finished its batch: only the array it handed over is left.
    wait_until(
        lambda: arena_usage(server) == (block(HEADER + size), 1), 10, "the spare arrays to be freed"
    )
    held.release()
    assert request.result().json()["sha256"] == digest(size, 9)


def test_in_place_arrays_of_a_failed_forward_are_freed(server: Server) -> None:
    response = server.post(
        json={"size": 1 << 20, "inplace": True, "spare": 2, "spare_size": 100_000, "raise1": True}
    )
    assert response.status_code == 422
    assert response.text == "request validation error: asked to raise in stage 1"
