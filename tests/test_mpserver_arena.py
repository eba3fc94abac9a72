"""``mosec.mpserver`` hands large buffers over through the arena, with mpservice's semantics.

A call's input and every stage's output with a large buffer go through the server's arena
(only references cross the engine); each reader gets its own writable copy, as an unpickled
input is in mpservice, so a member changing its input in place does not change what the
other member reads. Whatever happens to the item, the arena is empty again afterwards.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from servers import mp_arena

from mosec import mpserver as mp

SHAPE = (3, 1024, 1024)  # 12 MiB of float32


def _array(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE, dtype=np.float32)


def _expected(x: np.ndarray) -> list:
    half = x / 2
    return [float((half * 2).sum(dtype=np.float64)), hashlib.sha256(half.tobytes()).hexdigest()]


def _arena(server: mp.Server) -> dict:
    arena = server.debug_info()["arena"]
    assert arena is not None, "this machine's /dev/shm has room, so the server has an arena"
    return arena


def _wait_until(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)  # polling a condition with a deadline


def test_large_arrays_travel_through_the_arena_and_each_reader_owns_its_copy(tmp_path: Path):
    gate = tmp_path / "gate"
    x = _array(1)
    with mp.Server(mp_arena.flow(str(gate))) as server:
        assert _arena(server)["used"] == 0
        answers: list = []
        caller = threading.Thread(target=lambda: answers.append(server.call(x, timeout=60)))
        caller.start()
        # Halve is holding the item: its input is the caller's array, in the arena.
        _wait_until(lambda: _arena(server)["used"] >= x.nbytes, "the input in the arena")
        gate.touch()
        caller.join()
        assert answers == [_expected(x)]
        results = list(server.stream([_array(seed) for seed in range(2, 8)]))
        assert results == [_expected(_array(seed)) for seed in range(2, 8)]
        _wait_until(lambda: _arena(server)["used"] == 0, "the arena empty after success")


def test_the_arena_is_empty_again_after_a_failure_and_a_timeout(tmp_path: Path):
    gate = tmp_path / "gate"
    with mp.Server(mp_arena.flow(str(gate))) as server:
        with pytest.raises(mp.TimeoutError):
            server.call(_array(1), timeout=0.5)  # Halve waits for the gate: past the deadline
        gate.touch()
        with pytest.raises(ValueError, match="asked to fail"):
            server.call({"fail": True, "pad": np.zeros(1 << 20)}, timeout=60)
        assert server.call(_array(2), timeout=60) == _expected(_array(2))
        _wait_until(lambda: _arena(server)["used"] == 0, "the arena empty after the failures")


@pytest.mark.parametrize("mib", [20, 40], ids=["outputs-do-not-fit", "input-does-not-fit"])
def test_a_full_arena_means_inline_never_an_error(monkeypatch, tmp_path: Path, mib: int):
    # A 32 MiB arena: a 20 MiB input fits but Halve's 20 MiB output does not (NumPy's handler
    # falls back to the heap, the hand-over to an inline pickle); a 40 MiB input fits nowhere.
    from mosec.mpserver import core

    monkeypatch.setattr(core, "ARENA_BYTES", 32 << 20)
    gate = tmp_path / "gate"
    x = np.random.default_rng(3).random((mib // 4, 1024, 1024), dtype=np.float32)
    with mp.Server(mp_arena.flow(str(gate))) as server:
        assert _arena(server)["capacity"] < 32 << 20
        answers: list = []
        caller = threading.Thread(target=lambda: answers.append(server.call(x, timeout=60)))
        caller.start()
        if x.nbytes < 32 << 20:
            _wait_until(lambda: _arena(server)["used"] >= x.nbytes, "the input in the arena")
        gate.touch()
        caller.join()
        assert answers == [_expected(x)]
        _wait_until(lambda: _arena(server)["used"] == 0, "the arena empty again")
