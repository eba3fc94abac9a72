"""One worker instance as a stage runs it: built, warmed up, and ``forward`` under its timeout.

The worker loop (:mod:`mosec.coordinator`) and the dry run (:mod:`mosec.dry_run`) both build,
warm up and call workers through this module only, so a dry run exercises exactly the code a
served worker runs.

Warm-up follows mosec: when ``multi_examples`` is given, ``forward`` runs once on each of its
entries; otherwise, when ``example`` is given, once on it. Each example is passed to ``forward``
as it is: on a batching stage (``max_batch_size > 1``) the user writes it as a batch already
(``example = [item, item]``, or ``multi_examples = [[item], [item, item]]``). A plain value that
is falsy (``None``, ``0``, ``""``, an empty list or dict) means "no example", as in mosec; any
other object (an array, a tensor) is an example, and is never asked for its truth value.
"""

from __future__ import annotations

from typing import Any

from mosec import forward_timeout
from mosec.worker import Worker

#: Values whose truth is plain Python truth; anything else given as an example is an example.
_PLAIN = (list, tuple, dict, set, str, bytes, int, float, bool)


class WarmUpError(Exception):
    """``forward`` raised on a warm-up example; the original exception is the ``__cause__``."""

    def __init__(self, index: int, total: int, example: Any, cause: BaseException) -> None:
        """Describe the failed example: its place, its type and what ``forward`` raised."""
        self.index = index
        self.example_type = type(example).__name__
        super().__init__(
            f"warm-up failed on example {index + 1} of {total} (of type {self.example_type}): "
            f"{type(cause).__name__}: {cause}"
        )


def build(cls: type[Worker], worker_id: int, stage_name: str, max_batch_size: int) -> Worker:
    """Create the worker as its stage runs it.

    The attributes are set on the class first, so the user's ``__init__`` can already read them
    (to pick a GPU by ``worker_id``, say), and on the instance afterwards, as mosec does: they
    win over whatever ``__init__`` assigned to them.

    Args:
        cls: the user's worker class.
        worker_id: the process's number within its stage, from 1.
        stage_name: the stage's runtime name, ``<WorkerClass>_<n>``.
        max_batch_size: the largest batch ``forward`` receives.

    Returns:
        The new instance; whatever its ``__init__`` raised propagates.
    """
    cls._worker_id = worker_id
    cls._stage = stage_name
    cls._max_batch_size = max_batch_size
    worker = cls()
    worker.worker_id = worker_id
    worker.stage = stage_name
    worker.max_batch_size = max_batch_size
    if getattr(cls, "_mosec_store", None) == "arena":
        # Arrays its forward makes are born in the arena (mosec/store/numpy_arena.py).
        from mosec.store import numpy_arena

        worker.__dict__["_mosec_arena_arrays"] = numpy_arena.for_worker(worker)
    return worker


def examples(worker: Worker) -> list[Any]:
    """The inputs of the worker's warm-up, each one a whole ``forward`` input."""
    if _given(worker.multi_examples):
        return list(worker.multi_examples or [])
    if _given(worker.example):
        return [worker.example]
    return []


def warm_up(worker: Worker) -> list[Any]:
    """Run ``forward`` once on each warm-up example, with no timeout (a first call may compile).

    Returns:
        ``forward``'s outputs, one per example.

    Raises:
        WarmUpError: at the first example ``forward`` raised on.
    """
    inputs = examples(worker)
    outputs = []
    for index, example in enumerate(inputs):
        try:
            outputs.append(worker.forward(example))
        except Exception as err:
            raise WarmUpError(index, len(inputs), example, err) from err
    return outputs


def install_timeout() -> None:
    """Make ``SIGALRM`` interrupt a ``forward`` past its timeout (main thread only)."""
    forward_timeout.install()


def call_forward(worker: Worker, data: Any, timeout_s: float) -> Any:
    """``forward(data)``, interrupted with ``MosecTimeoutError`` after ``timeout_s`` (0: never).

    Needs :func:`install_timeout` once in the process. Code inside a long C call that does not
    return to Python is interrupted when the call returns. A worker of an arena stage runs it
    with NumPy's arena handler installed (see :func:`build`).
    """
    arrays = worker.__dict__.get("_mosec_arena_arrays")
    if arrays is not None:
        with arrays:
            return forward_timeout.call(worker.forward, data, timeout_s)
    return forward_timeout.call(worker.forward, data, timeout_s)


def _given(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, _PLAIN):
        return bool(value)
    return True
