"""The IPC mixins the conformance suite runs, and the cases it sends through each of them.

Used on both sides of the test: ``tests/test_ipc_conformance.py`` parametrizes over
:data:`TARGETS` x :data:`CASES`, and ``tests/servers/ipc_pipeline.py`` (the two-stage server)
imports this module to find its mixin and to build the cases. The server learns its target
from the ``IPC_TARGET`` environment variable (a :attr:`Target.name`).

Adding a mixin (Redis, Arrow, ...) is one entry in :data:`TARGETS`::

    Target(
        name="redis",
        mixin="mosec.mixin:RedisShmIPCMixin",   # "module:attribute"; None = pickle default
        fixtures=("redis_env",),                # pytest fixtures returning server env vars
        setup=_use_redis_url,                   # called with the mixin class in the server
        supports=lambda case: True,             # or a narrower predicate over Case
    )

- ``fixtures``: names of pytest fixtures (module- or session-scoped, defined in a conftest)
  that each return a ``dict[str, str]`` of environment variables for the server, e.g.
  ``{"REDIS_URL": "redis://127.0.0.1:6390"}`` from a fixture that started ``redis-server``;
- ``setup``: a function of this module called with the mixin class at import of the server
  script, in the server process and in every worker process (so class attributes such as a
  Redis URL are set everywhere); it reads what it needs from ``os.environ``;
- ``server_args``: extra server flags (``--shm-size``);
- ``supports``: which cases the mixin carries *by design* (numbin carries plain numpy arrays
  only); only those are parametrized, nothing is skipped;
- ``big``: whether the target also runs the cases marked :attr:`Case.big` (256 MiB): kept to
  a couple of targets so that the suite stays fast on a 2-core CI machine;
- ``counts_reference_bytes``: the engine's ``ipc_bytes_total{carried="reference"}`` grows by
  the bytes the mixin moved through its store (true for the arena, whose references carry a
  size); the suite then checks that large arrays really went by reference.

New cases (e.g. Arrow tables) are :class:`Case` entries added with :func:`add_case`; a case's
``kind`` lets targets opt in or out (``"table"`` cases only for Arrow, say), and
:func:`describe` must know how to digest its objects.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The store codec's inline threshold: buffers at least this large go to the store.
INLINE_BELOW = 64 * 1024
#: Environment variable naming the target the server runs.
TARGET_ENV = "IPC_TARGET"


@dataclass(frozen=True)
class Case:
    """One object to carry from stage 1 to stage 2.

    Attributes:
        name: the pytest id and the request's ``case`` field.
        kind: ``array`` (one numpy array), ``bytes``, ``nested`` (dicts/lists/tuples holding
            arrays and bytes); new kinds for new stores (``table``).
        build: makes the object, deterministically (stage 1 and the test both call it).
        nbytes: payload bytes, for the by-reference check and for choosing fast cases.
        big: one of the very large cases, run only by targets with ``big``.
        max_dim: the largest dimension of any array in it (numbin stores dims as u16).
        native: every array is in native byte order (numbin drops the byte order).
        reference_bytes: bytes the arena codec must move by reference (arrays of 64 KiB and
            more that it stores out of line).
    """

    name: str
    kind: str
    build: Callable[[], Any]
    nbytes: int = 0
    big: bool = False
    max_dim: int = 0
    native: bool = True
    reference_bytes: int = 0


@dataclass(frozen=True)
class Target:
    """One IPC mixin under test (see the module docstring for each field)."""

    name: str
    mixin: str | None
    supports: Callable[[Case], bool] = lambda case: True
    server_args: tuple[str, ...] = ()
    fixtures: tuple[str, ...] = ()
    setup: Callable[[type], None] | None = None
    big: bool = False
    counts_reference_bytes: bool = False

    def carries(self, case: Case) -> bool:
        """Whether the suite sends ``case`` through this target."""
        return (self.big or not case.big) and self.supports(case)


def _numbin_carries(case: Case) -> bool:
    """numbin: one plain numpy array, native byte order, every dimension below 65536."""
    return case.kind == "array" and case.native and case.max_dim <= 0xFFFF


#: Environment variable with the Redis URL of the ``redis`` target (from ``redis_env``).
REDIS_URL_ENV = "IPC_REDIS_URL"


def _use_redis_url(mixin: type) -> None:
    """Point the Redis mixin at the test's redis-server, in the server and its workers."""
    mixin.set_redis_url(os.environ[REDIS_URL_ENV])  # type: ignore[attr-defined]


TARGETS: list[Target] = [
    Target(name="pickle", mixin=None, big=True),
    Target(name="numbin", mixin="mosec.mixin:NumBinIPCMixin", supports=_numbin_carries),
    Target(
        name="arena",
        mixin="mosec.mixin:ShmIPCMixin",
        server_args=("--shm-size", "320M"),
        big=True,
        counts_reference_bytes=True,
    ),
    # Redis references carry keys, not sizes: the engine cannot count their bytes.
    Target(
        name="redis",
        mixin="mosec.mixin:RedisShmIPCMixin",
        fixtures=("redis_env",),
        setup=_use_redis_url,
    ),
    # Arrow tensors are at least as large as the arrays they hold, so the arena count holds.
    Target(
        name="arrow",
        mixin="mosec.mixin:ArrowShmIPCMixin",
        server_args=("--shm-size", "64M"),
        counts_reference_bytes=True,
    ),
]


def target(name: str) -> Target:
    """The target called ``name``."""
    for entry in TARGETS:
        if entry.name == name:
            return entry
    raise KeyError(f"no IPC target {name!r}; known: {[entry.name for entry in TARGETS]}")


def load_mixin(entry: Target) -> type | None:
    """Import the target's mixin class and run its setup; None for the pickle default."""
    if entry.mixin is None:
        return None
    module, _, attribute = entry.mixin.partition(":")
    mixin: type = getattr(importlib.import_module(module), attribute)
    if entry.setup is not None:
        entry.setup(mixin)
    return mixin


def env_target() -> Target:
    """The target named by ``IPC_TARGET`` (the server's side)."""
    return target(os.environ[TARGET_ENV])


# ---- cases ---------------------------------------------------------------------------------

CASES: dict[str, Case] = {}

#: Every numeric dtype numpy has on every platform.
DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def random_array(name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Random bits of ``dtype`` (NaN payloads included), seeded by ``name``; C order, writable.

    Bools are 0 or 1: any other byte is not a valid numpy bool.
    """
    rng = _rng(name)
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape, dtype=np.uint8).view(np.bool_)
    raw = rng.bytes(count * dt.itemsize)
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


def _arrays(obj: Any) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [a for value in obj.values() for a in _arrays(value)]
    if isinstance(obj, (list, tuple)):
        return [a for value in obj for a in _arrays(value)]
    return []


def _out_of_line(obj: Any, top: bool = True) -> int:
    """Bytes the arena codec puts in the store for ``obj``.

    A top-level plain array (or bytes object) of 64 KiB or more is copied into one object;
    inside a container, pickle protocol 5 sends a contiguous (C or Fortran) array's buffer out
    of band when it is that large, and pickles a non-contiguous one in band.
    """
    if isinstance(obj, np.ndarray):
        if top:
            return obj.nbytes if obj.nbytes >= INLINE_BELOW else 0
        contiguous = obj.flags.c_contiguous or obj.flags.f_contiguous
        return obj.nbytes if contiguous and obj.nbytes >= INLINE_BELOW else 0
    if isinstance(obj, bytes):
        # A top-level bytes object of that size is one raw object; inside a pickle, in band.
        return len(obj) if top and len(obj) >= INLINE_BELOW else 0
    if isinstance(obj, dict):
        return sum(_out_of_line(value, False) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_out_of_line(value, False) for value in obj)
    return 0


def add_case(name: str, kind: str, build: Callable[[], Any], big: bool = False) -> None:
    """Register a case; its size facts are measured once from an object it builds.

    Args:
        name: unique id.
        kind: see :attr:`Case.kind`.
        build: deterministic builder.
        big: run only by targets with ``big`` (the builder is then not called here).
    """
    if name in CASES:
        raise ValueError(f"case {name!r} registered twice")
    if big:
        # Too large to build at import: the builder documents its own facts.
        CASES[name] = Case(name, kind, build, big=True)
        return
    obj = build()
    arrays = _arrays(obj)
    CASES[name] = Case(
        name=name,
        kind=kind,
        build=build,
        nbytes=sum(a.nbytes for a in arrays) + (len(obj) if isinstance(obj, bytes) else 0),
        max_dim=max((max(a.shape, default=0) for a in arrays), default=0),
        native=all(a.dtype.byteorder in "=|" for a in arrays),
        reference_bytes=_out_of_line(obj),
    )


def _array_case(name: str, make: Callable[[], np.ndarray]) -> None:
    add_case(name, "array", make)


def _register_cases() -> None:
    for dtype in DTYPES:
        # Small ones travel inline in the store mixins; large ones (>= 128 KiB) by reference.
        _array_case(f"{dtype}-small", lambda d=dtype: random_array(f"{d}-small", (3, 5), d))
        _array_case(f"{dtype}-large", lambda d=dtype: random_array(f"{d}-large", (256, 512), d))
    _array_case("zero-d-float64", lambda: random_array("zero-d-float64", (), "float64"))
    _array_case("zero-d-complex128", lambda: random_array("zero-d-c", (), "complex128"))
    _array_case("zero-d-bool", lambda: np.array(True))
    _array_case("empty-float32", lambda: np.empty((0,), np.float32))
    _array_case("empty-3d-int16", lambda: np.empty((4, 0, 3), np.int16))
    _array_case(
        "strided-small-int32",
        lambda: random_array("strided-small", (8, 9), "int32")[::2, 1::3],
    )
    _array_case(
        "strided-large-float32",
        lambda: random_array("strided-large", (512, 512), "float32")[::2, 1::3],
    )
    _array_case(
        "reversed-large-uint16",
        lambda: random_array("reversed", (300, 400), "uint16")[::-1, ::-1],
    )
    _array_case(
        "fortran-small-float64",
        lambda: np.asfortranarray(random_array("fortran-small", (3, 4), "float64")),
    )
    _array_case(
        "fortran-large-float64",
        lambda: np.asfortranarray(random_array("fortran-large", (300, 200), "float64")),
    )
    _array_case(
        "big-endian-large-int32",
        lambda: random_array("big-endian", (128, 256), "int32").astype(">i4"),
    )
    # Sizes around the inline threshold and up; 2-D where numbin's u16 dims need it.
    _array_case("size-1B", lambda: random_array("size-1B", (1,), "uint8"))
    _array_case("size-1KiB", lambda: random_array("size-1KiB", (1024,), "uint8"))
    _array_case("size-64KiB-minus-1", lambda: random_array("size-64K-1", (65535,), "uint8"))
    _array_case("size-64KiB", lambda: random_array("size-64K", (64, 1024), "uint8"))
    _array_case("size-1MiB", lambda: random_array("size-1M", (1024, 1024), "uint8"))
    _array_case("size-12MiB-float32", lambda: random_array("size-12M", (3, 1024, 1024), "float32"))
    _array_case("long-1d-float32", lambda: random_array("long-1d", (100_000,), "float32"))
    add_case(
        "size-256MiB-float32",
        "array",
        lambda: random_array("size-256M", (64, 1024, 1024), "float32"),
        big=True,
    )
    add_case("bytes-empty", "bytes", lambda: b"")
    add_case("bytes-small", "bytes", lambda: _rng("bytes-small").bytes(100))
    add_case("bytes-1MiB", "bytes", lambda: _rng("bytes-1MiB").bytes(1 << 20))
    add_case(
        "nested-dict",
        "nested",
        lambda: {
            "image": random_array("nested-image", (3, 128, 128), "float32"),
            "mask": random_array("nested-mask", (128, 128), "bool"),
            "meta": {
                "ids": random_array("nested-ids", (7,), "int64"),
                "raw": b"\x00\x01\xff" * 5,
                "name": "case",
                "scale": 0.5,
                "shape": (3, 128, 128),
                "empty": np.empty((0, 2), np.uint8),
                "none": None,
            },
            "fortran": np.asfortranarray(random_array("nested-f", (256, 64), "float64")),
            "strided": random_array("nested-strided", (256, 256), "int16")[:, ::2],
        },
    )
    add_case(
        "nested-list",
        "nested",
        lambda: [
            random_array("list-0", (256, 256), "uint8"),
            [random_array("list-1", (2,), "complex64"), random_array("list-2", (64, 512), "f2")],
            (random_array("list-3", (), "int8"), b"tail"),
            {"deep": [random_array("list-4", (100, 300), "float64")]},
        ],
    )


def _arrow_table(name: str, rows: int, chunks: int) -> Any:
    """A table of ``rows`` rows in ``chunks`` record batches: ints, floats, strings, nulls."""
    import pyarrow as pa

    rng = _rng(name)
    ids = np.arange(rows, dtype=np.int64)
    columns = {
        "id": pa.array(ids),
        "score": pa.array(rng.random(rows)),
        "label": pa.array([f"item-{i % 97}" if i % 11 else None for i in range(rows)]),
    }
    table = pa.table(columns)
    bounds = np.linspace(0, rows, chunks + 1, dtype=np.int64)
    return pa.concat_tables(
        [table.slice(start, stop - start) for start, stop in zip(bounds, bounds[1:])]
    )


def _register_arrow_cases() -> None:
    """Arrow tables and record batches (only where pyarrow is installed)."""
    if importlib.util.find_spec("pyarrow") is None:
        return
    add_case("arrow-table", "table", lambda: _arrow_table("arrow-table", 100_000, 3))
    add_case("arrow-table-small", "table", lambda: _arrow_table("arrow-small", 3, 1))
    add_case(
        "arrow-record-batch",
        "table",
        lambda: _arrow_table("arrow-batch", 50_000, 1).to_batches()[0],
    )


_register_cases()
_register_arrow_cases()


# ---- digests -------------------------------------------------------------------------------


def _sha256(buffer: Any) -> str:
    return hashlib.sha256(buffer).hexdigest()


def describe(obj: Any) -> Any:
    """A JSON-able digest of ``obj`` that two objects share only when they are bit-identical.

    Arrays: exact type, dtype (byte order included), shape and the SHA-256 of their bytes in C
    order; bytes: length and SHA-256; Arrow tables and record batches: their schema, row count and
    each column's values; containers: their type and their items' digests in order; other
    scalars: type and ``repr``. Layout (strides, Fortran order) is not part of it: a
    mixin may hand over a C-order copy.
    """
    if isinstance(obj, np.ndarray):
        contiguous = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
        data = contiguous.reshape(-1).view(np.uint8)
        return {
            "type": type(obj).__name__,
            "dtype": obj.dtype.str,
            "shape": list(obj.shape),
            "sha256": _sha256(data),
        }
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"type": type(obj).__name__, "len": len(obj), "sha256": _sha256(obj)}
    if hasattr(obj, "schema") and hasattr(obj, "columns"):  # a pyarrow Table or RecordBatch
        return {
            "type": type(obj).__name__,
            "schema": str(obj.schema),
            "rows": obj.num_rows,
            "columns": [_sha256(repr(column.to_pylist()).encode()) for column in obj.columns],
        }
    if isinstance(obj, dict):
        return {"type": "dict", "items": [[repr(k), describe(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"type": type(obj).__name__, "items": [describe(v) for v in obj]}
    return {"type": type(obj).__name__, "repr": repr(obj)}
