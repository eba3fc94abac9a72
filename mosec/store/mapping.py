"""This process's mapping of the server's shared-memory arena.

The engine creates one arena file per server (``--shm-size`` bytes, its memory reserved) and
tells the workers its path in ``MOSEC_ARENA``. Each worker maps the file once, in the Rust
extension (``mosec._engine.ArenaClient``), which also does allocation, sealing, validation and
freeing under the arena's process-shared lock. The bytes are read and written here, through
that same mapping (``ArenaClient.buffer()``, a buffer-protocol object), with no system call per
object. Nothing pre-faults it: a page costs a minor fault when the worker first touches it, and
the worker's resident memory counts only the pages it used.

Lifetime rule: an object a stage hands over belongs to its task. The engine frees it as soon as
the consuming stage's result arrives, or when the task ends in any other way. So the read-only
views a consumer's ``forward`` gets are valid until that ``forward`` (and ``serialize``)
returns; keep a copy (``np.array(view)``) to hold data longer.

Errors: ``ArenaClient`` raises :class:`mosec.errors.StoreFullError` when no room appears within
the wait, and :class:`mosec.errors.StoreReferenceError` for a stale, forged or foreign
reference; they pass through here unchanged.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from mosec import _engine
from mosec.store.settings import ARENA_ENV, WAIT_ENV, configured


class ArenaMapping:
    """The Rust handle on the arena, and Python views of its one mapping."""

    def __init__(self, path: str, wait_ms: int) -> None:
        """Map the arena at ``path``.

        Args:
            path: the arena file.
            wait_ms: how long :meth:`alloc` waits for room before it raises.
        """
        self.client = _engine.ArenaClient(path)
        self.wait_ms = wait_ms
        #: The client's mapping, writable; every view made from it keeps the mapping alive.
        self.view = memoryview(self.client.buffer())
        self.readonly = self.view.toreadonly()
        #: Address of the mapping's first byte, to recognise arrays that live in it.
        self.base = np.frombuffer(self.view, dtype=np.uint8, count=1).__array_interface__["data"][0]

    def alloc(self, size: int) -> tuple[bytes, int]:
        """Lease ``size`` bytes; returns the reference and the payload's offset.

        Raises:
            StoreFullError: no room appeared within the wait (503 for the request).
        """
        return self.client.alloc(size, self.wait_ms)  # type: ignore[no-any-return]

    def put(self, data: memoryview) -> bytes:
        """Copy a contiguous buffer into a new sealed object; returns its reference."""
        reference, offset = self.alloc(data.nbytes)
        try:
            self.view[offset : offset + data.nbytes] = data.cast("B")
            self.client.seal(reference)
        except BaseException:
            self.client.free(reference)
            raise
        return reference

    def seal(self, reference: bytes) -> None:
        """Seal a leased object written in place."""
        self.client.seal(reference)

    def free(self, reference: bytes) -> None:
        """Free an object this process will not hand over."""
        self.client.free(reference)

    def readable(self, reference: bytes) -> memoryview:
        """A read-only view of a sealed object, after validating its reference.

        Raises:
            StoreReferenceError: the reference is stale, forged or from another arena.
        """
        offset, size = self.client.locate(reference)
        return self.readonly[offset : offset + size]

    def array(self, offset: int, shape: Any, dtype: Any, writable: bool) -> np.ndarray:
        """A numpy array over the arena at ``offset``."""
        buffer = self.view if writable else self.readonly
        return np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset)

    def offset_of(self, array: np.ndarray) -> int | None:
        """The arena offset of an array's first byte, or None when it lives elsewhere."""
        offset = array.__array_interface__["data"][0] - self.base
        return offset if 0 <= offset < len(self.view) else None

    def stats(self) -> tuple[int, int, int]:
        """``(capacity, used_bytes, objects)``."""
        return self.client.stats()  # type: ignore[no-any-return]


_mapping: ArenaMapping | None = None


def arena_mapping() -> ArenaMapping:
    """This process's mapping of the arena, made on first use.

    Raises:
        RuntimeError: when the server made no arena (the worker's class is not detected as an
            arena user, or the worker runs outside a server).
    """
    global _mapping
    if _mapping is None:
        stores = configured()
        path = stores.arena_path or os.environ.get(ARENA_ENV)
        if not path:
            raise RuntimeError(
                f"no shared-memory arena: {ARENA_ENV} is not set (run the worker under "
                "mosec.Server, which creates the arena for workers using ShmIPCMixin)"
            )
        wait_ms = stores.shm_wait_ms
        if wait_ms is None:
            wait_ms = int(
                os.environ.get(WAIT_ENV) or json.loads(_engine.default_config())["shm_wait_ms"]
            )
        _mapping = ArenaMapping(path, wait_ms)
    return _mapping
