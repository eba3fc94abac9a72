"""Arrow IPC objects in the server's arena, as store references the engine already understands.

The reference is :mod:`mosec.store.codec`'s (store 1, the arena, one object) with three
more meta kinds, so the engine's arena bookkeeping applies unchanged::

    meta := b"t"    the object is an Arrow IPC tensor message      (numpy arrays)
          | b"s"    the object is an Arrow IPC stream               (pyarrow.Table)
          | b"b"    the object is an Arrow IPC stream of one batch  (pyarrow.RecordBatch)

Writing measures the message with ``pa.MockOutputStream``, leases exactly that many bytes and
lets Arrow write straight into the arena through a ``FixedSizeBufferWriter``: the one copy is
Arrow's own. Reading wraps the read-only arena view in a ``pa.py_buffer``, so tensors, arrays
and columns point into the arena (zero-copy, read-only) and live by the arena's lifetime rule
(:mod:`mosec.store.mapping`): valid until the consuming stage's ``forward`` and ``serialize``
return.

Arrays Arrow cannot hold as tensors bit for bit (booleans, complex numbers, dates, non-native
byte order, structured or object dtypes) are left to the store codec, like every other object.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pyarrow as pa

from mosec.store.arena import ArenaStore
from mosec.store.codec import HEAD, INLINE_BELOW, parse_reference, reference

TENSOR = ord("t")
TABLE = ord("s")
BATCH = ord("b")

#: A sentinel for "not an Arrow reference": decode returns it so callers fall back.
NOT_ARROW = object()


def _tensor_writable(data: Any) -> bool:
    """Whether a numpy array is worth an arena object and survives a tensor round trip."""
    return (
        type(data) is np.ndarray
        and data.dtype.kind in "iuf"
        and data.dtype.isnative
        and data.nbytes >= INLINE_BELOW
    )


def _writer(data: Any) -> tuple[int, Callable[[Any], None]] | None:
    """The meta kind and the function that writes ``data`` to a sink, or None."""
    if _tensor_writable(data):
        if not (data.flags.c_contiguous or data.flags.f_contiguous):
            # Arrow refuses negative strides; numpy's copy is also faster than Arrow's strided
            # writer, so any other layout is made C-contiguous first.
            data = np.ascontiguousarray(data)
        tensor = pa.Tensor.from_numpy(data)
        return TENSOR, lambda sink: pa.ipc.write_tensor(tensor, sink)
    if isinstance(data, pa.Table):

        def write_table(sink: Any) -> None:
            with pa.ipc.new_stream(sink, data.schema) as writer:
                writer.write_table(data)

        return TABLE, write_table
    if isinstance(data, pa.RecordBatch):

        def write_batch(sink: Any) -> None:
            with pa.ipc.new_stream(sink, data.schema) as writer:
                writer.write_batch(data)

        return BATCH, write_batch
    return None


def encode(data: Any, store: ArenaStore) -> bytes | None:
    """Write an array, table or record batch into a new arena object.

    Returns:
        The reference payload, or None when ``data`` is none of those (or an array the
        tensor format does not fit): the caller encodes it with the store codec.

    Raises:
        StoreFullError: the arena had no room within its wait.
    """
    found = _writer(data)
    if found is None:
        return None
    kind, write = found
    mock = pa.MockOutputStream()
    write(mock)
    size = mock.size()
    object_id, offset = store.mapping.alloc(size)
    try:
        target = pa.py_buffer(store.mapping.view[offset : offset + size])
        write(pa.FixedSizeBufferWriter(target))
        store.seal(object_id)
    except BaseException:
        store.discard([object_id])
        raise
    return reference(store, [object_id], bytes([kind]))


def decode(payload: bytes, store: ArenaStore) -> Any:
    """Read an Arrow reference zero-copy; :data:`NOT_ARROW` for any other payload.

    Raises:
        StoreReferenceError: an arena reference whose object ids do not unpack.
    """
    if len(payload) < HEAD.size or payload[0] != store.kind:
        return NOT_ARROW
    ids, meta = parse_reference(payload, store)
    if len(ids) != 1 or len(meta) != 1 or meta[0] not in (TENSOR, TABLE, BATCH):
        return NOT_ARROW
    (readonly,) = store.fetch(ids)
    buffer = pa.py_buffer(readonly)
    if meta[0] == TENSOR:
        array = pa.ipc.read_tensor(pa.BufferReader(buffer)).to_numpy()
        # Arrow marks views of immutable buffers read-only, except empty ones: be uniform.
        array.flags.writeable = False
        return array
    reader = pa.ipc.open_stream(buffer)
    return reader.read_all() if meta[0] == TABLE else reader.read_next_batch()
