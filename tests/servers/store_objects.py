"""Objects the store tests send between stages, made from a request, and their digests.

Both the server (``store_pipeline.py``) and the tests build the same object from the same
request and compare digests, so a round trip is checked bit for bit without sending the
object back.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def build(request: dict[str, Any]) -> Any:
    """The object a request asks for.

    Keys: ``kind`` (``array``, ``dict``, ``bytes``, ``table``, ``batch``), ``n`` (elements),
    ``seed``; for arrays also ``dtype``, ``shape`` (overrides ``n``), ``order`` (``C``/``F``)
    and ``step`` (> 1 makes a non-contiguous view).
    """
    kind = request.get("kind", "array")
    n = int(request.get("n", 100_000))
    rng = np.random.default_rng(int(request.get("seed", 0)))
    if kind == "array":
        shape = tuple(request.get("shape", [n]))
        step = int(request.get("step", 1))
        full = tuple(size * step for size in shape)
        dtype = np.dtype(request.get("dtype", "float32"))
        count = int(np.prod(full))
        if dtype.kind == "b":
            raw = rng.integers(0, 2, size=count, dtype=np.uint8)
        else:
            raw = rng.integers(0, 256, size=count * dtype.itemsize, dtype=np.uint8)
        array = raw.view(dtype).reshape(full, order=request.get("order", "C"))
        # Indexing a 0-d array with () gives a scalar, so only slice when asked to.
        return array[tuple(slice(None, None, step) for _ in shape)] if step > 1 else array
    if kind == "dict":
        return {
            "image": rng.random((n,), dtype=np.float32),
            "parts": [rng.integers(0, 1 << 30, n, dtype=np.int64), b"tag" * 10],
            "meta": {"n": n, "name": "dict"},
        }
    if kind == "bytes":
        return rng.bytes(n)
    import pyarrow as pa

    table = pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "score": rng.random(n),
            "label": [f"item-{i % 97}" for i in range(n)],
        }
    )
    return table if kind == "table" else table.combine_chunks().to_batches()[0]


def digest(data: Any) -> str:
    """A hash of an object's type, layout-independent contents and structure."""
    hasher = hashlib.sha256()
    _feed(hasher, data)
    return hasher.hexdigest()


def _feed(hasher: Any, data: Any) -> None:
    if isinstance(data, np.ndarray):
        hasher.update(f"array {data.dtype.str} {data.shape}".encode())
        hasher.update(np.ascontiguousarray(data).tobytes())
    elif isinstance(data, dict):
        hasher.update(f"dict {sorted(data)}".encode())
        for key in sorted(data):
            _feed(hasher, data[key])
    elif isinstance(data, (list, tuple)):
        hasher.update(f"list {len(data)}".encode())
        for item in data:
            _feed(hasher, item)
    elif isinstance(data, bytes):
        hasher.update(b"bytes " + data)
    elif hasattr(data, "schema"):  # pyarrow Table or RecordBatch
        hasher.update(f"{type(data).__name__} {data.schema}".encode())
        for column in data.columns:
            hasher.update(repr(column.to_pylist()).encode())
    else:
        hasher.update(repr(data).encode())
