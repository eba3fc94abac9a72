"""The flows benchmark's workers, for mpservice 0.16.8's ``mpserver`` and for ``mosec.mpserver``.

The module under test is named by ``FLOW_MPSERVER`` (``mpservice.mpserver`` or
``mosec.mpserver``), read at import, so the spawned worker processes import the same one.
"""

import importlib
import os

import numpy as np

mp = importlib.import_module(os.environ.get("FLOW_MPSERVER", "mosec.mpserver"))

#: Bytes of the ensemble scenario's array (float32).
ARRAY_BYTES = 8 << 20


class Inc(mp.Worker):
    """Adds one: a small item through a stage."""

    def call(self, x):
        return x + 1


class Total(mp.Worker):
    """One member: the array's sum."""

    def call(self, x):
        return float(np.sum(x, dtype=np.float64))


class Peak(mp.Worker):
    """The other member: the array's maximum."""

    def call(self, x):
        return float(np.max(x))


def small_flow():
    """Three processes in a line, one small item at a time."""
    return mp.SequentialServlet(
        mp.ProcessServlet(Inc), mp.ProcessServlet(Inc), mp.ProcessServlet(Inc)
    )


def ensemble_flow():
    """An 8 MiB array fanned out to two member processes; the answer is their two numbers."""
    return mp.EnsembleServlet(mp.ProcessServlet(Total), mp.ProcessServlet(Peak))


def array(seed: int) -> np.ndarray:
    """The ensemble scenario's input."""
    return np.random.default_rng(seed).random(ARRAY_BYTES // 4, dtype=np.float32)
