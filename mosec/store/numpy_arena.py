"""Arrays that ``forward`` makes are born in the arena, so returning one costs no copy.

In a worker whose stage uses the arena (:class:`mosec.mixin.ShmIPCMixin`), NumPy's memory
handler is switched, around each ``forward`` call only, to one of the extension's
(``ArenaClient.numpy_handler``, written in Rust in ``shm/src/mapping/numpy_handler.rs``): array
data of at least ``--shm-alloc-min`` bytes (default 256 KiB) is an arena block held by the
array, everything smaller comes from NumPy's own allocator. When ``serialize_ipc`` meets such
an array (or a view or slice of one) it hands the block over by reference
(:meth:`mosec.store.arena.ArenaStore.lend`) instead of copying it.

The block then has two holders, the producer's array and the task, and is reused only when both
let go (``shm/src/arena/holds.rs``). So a producer may keep its returned array and read it
later; the one rule is: **an array returned from forward belongs to the pipeline; do not write
into it afterwards** (the next stage may be reading it). Large arrays a stage keeps across
requests occupy the arena meanwhile; state built in ``__init__`` (outside ``forward``) does not.

Never worse than before: a full arena makes the handler fall back to NumPy's allocator, and the
hand-over to a copy. ``--shm-alloc-min 0`` (or ``MOSEC_SHM_ALLOC_MIN=0``) turns the handler
off. Its cost, measured by ``python -m benchmarks.alloc_threshold``: about 1 µs per ``forward``
(installing the handler) and per arena allocation, and memory-bound code writing arena memory
may run slower than on the heap (tmpfs pages are not transparent huge pages): a temporary of
1 to 16 MiB costs 1.05-1.1x. A returned array saves a copy: the hop takes 0.79x the time at
256 KiB, 0.64x at 1 MiB, 0.52x at 16 MiB (break-even near 64 KiB). Below the threshold arrays
stay on the heap, where most temporaries are. NumPy keeps the handler in a context variable,
so it applies to the thread running ``forward`` and nothing else.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from mosec import _engine
from mosec.store.mapping import ArenaMapping, arena_mapping
from mosec.store.settings import ARENA_ENV, configured

#: NumPy's memory handler API appeared in 1.22.
_FIRST_NUMPY = (1, 22)


def _array_api() -> Any:
    """NumPy's C API table (``_ARRAY_API``), a capsule, for NumPy 2 and 1.x alike."""
    try:
        from numpy._core import _multiarray_umath  # type: ignore[attr-defined]  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import _multiarray_umath  # type: ignore[no-redef]
    return _multiarray_umath._ARRAY_API


def numpy_supported() -> bool:
    """Whether this NumPy has memory handlers (1.22 and later)."""
    major, minor = (int(part) for part in np.__version__.split(".")[:2])
    return (major, minor) >= _FIRST_NUMPY


class ArenaArrays:
    """The handler of one worker process; ``with arrays:`` installs it for the block.

    A plain class rather than a generator context manager: it wraps every ``forward`` call,
    and costs a third as much this way (about 1 µs). Not reentrant (``forward`` is not).
    """

    def __init__(self, mapping: ArenaMapping, min_size: int) -> None:
        """Make the handler over ``mapping`` for arrays of at least ``min_size`` bytes."""
        self._api = _array_api()
        self._handler = mapping.client.numpy_handler(self._api, min_size)
        self._previous: Any = None
        self.min_size = min_size

    def __enter__(self) -> None:
        """Allocate arrays of at least ``min_size`` bytes in the arena from now on."""
        self._previous = _engine.set_numpy_handler(self._api, self._handler)

    def __exit__(self, *exc_info: object) -> None:
        """Set back the handler that was current before."""
        previous, self._previous = self._previous, None
        _engine.set_numpy_handler(self._api, previous)


def for_worker(worker: Any) -> ArenaArrays | None:
    """The handler for a built worker, or None.

    None unless its stage uses the arena, the server made one, this NumPy has handlers and
    ``--shm-alloc-min`` is not 0.
    """
    if getattr(type(worker), "_mosec_store", None) != "arena" or not numpy_supported():
        return None
    stores = configured()
    if not (stores.arena_path or os.environ.get(ARENA_ENV)):
        return None  # no server around it (a dry run): nothing to hand over to
    min_size = stores.shm_alloc_min
    if min_size is None:
        min_size = int(json.loads(_engine.default_config())["shm_alloc_min"])
    if min_size <= 0:
        return None
    return ArenaArrays(arena_mapping(), min_size)
