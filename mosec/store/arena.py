"""The server's shared-memory arena as a :class:`~mosec.store.codec.Store`.

An object id is the arena's 32-byte reference (arena id, offset, size, generation), written in
a store reference as it is. Objects are read in place, through this process's
:class:`~mosec.store.mapping.ArenaMapping`, and live by its lifetime rule.

Arrays that already live in the arena are handed over without a copy (:meth:`ArenaStore.lend`):
those NumPy made there (:mod:`mosec.store.numpy_arena`), views of them, and inputs a stage
passes straight through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mosec import _engine
from mosec.errors import StoreReferenceError
from mosec.store.mapping import ArenaMapping, arena_mapping

#: Store kind byte of the arena in a reference, and the bytes of one of its object ids (the
#: arena's own reference), from their definitions in the engine.
KIND = _engine.STORE_ARENA
ID_LEN = _engine.ARENA_REFERENCE_LEN


class ArenaStore:
    """The arena's objects, as the codec stores and reads them."""

    kind = KIND

    def __init__(self, mapping: ArenaMapping) -> None:
        """Use this process's mapping of the arena."""
        self.mapping = mapping
        #: ``(offset, size, reference)`` of the objects read since :meth:`end_batch`, while
        #: ``track_reads`` is on (an arena stage's inputs, which it may pass straight through).
        self.reads: list[tuple[int, int, bytes]] = []
        self.track_reads = False

    def lend(self, array: np.ndarray) -> tuple[bytes, int] | None:
        """Hand over the arena block an array's bytes lie in, without copying them.

        For an array NumPy made in the arena (or a view of one) and for an input read in this
        batch (or a view of it): the block gets one more task hold. Returns the block's
        reference and the byte offset of the array's first element in it; None when the array
        lives elsewhere (then it is copied, as before).
        """
        mapping = self.mapping
        offset = array.__array_interface__["data"][0] - mapping.base
        if not 0 <= offset < len(mapping.view):
            return None
        owner = array
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        if owner.base is None:  # it owns its data: NumPy's allocation, made by our handler
            start = owner.__array_interface__["data"][0] - mapping.base
            try:
                return mapping.client.share_held(start), offset - start
            except StoreReferenceError:
                return None  # in the arena but not held by an array (an shm_empty lease)
        for start, size, reference in self.reads:
            if start <= offset < start + size:
                mapping.client.share(reference)
                return reference, offset - start
        return None

    def put_many(self, buffers: Sequence[memoryview]) -> list[bytes]:
        """Copy each buffer into a new object (all or none)."""
        ids: list[bytes] = []
        try:
            for buffer in buffers:
                ids.append(self.mapping.put(buffer))
        except BaseException:
            self.discard(ids)
            raise
        return ids

    def new_array(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[bytes, np.ndarray]:
        """A leased object viewed as a writable C-order array."""
        nbytes = max(1, math.prod(shape) * np.dtype(dtype).itemsize)
        reference, offset = self.mapping.alloc(nbytes)
        return reference, self.mapping.array(offset, shape, dtype, writable=True)

    def seal(self, object_id: bytes) -> None:
        """Seal an object written in place."""
        self.mapping.seal(object_id)

    def discard(self, object_ids: Sequence[bytes]) -> None:
        """Free objects that will not be handed over."""
        for object_id in object_ids:
            self.mapping.free(object_id)

    def fetch(self, object_ids: Sequence[bytes]) -> list[memoryview]:
        """Read-only views of sealed objects (validated)."""
        if not self.track_reads:
            return [self.mapping.readable(object_id) for object_id in object_ids]
        views = []
        for object_id in object_ids:
            offset, size = self.mapping.client.locate(object_id)
            self.reads.append((offset, size, object_id))
            views.append(self.mapping.readonly[offset : offset + size])
        return views

    def end_batch(self) -> None:
        """Forget this batch's inputs (the engine frees them once the batch is answered)."""
        self.reads.clear()

    def pack_ids(self, object_ids: Sequence[bytes]) -> bytes:
        """References are already in wire form."""
        return b"".join(object_ids)

    def unpack_ids(self, payload: memoryview, count: int) -> tuple[list[bytes], int]:
        """``count`` 32-byte references.

        Raises:
            StoreReferenceError: fewer than ``count`` references' bytes are left.
        """
        used = count * ID_LEN
        if len(payload) < used:
            raise StoreReferenceError("arena reference cut short")
        return [bytes(payload[i : i + ID_LEN]) for i in range(0, used, ID_LEN)], used


_store: ArenaStore | None = None


def arena_store() -> ArenaStore:
    """This process's arena store, over :func:`~mosec.store.mapping.arena_mapping`."""
    global _store
    if _store is None:
        _store = ArenaStore(arena_mapping())
    return _store
