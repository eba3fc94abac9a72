"""Arena stages whose ``forward`` makes arrays with ordinary NumPy code, for the zero-copy tests.

Routes (one worker per stage, so a kept array stays in one process):

- ``/make``: ``Make`` → ``Check``;
- ``/pass``: ``Make`` → ``Pass`` (returns its input as it is) → ``Check``;
- ``/pass-slice``: ``Make`` → ``PassSlice`` (returns a slice of its input) → ``Check``.

``Make`` reads a JSON request: ``kind`` and ``n`` choose the array (:func:`build`); ``keep``
keeps the returned array on the worker, ``stash`` keeps one more arena array that is never
returned, ``reread`` reports the digest of the array kept earlier, ``drop`` forgets both.
``report`` is a file it writes ``{"pid", "offset", "kept"}`` to: the arena offset of the
returned array's first element (null when it is not in the arena) and the kept digest.

``Check`` answers ``{"digest", "shape", "strides", "offset"}`` for the array it received.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mosec import Runtime, Server, Worker
from mosec.mixin import ShmIPCMixin
from mosec.store.arena import arena_store


def build(kind: str, n: int) -> np.ndarray:
    """The array of a request: the same in the worker and in the test that checks it."""
    if kind == "full":
        return np.full(n, 3.25, np.float32)
    if kind == "ufunc":
        x = np.arange(n, dtype=np.float64)
        return np.sin(x) * 2.0 + 1.0
    if kind == "concatenate":
        half = np.arange(n // 2, dtype=np.float32)
        return np.concatenate([half, half[::-1] * 3])
    if kind == "slice":
        return (np.arange(n, dtype=np.float32) * 1.5)[10:-10:3]
    if kind == "transpose":
        return (np.arange(n, dtype=np.float32).reshape(-1, 64) + 1).T
    if kind == "reversed":
        return np.arange(n, dtype=np.int64)[::-1]
    if kind == "zeros":
        dirty = np.full(n, 7.0)  # the block zeros will likely reuse
        del dirty
        return np.zeros(n)
    if kind == "fromiter":  # grows by realloc
        return np.fromiter((i * 0.5 for i in range(n)), dtype=np.float64)
    if kind == "resize":  # ndarray.resize: realloc, the new tail zeroed
        grown = np.arange(n, dtype=np.float64)
        grown.resize(2 * n, refcheck=False)
        return grown
    if kind == "crowded":  # a temporary fills the arena, so the result must fall back
        scratch = np.ones(n)
        out = scratch * 2.0
        del scratch
        return out
    raise ValueError(f"unknown kind {kind!r}")


def digest(array: np.ndarray) -> str:
    """Dtype, shape and elements in C order: equal digests mean a bit-exact round trip."""
    head = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(head + np.ascontiguousarray(array).tobytes()).hexdigest()


def arena_offset(array: np.ndarray) -> int | None:
    return arena_store().mapping.offset_of(array)


class Make(ShmIPCMixin, Worker):
    def __init__(self) -> None:
        super().__init__()
        self.kept: np.ndarray | None = None
        self.stash: np.ndarray | None = None

    def forward(self, data: dict[str, Any]) -> Any:
        kept = digest(self.kept) if data.get("reread") and self.kept is not None else None
        if data.get("drop"):
            self.kept = self.stash = None
        out = build(data.get("kind", "full"), int(data.get("n", 1 << 16)))
        if data.get("keep"):
            self.kept = out
        if data.get("stash"):
            self.stash = np.full(1 << 18, 9.0)
        if "report" in data:
            report = {"pid": os.getpid(), "offset": arena_offset(out), "kept": kept}
            tmp = Path(f"{data['report']}.tmp")
            tmp.write_text(json.dumps(report))
            tmp.replace(data["report"])
        return out


class Pass(ShmIPCMixin, Worker):
    def forward(self, data: np.ndarray) -> np.ndarray:
        return data


class PassSlice(ShmIPCMixin, Worker):
    def forward(self, data: np.ndarray) -> np.ndarray:
        return data[1:-1]


class Check(ShmIPCMixin, Worker):
    def forward(self, data: np.ndarray) -> dict[str, Any]:
        return {
            "digest": digest(data),
            "shape": list(data.shape),
            "strides": list(data.strides),
            "offset": arena_offset(data),
        }


if __name__ == "__main__":
    server = Server()
    make, check = Runtime(Make), Runtime(Check)  # one process each, shared by the routes
    server.register_runtime(
        {
            "/make": [make, check],
            "/pass": [make, Runtime(Pass), check],
            "/pass-slice": [make, Runtime(PassSlice), check],
        }
    )
    server.run()
