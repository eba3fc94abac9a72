"""``Worker``, the user's base class (mpservice's API), ``make_worker`` and ``PassThrough``.

A ``Worker`` here is what mpservice calls one: ``call(x)`` (or ``call(batch)``) in a process or
thread of a servlet. The server never runs it directly: each servlet's stage runs an adapter
(:mod:`mosec.mpserver.stages`) that builds the worker in the stage's process and calls
:meth:`Worker.stream` on the items the engine hands it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copyreg
import itertools
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, cast


class Worker:
    """Operations on one item (or one batch) in plain synchronous code.

    Subclass it, implement :meth:`call`, and forward unknown keyword arguments to
    ``super().__init__``; every keyword argument given to the servlet reaches ``__init__``.
    """

    def __init__(
        self,
        *,
        worker_index: int,
        batch_size: int | None = None,
        batch_wait_time: float | None = None,
        cpu_affinity: int | Sequence[int] | None = None,
    ) -> None:
        """Set up batching and pinning.

        Args:
            worker_index: this worker's 0-based number in its servlet.
            batch_size: ``None`` or 0: ``call`` gets one item; ``n >= 1``: ``call`` gets a list
                of 1..n items and returns as many results, in order.
            batch_wait_time: seconds a batch waits for more items after its first one (only
                for ``batch_size > 1``, default 0.01; 0 takes what is queued right now).
            cpu_affinity: the CPUs to pin this process to (a CPU or a list); None: unpinned.

        Raises:
            ValueError: a ``batch_wait_time`` other than 0 without batching.
        """
        if not batch_size:
            batch_size = 0
        if batch_size <= 1:
            if batch_wait_time not in (None, 0):
                raise ValueError(
                    f"batch_wait_time must be None or 0 when batch_size is {batch_size}"
                )
            batch_wait_time = 0
        elif batch_wait_time is None:
            batch_wait_time = 0.01
        self.worker_index = worker_index
        self.batch_size = batch_size
        self.batch_wait_time = batch_wait_time
        self.batch_size_log_cadence = 1_000_000
        self.name = f"{multiprocessing.current_process().name}-{threading.current_thread().name}"
        pins: list[int] | None = None
        if cpu_affinity is not None:
            pins = [cpu_affinity] if isinstance(cpu_affinity, int) else sorted(set(cpu_affinity))
            os.sched_setaffinity(0, pins)
        self.cpu_affinity = pins
        #: Threads :meth:`stream` runs ``call`` on; a subclass may set it after ``__init__``.
        self.num_stream_threads: int = 0

    def call(self, x: Any) -> Any:
        """Process one item (``batch_size`` 0) or a list of items (``batch_size >= 1``).

        Raises:
            NotImplementedError: the subclass did not implement it.
        """
        raise NotImplementedError

    def stream(self, xx: Iterable[Any]) -> Iterator[Any]:
        """Yield ``call(x)`` for each input, in order; an exception is yielded, not raised.

        With ``num_stream_threads > 0`` the calls run on that many threads.
        """
        for _, value in outcomes(self.call, xx, self.num_stream_threads):
            yield value

    def cleanup(self, exc: BaseException | None = None) -> None:
        """Release resources when the worker stops (``exc``: what ended it, if anything)."""

    @classmethod
    def run(cls, *, q_in: Any, q_out: Any, **init_kwargs: Any) -> None:
        """Serve ``(uid, x)`` items from ``q_in`` to ``(uid, y)`` on ``q_out`` until ``None``.

        mpservice's servlet target, kept for code that drives a worker with its own queues;
        the servlets of this package do not use it. Its name (or ``None`` when ``__init__``
        raised) goes to ``q_out`` first. Batches hold what is queued at the moment.
        """
        try:
            worker = cls(**init_kwargs)
        except Exception:
            q_out.put(None)
            raise
        q_out.put(worker.name)
        try:
            _serve_queue(worker, q_in, q_out)
        except BaseException as err:
            worker.cleanup(err)
            raise
        worker.cleanup()


def _serve_queue(worker: Worker, q_in: Any, q_out: Any) -> None:
    preprocess = getattr(worker, "preprocess", None)
    while True:
        item = q_in.get()
        if item is None:
            q_in.put(None)  # the next worker on this queue stops too
            q_out.put(None)
            return
        uid, x = item
        if preprocess is not None:
            try:
                x = preprocess(x)
            except Exception as err:
                q_out.put((uid, err))
                continue
        if worker.batch_size:
            (y,) = worker.stream([[x]])
            q_out.put((uid, y if isinstance(y, BaseException) else y[0]))
        else:
            (y,) = worker.stream([x])
            q_out.put((uid, y))


def outcomes(
    call: Callable[[Any], Any], xx: Iterable[Any], threads: int = 0
) -> Iterator[tuple[bool, Any]]:
    """``(True, call(x))`` or ``(False, the exception)`` for each input, in input order.

    With ``threads > 0`` the calls run on a pool of that many threads, with a bounded
    look-ahead, so results come out while later items still run.
    """
    items: Iterator[Any] = iter(xx)
    if threads >= 1:
        head = list(itertools.islice(items, 2))
        if len(head) < 2:
            threads = 0  # no pool for one item: nothing would run beside it
        items = itertools.chain(head, items)
    if threads < 1:
        for x in items:
            try:
                yield True, call(x)
            except Exception as err:
                yield False, err
        return

    def guarded(x: Any) -> tuple[bool, Any]:
        try:
            return True, call(x)
        except Exception as err:
            return False, err

    pending: collections.deque[concurrent.futures.Future[tuple[bool, Any]]] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for x in items:
            pending.append(pool.submit(guarded, x))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _MadeWorker(type):
    """The metaclass of :func:`make_worker`'s classes: they pickle as ``make_worker(func)``.

    mpservice's are local classes, which spawned processes cannot import; these rebuild from
    their function, so they run in any servlet when the function pickles.
    """


def make_worker(func: Callable[[Any], Any]) -> type[Worker]:
    """A :class:`Worker` subclass named ``Worker-<func name>`` whose ``call(x)`` is ``func(x)``."""

    def call(self: Worker, x: Any) -> Any:
        return func(x)

    name = f"Worker-{getattr(func, '__name__', 'func')}"
    namespace = {"call": call, "_mp_func": func, "__qualname__": "make_worker.<locals>.MyWorker"}
    return cast(type[Worker], _MadeWorker(name, (Worker,), namespace))


def _reduce_made_worker(cls: _MadeWorker) -> tuple[Any, ...] | str:
    if "_mp_func" in cls.__dict__:
        return make_worker, (cls.__dict__["_mp_func"],)
    return cls.__qualname__  # a subclass of one: pickled by name, as any class


class PassThrough(Worker):
    """``call(x)`` returns ``x``: an ensemble member that keeps the original input."""

    def call(self, x: Any) -> Any:
        """Return the input unchanged."""
        return x


copyreg.pickle(_MadeWorker, _reduce_made_worker)
