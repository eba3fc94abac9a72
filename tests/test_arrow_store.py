"""ArrowShmIPCMixin (and its Plasma alias) through a real two-stage pipeline on the arena."""

from __future__ import annotations

from typing import Any

import pytest
from server_util import Server, StartServer, wait_until
from servers.store_objects import build, digest

PIPELINE = "store_pipeline.py"
NS = "mosec_service"


def check(server: Server, request: dict[str, Any]) -> dict[str, Any]:
    """Send a request; the second stage must have received the object bit for bit."""
    response = server.post(json=request)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["digest"] == digest(build(request)), request
    return answer


def arena(server: Server) -> tuple[float, float]:
    """``(used bytes, objects)`` of the arena now."""
    assert server.metric(f"{NS}_shm_capacity_bytes") > 0  # the metrics are there to read
    return server.metric(f"{NS}_shm_used_bytes"), server.metric(f"{NS}_shm_objects")


def assert_arena_back(server: Server, baseline: tuple[float, float]) -> None:
    wait_until(lambda: arena(server) == baseline, 10, "the arena back at its baseline")


def test_arrays_travel_as_arrow_tensors_read_in_place(start_server: StartServer) -> None:
    server = start_server(PIPELINE, env={"TEST_MIXIN": "arrow"})
    baseline = arena(server)
    tensors: list[dict[str, Any]] = [
        {"kind": "array", "n": 3 * 1024 * 1024, "seed": 1},
        {"kind": "array", "shape": [300, 200], "dtype": "float16"},
        {"kind": "array", "shape": [300, 200], "order": "F", "dtype": "float64"},
        {"kind": "array", "shape": [400, 300], "step": 2, "dtype": "int8"},
        {"kind": "array", "shape": [70000], "dtype": "uint64"},
    ]
    # Not tensor material (or written in place): the arena's own format, still read in place.
    others: list[dict[str, Any]] = [
        {"kind": "array", "shape": [70000], "dtype": "bool"},
        {"kind": "array", "shape": [70000], "dtype": ">i4"},
        {"kind": "array", "shape": [70000], "dtype": "complex64"},
        {"kind": "dict", "n": 100_000},
        {"kind": "array", "n": 100_000, "in_place": True},
    ]
    for request in tensors + others:
        answer = check(server, request)
        assert answer["arrow_tensor"] == (request in tensors), request
        assert answer["readonly"], request
        assert answer["in_arena"] and all(answer["in_arena"]), request
    # Small outputs travel inline.
    assert check(server, {"kind": "array", "shape": [], "dtype": "float32"})["in_arena"] == []
    assert_arena_back(server, baseline)


@pytest.mark.parametrize("mixin", ["arrow", "plasma"])
def test_tables_and_record_batches_round_trip_in_place(
    start_server: StartServer, mixin: str
) -> None:
    server = start_server(PIPELINE, env={"TEST_MIXIN": mixin})
    baseline = arena(server)
    for kind, type_name in (("table", "Table"), ("batch", "RecordBatch")):
        answer = check(server, {"kind": kind, "n": 50_000, "seed": 5})
        assert answer["type"] == type_name
        assert answer["in_arena"] and all(answer["in_arena"]), answer
    check(server, {"kind": "table", "n": 3})  # a small table still goes through the arena
    assert check(server, {"kind": "array", "n": 100_000})["in_arena"] == [True]
    assert_arena_back(server, baseline)
    if mixin == "plasma":
        lines = [line for line in server.logs().splitlines() if "set_plasma_path" in line]
        assert len(lines) == 1, server.logs()
        assert "plasma left pyarrow in version 12" in lines[0]


def test_errors_free_the_arena(start_server: StartServer) -> None:
    server = start_server(PIPELINE, env={"TEST_MIXIN": "arrow"})
    baseline = arena(server)
    big = {"kind": "table", "n": 50_000}
    assert server.post(json={**big, "second": {"raise": "server"}}).status_code == 500
    assert server.post(json={**big, "first": {"raise": "server"}}).status_code == 500
    assert_arena_back(server, baseline)
