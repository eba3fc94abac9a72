"""``ShmIPCMixin``: stage outputs through the server's shared-memory arena.

Only a 32-byte reference per object crosses the engine; the consumer reads the producer's bytes
in place. See :mod:`mosec.store.codec` for the encoding, :mod:`mosec.store.arena` for the store
and :mod:`mosec.store.mapping` for the arena's lifetime rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mosec.store.arena import arena_store
from mosec.store.codec import decode, encode

__all__ = ["ShmIPCMixin"]


class ShmIPCMixin:
    """Pass stage outputs through the server's shared-memory arena.

    Put it before :class:`mosec.Worker` in the bases of every stage that hands data to the next
    one (and of the stage that receives it)::

        class Preprocess(ShmIPCMixin, Worker): ...

    The server creates the arena (``--shm-size``, default 1 GiB) when any stage uses the mixin;
    nothing else is needed. Numpy arrays cross with no copy: while ``forward`` runs, NumPy
    allocates arrays of 256 KiB and more in the arena (``--shm-alloc-min``), so a returned
    array, a slice or view of one, or an input passed straight through is handed over as it
    lies (:mod:`mosec.store.numpy_arena`). Other arrays (made before ``forward``, or with a
    full arena) cross with one copy into the arena and none out of it, as do the large
    buffers of other objects (dicts and lists of arrays, buffer-protocol tensors), which travel
    as pickles. Outputs under 64 KiB travel inline. :meth:`shm_empty` makes an array in the
    arena explicitly.

    **An array returned from forward belongs to the pipeline: do not write into it
    afterwards** (the next stage may be reading it). Keeping it and reading it later is safe:
    its bytes stay yours until you drop it. Large arrays a stage keeps across requests occupy
    the arena meanwhile: build long-lived state in ``__init__`` (outside ``forward``) or copy it.

    The arrays the next stage receives are read-only views, valid until its ``forward`` and
    ``serialize`` return (the engine frees them when that stage's result arrives).
    """

    #: Tells the server that this worker needs the arena.
    _mosec_store = "arena"

    def _shm_leases(self) -> dict[int, tuple[bytes, int]]:
        # Kept on the instance without relying on __init__ (users may not call super()).
        leases: dict[int, tuple[bytes, int]] | None = self.__dict__.get("_mosec_shm_leases")
        if leases is None:
            leases = self.__dict__["_mosec_shm_leases"] = {}
        return leases

    def shm_empty(self, shape: Any, dtype: Any = np.float32) -> np.ndarray:
        """A new writable array in the arena, for ``forward`` to fill and return.

        Returned whole (not a slice of it) as a stage output, it is handed to the next stage
        with no copy. Arrays made here but not returned are freed after the batch.

        Args:
            shape: the array's shape.
            dtype: its numpy dtype.
        """
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if math.prod(shape) == 0:
            return np.empty(shape, dtype=dtype)
        store = arena_store()
        reference, array = store.new_array(shape, np.dtype(dtype))
        offset = store.mapping.offset_of(array)
        assert offset is not None  # it was just made in the arena
        self._shm_leases()[offset] = (reference, array.nbytes)
        return array

    def serialize_ipc(self, data: Any) -> bytes:
        """Put an output in the arena (or inline when small); returns the payload."""
        store = arena_store()
        sealed = None
        leases = self._shm_leases()
        if leases and type(data) is np.ndarray and data.flags.c_contiguous:
            offset = store.mapping.offset_of(data)
            lease = leases.get(offset) if offset is not None else None
            if lease is not None and lease[1] == data.nbytes:
                del leases[offset]  # type: ignore[arg-type]
                store.seal(lease[0])
                sealed = lease[0]
        return encode(data, store, sealed)

    def deserialize_ipc(self, data: bytes) -> Any:
        """Read the previous stage's output: zero-copy, read-only."""
        store = arena_store()
        store.track_reads = True  # so that an input passed straight through is lent
        self.__dict__["_mosec_read_arena"] = True
        return decode(data, store)

    def _mosec_after_batch(self) -> None:
        """Free arrays from :meth:`shm_empty` that were not handed over; forget the inputs."""
        if self.__dict__.pop("_mosec_read_arena", False):
            arena_store().end_batch()
        leases = self.__dict__.get("_mosec_shm_leases")
        if leases:
            arena_store().discard([reference for reference, _ in leases.values()])
            leases.clear()
