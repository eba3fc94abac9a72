"""The server's shared-memory arena as a :class:`~mosec.store.codec.Store`.

An object id is the arena's 32-byte reference (arena id, offset, size, generation), written in
a store reference as it is. Objects are read in place, through this process's
:class:`~mosec.store.mapping.ArenaMapping`, and live by its lifetime rule.
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
        return [self.mapping.readable(object_id) for object_id in object_ids]

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
