"""``mosec.mpserver`` workers for ``tests/test_mpserver_arena.py``: large arrays through a flow."""

import hashlib
import os
import time

import numpy as np

from mosec import mpserver as mp


class Halve(mp.Worker):
    """A new array, half the input; waits first while the gate file (if named) is missing."""

    def __init__(self, gate: str = "", **kwargs):
        super().__init__(**kwargs)
        self.gate = gate

    def call(self, x):
        deadline = time.monotonic() + 60
        while self.gate and not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.01)  # the test opens the gate once it has seen the input in the arena
        if isinstance(x, dict) and x.get("fail"):
            raise ValueError("asked to fail")
        return x / 2


class ScaleInPlace(mp.Worker):
    """Doubles its input in place (it is its own copy) and answers the sum."""

    def call(self, x):
        x *= 2
        return float(x.sum(dtype=np.float64))


class Digest(mp.Worker):
    """The input's SHA-256: the other member's in-place change must not show here."""

    def call(self, x):
        return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def flow(gate: str):
    """Halve, then an ensemble of an in-place writer and a reader of the same array."""
    return mp.SequentialServlet(
        mp.ProcessServlet(Halve, gate=gate),
        mp.EnsembleServlet(mp.ProcessServlet(ScaleInPlace), mp.ProcessServlet(Digest)),
    )
