"""Several named arrays in one uint8 array, so that every IPC mixin can carry a stage's output.

A stage of the OCR pipeline hands the next one an image and its boxes, or text lines and their
boxes. ``NumBinIPCMixin`` carries one numpy array per item and nothing else, so each output is
one *bundle*: a 2-D uint8 array of ``ROW``-byte rows holding a small JSON header (each field's
name, dtype, shape and offset) followed by the fields' bytes, each at a 64-byte boundary. The
same bundle travels unchanged through pickle, numbin or the shared-memory arena, so the
pipeline's code is the same whatever the mixin.

It is 2-D because numbin writes each dimension in 16 bits: rows of 4 KiB allow 256 MiB.

A producer that can write its output in place (``ShmIPCMixin.shm_empty``) passes that function
as ``empty`` to :func:`allocate` and fills the returned field views: the bundle then reaches the
next stage with no copy. :func:`unpack` gives views into the bundle, never copies.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np

#: Bytes per row of a bundle.
ROW = 4096
#: Fields start at multiples of this, so the views are aligned for any dtype.
ALIGN = 64
#: The bundle's first bytes: a magic number and the header's length.
PREFIX = struct.Struct("<4sI")
MAGIC = b"OCR1"

#: ``(shape, dtype)`` of each field, by name.
Layout = Mapping[str, Tuple[Tuple[int, ...], Any]]
#: Makes a new writable array: ``numpy.empty`` or ``ShmIPCMixin.shm_empty``.
Empty = Callable[[Tuple[int, ...], Any], np.ndarray]


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def allocate(layout: Layout, empty: Empty = np.empty) -> tuple[np.ndarray, Dict[str, np.ndarray]]:
    """A new bundle with room for the fields of ``layout``, and a writable view of each field.

    Args:
        layout: each field's shape and dtype, by name.
        empty: makes the bundle's array (``shm_empty`` to write it in the arena in place).

    Returns:
        The bundle (the stage's output) and the field views to fill before returning it.
    """
    entries = []
    sizes = []
    for name, (shape, dtype) in layout.items():
        dtype = np.dtype(dtype)
        shape = tuple(int(size) for size in shape)
        entries.append([name, dtype.str, list(shape), 0])
        sizes.append(math.prod(shape) * dtype.itemsize)
    # Offsets depend on the header's length, which depends on the offsets' digits: iterate to
    # the fixed point (two or three passes; offsets only grow, so it is reached).
    header = b""
    while True:
        offset = _round_up(PREFIX.size + len(header), ALIGN)
        for entry, size in zip(entries, sizes):
            entry[3] = offset
            offset = _round_up(offset + size, ALIGN)
        encoded = json.dumps(entries, separators=(",", ":")).encode()
        if encoded == header:
            break
        header = encoded
    rows = max(1, _round_up(offset, ROW) // ROW)
    bundle = empty((rows, ROW), np.uint8)
    flat = bundle.reshape(-1)
    PREFIX.pack_into(flat, 0, MAGIC, len(header))
    flat[PREFIX.size : PREFIX.size + len(header)] = np.frombuffer(header, np.uint8)
    return bundle, _views(flat, entries)


def pack(arrays: Mapping[str, np.ndarray], empty: Empty = np.empty) -> np.ndarray:
    """A bundle holding a copy of each array (for outputs computed before their size is known).

    Args:
        arrays: the fields, by name.
        empty: makes the bundle's array, as for :func:`allocate`.
    """
    bundle, views = allocate({name: (a.shape, a.dtype) for name, a in arrays.items()}, empty)
    for name, array in arrays.items():
        views[name][...] = array
    return bundle


def unpack(bundle: np.ndarray) -> Dict[str, np.ndarray]:
    """The fields of a bundle, as views into it (read-only when the bundle is).

    Raises:
        ValueError: ``bundle`` is not a bundle.
    """
    flat = np.ascontiguousarray(bundle).reshape(-1)
    if flat.dtype != np.uint8 or flat.size < PREFIX.size:
        raise ValueError(f"not a bundle: {bundle.dtype} array of shape {bundle.shape}")
    magic, length = PREFIX.unpack_from(flat, 0)
    if magic != MAGIC:
        raise ValueError("not a bundle: bad magic number")
    entries = json.loads(flat[PREFIX.size : PREFIX.size + length].tobytes())
    return _views(flat, entries)


def _views(flat: np.ndarray, entries: list) -> Dict[str, np.ndarray]:
    views = {}
    for name, dtype_str, shape, offset in entries:
        dtype = np.dtype(dtype_str)
        size = math.prod(shape) * dtype.itemsize
        views[name] = flat[offset : offset + size].view(dtype).reshape(shape)
    return views
