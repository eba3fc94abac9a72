"""``ArrowShmIPCMixin``: stage outputs as Apache Arrow IPC messages in the server's arena.

The arena, its lifetime rule and ``shm_empty`` are :class:`~mosec.mixin.ShmIPCMixin`'s; this
mixin changes only the format of arrays, tables and record batches (see
:mod:`mosec.store.arrow`), so any Arrow reader can make sense of the bytes.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from mosec.mixin.shm_worker import ShmIPCMixin
from mosec.store.arena import arena_store


def _codec() -> ModuleType:
    """The Arrow codec, imported on first use so that mosec works without pyarrow."""
    try:
        from mosec.store import arrow
    except ImportError as err:
        raise ImportError("ArrowShmIPCMixin needs pyarrow: pip install 'pyarrow>=14'") from err
    return arrow


class ArrowShmIPCMixin(ShmIPCMixin):
    """Pass stage outputs through the arena in Apache Arrow's IPC format.

    Put it before :class:`mosec.Worker` in the bases of the stages that hand data on (and of
    those that receive it)::

        class Embed(ArrowShmIPCMixin, Worker): ...

    Numpy arrays of integers and floats travel as Arrow tensors and come back as read-only
    numpy arrays; ``pyarrow.Table`` and ``pyarrow.RecordBatch`` travel as IPC streams and come
    back as themselves. Both are read in place, with no copy. An array made by
    :meth:`shm_empty` and returned whole keeps its zero-copy hand-over (in the arena's plain
    array format). Tables and batches of any size go through the arena; everything else
    (arrays under 64 KiB, dicts, lists, other dtypes) is encoded as
    :class:`~mosec.mixin.ShmIPCMixin` does.

    Like all arena data, what the next stage receives is valid until its ``forward`` and
    ``serialize`` return.
    """

    def serialize_ipc(self, data: Any) -> bytes:
        """Write an output into the arena as Arrow IPC (or fall back); returns the payload."""
        store = arena_store()
        in_place = (
            type(data) is np.ndarray
            and bool(self._shm_leases())
            and store.mapping.offset_of(data) is not None
        )
        if not in_place:
            payload = _codec().encode(data, store)
            if payload is not None:
                return payload  # type: ignore[no-any-return]
        return super().serialize_ipc(data)

    def deserialize_ipc(self, data: bytes) -> Any:
        """Read the previous stage's output in place: read-only arrays, tables and batches."""
        codec = _codec()
        value = codec.decode(data, arena_store())
        return super().deserialize_ipc(data) if value is codec.NOT_ARROW else value
