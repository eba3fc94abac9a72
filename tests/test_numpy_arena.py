"""Zero copies by default: arrays a plain ``forward`` makes are born in the arena and handed on.

``servers/numpy_arena.py`` makes arrays with ordinary NumPy code in ``Make``; ``Check`` digests
what it received and says where it lies. The same arena offset on both sides means the array
was handed over with no copy; equal digests mean bit-exact. After every test the arena is back
at rest (no bytes, no objects), whatever the path.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from arena_util import EMPTY, arena_usage, wait_at_rest
from server_util import Server, StartServer, wait_until
from servers.numpy_arena import build, digest

N = 1 << 17
KINDS = [
    "full",
    "ufunc",
    "concatenate",
    "slice",
    "transpose",
    "reversed",
    "zeros",
    "fromiter",
    "resize",
]
#: Kinds whose array NumPy grows by ``realloc`` from a small start on the heap: correct, but
#: not born in the arena (the handler leaves heap blocks on the heap).
HEAP_GROWN = {"fromiter"}
GRANULE = 64


def block(size: int) -> int:
    """Bytes an object of ``size`` payload bytes holds in the arena."""
    return GRANULE + -(-size // GRANULE) * GRANULE


def produce(server: Server, route: str, report: Path, **request: object) -> tuple[dict, dict]:
    """Post one request; returns Check's answer and Make's report."""
    response = server.post(route, json={"report": str(report), **request})
    assert response.status_code == 200, response.text
    return response.json(), json.loads(report.read_text())


@pytest.fixture
def server(start_server: StartServer) -> Server:
    started = start_server("numpy_arena.py")
    wait_at_rest(started)
    return started


@pytest.mark.parametrize("kind", KINDS)
def test_arrays_of_ordinary_numpy_code_cross_bit_exact_and_uncopied(
    server: Server, tmp_path: Path, kind: str
) -> None:
    expected = build(kind, N)
    for route in ("/make", "/pass"):
        answer, made = produce(server, route, tmp_path / "report.json", kind=kind, n=N)
        assert answer["digest"] == digest(expected), route
        assert answer["shape"] == list(expected.shape)
        assert answer["strides"] == list(expected.strides), "views travel as they are"
        assert answer["offset"] is not None, "the consumer reads the arena"
        if kind in HEAP_GROWN:
            assert made["offset"] is None
        else:
            assert made["offset"] is not None, "born in the arena"
            assert answer["offset"] == made["offset"], f"{route}: handed over with no copy"
    wait_at_rest(server)


def test_a_slice_of_a_passed_through_input_is_lent_too(server: Server, tmp_path: Path) -> None:
    answer, made = produce(server, "/pass-slice", tmp_path / "report.json", kind="ufunc", n=N)
    expected = build("ufunc", N)[1:-1]
    assert answer["digest"] == digest(expected)
    assert answer["offset"] == made["offset"] + expected.itemsize
    wait_at_rest(server)


def test_a_kept_array_never_changes_under_its_producer(server: Server, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    nbytes = build("full", N).nbytes
    first, made = produce(server, "/make", report, kind="full", n=N, keep=True)
    assert first["offset"] == made["offset"]
    # The consumer answered; the producer's array still holds the block, and only it.
    wait_until(lambda: arena_usage(server) == (block(nbytes), 1), 10, "one kept block")
    # Same-sized arrays now: a freed block would be reused at once (LIFO) and overwritten.
    for kind in ("ufunc", "zeros", "resize", "concatenate"):
        answer, other = produce(server, "/make", report, kind=kind, n=N)
        assert answer["digest"] == digest(build(kind, N))
        assert other["offset"] != made["offset"]
    _, again = produce(server, "/make", report, kind="zeros", n=N, reread=True)
    assert again["kept"] == digest(build("full", N)), "the kept array is unchanged"
    assert arena_usage(server) == (block(nbytes), 1)
    produce(server, "/make", report, kind="full", n=N, drop=True)
    wait_at_rest(server)


def test_a_full_arena_falls_back_to_the_heap_and_serves(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("numpy_arena.py", "--shm-size", "4M")
    wait_at_rest(server)
    n = (3 << 20) // 8  # 3 MiB of float64: a temporary that fills the 4 MiB arena
    answer, made = produce(server, "/make", tmp_path / "report.json", kind="crowded", n=n)
    assert made["offset"] is None, "the result could not be born in the arena: on the heap"
    assert answer["digest"] == digest(build("crowded", n))
    assert answer["offset"] is not None, "and was copied into the arena once there was room"
    wait_at_rest(server)


def test_a_killed_producer_holding_blocks_has_them_reclaimed(
    server: Server, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    # One block handed over and kept (adopted by the engine, held by the array too), one
    # made and never handed over (the worker's own).
    _, made = produce(server, "/make", report, kind="full", n=N, keep=True, stash=True)
    wait_until(lambda: arena_usage(server)[1] == 2, 10, "two blocks held by the producer")
    os.kill(made["pid"], signal.SIGKILL)
    wait_until(lambda: arena_usage(server) == EMPTY, 20, "the dead producer's blocks reclaimed")
    answer, again = produce(server, "/make", report, kind="ufunc", n=N)
    assert again["pid"] != made["pid"]
    assert answer["digest"] == digest(build("ufunc", N))
    wait_at_rest(server)


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--shm-alloc-min", "0"), {}), ((), {"MOSEC_SHM_ALLOC_MIN": "off"})],
    ids=["flag", "env"],
)
def test_the_handler_can_be_turned_off(
    start_server: StartServer, tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    server = start_server("numpy_arena.py", *args, env=env)
    answer, made = produce(server, "/make", tmp_path / "report.json", kind="ufunc", n=N)
    assert made["offset"] is None, "the array was made on the heap"
    assert answer["digest"] == digest(build("ufunc", N))
    assert answer["offset"] is not None, "and copied into the arena, as before"
    wait_at_rest(server)


def test_a_small_threshold_changes_nothing_for_small_outputs(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Below the inline limit (64 KiB) an output travels inline whatever the handler did.
    server = start_server("numpy_arena.py", "--shm-alloc-min", "4K")
    answer, made = produce(server, "/make", tmp_path / "report.json", kind="full", n=2048)
    assert made["offset"] is not None, "8 KiB made in the arena"
    assert answer["offset"] is None, "but handed over inline"
    assert answer["digest"] == digest(build("full", 2048))
    wait_at_rest(server)
