"""``Server``: mpservice's synchronous server over the mosec engine.

``call`` blocks its own thread only (the engine works with the GIL released), so any number of
threads may call at once. ``stream`` keeps up to ``capacity`` items in flight: a feeder thread
reads the input, admits each item (waiting for room, as ``backpressure=False``) and submits it
to the engine without waiting; the generator yields the results in input order as the engine's
answers come back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from time import perf_counter
from typing import Any, Callable

from mosec.mpserver.core import ServerBase, StreamEnd, StreamRaised
from mosec.mpserver.errors import ServerBacklogFull
from mosec.mpserver.servlets import Servlet

#: How often a stopped stream's feeder, blocked on a full hand-over queue, looks up (seconds).
_POLL_S = 0.1


class Server(ServerBase):
    """Serves a servlet tree to calls from this process's threads.

    Example::

        with Server(SequentialServlet(ProcessServlet(Prep), ProcessServlet(Model))) as server:
            y = server.call(x)
            for y in server.stream(xs):
                ...
    """

    def __init__(self, servlet: Servlet, *, capacity: int = 256) -> None:
        """Describe the server (see :class:`~mosec.mpserver.core.ServerBase`)."""
        super().__init__(servlet, capacity=capacity)
        self._room = threading.Condition()

    def __enter__(self) -> Server:
        """Start every worker; returns once each worker's ``__init__`` finished.

        Raises:
            Exception: what a worker's ``__init__`` raised, with its type.
        """
        self._backend.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop the workers (after the calls in flight) and the engine."""
        self._backend.stop()

    def call(self, x: Any, /, *, timeout: float = 60, backpressure: bool = True) -> Any:
        """Run one input through the servlet and return its result.

        Args:
            x: the input.
            timeout: seconds from now until ``TimeoutError``.
            backpressure: with ``backlog == capacity``: True raises ``ServerBacklogFull``
                at once; False waits for room up to ``0.99 * timeout``, then raises it.

        Raises:
            ServerBacklogFull: no room (see ``backpressure``).
            TimeoutError: the result was not ready in time.
            Exception: the exception the item's processing raised, with its own type.
        """
        t0 = perf_counter()
        self._admit(t0, timeout, backpressure)
        try:
            return self._backend.call(x, t0, perf_counter(), timeout)
        finally:
            self._release()

    def stream(
        self,
        data_stream: Iterable[Any],
        /,
        *,
        return_x: bool = False,
        return_exceptions: bool = False,
        timeout: float = 3600,
        preprocessor: Callable[[Any], Any] | None = None,
    ) -> Iterator[Any]:
        """Run every input through the servlet; results in input order.

        Nothing is sent before the iteration starts. Each item is admitted as by
        ``call(backpressure=False)`` and bounded by its own ``timeout``.

        Args:
            data_stream: the inputs.
            return_x: yield ``(x, y)`` with the original input.
            return_exceptions: yield an item's exception in its place; otherwise the first one
                is raised from the iterator (the results before it were yielded).
            timeout: seconds for each item, from when it is read.
            preprocessor: run on each input here before it is sent; if it raises, that is the
                item's result and the item is not sent.
        """
        return self._stream(data_stream, return_x, return_exceptions, timeout, preprocessor)

    def _stream(
        self,
        data_stream: Iterable[Any],
        return_x: bool,
        return_exceptions: bool,
        timeout: float,
        preprocessor: Callable[[Any], Any] | None,
    ) -> Iterator[Any]:
        lane: queue.Queue[Any] = queue.Queue(maxsize=self._capacity)
        stop = threading.Event()
        feeder = threading.Thread(
            target=self._feed,
            args=(data_stream, preprocessor, timeout, lane, stop),
            name="mpserver-stream-feeder",
            daemon=True,  # it may be blocked in the user's iterator: never wait for it
        )
        feeder.start()
        try:
            while True:
                entry = lane.get()
                if isinstance(entry, StreamEnd):
                    return
                if isinstance(entry, StreamRaised):
                    raise entry.error
                x, future, t0, t1 = entry
                try:
                    y = self._backend.result(future.result(), t0, t1)
                except Exception as err:
                    if not return_exceptions:
                        raise
                    y = err
                yield (x, y) if return_x else y
        finally:
            stop.set()
            with self._room:
                self._room.notify_all()  # a feeder waiting for room gives up
            with contextlib.suppress(queue.Empty):
                while True:
                    lane.get_nowait()  # a feeder blocked on a full lane gets to see ``stop``

    def _feed(
        self,
        data_stream: Iterable[Any],
        preprocessor: Callable[[Any], Any] | None,
        timeout: float,
        lane: queue.Queue[Any],
        stop: threading.Event,
    ) -> None:
        try:
            for x in data_stream:
                if stop.is_set():
                    return
                t0 = t1 = perf_counter()
                try:
                    item = x if preprocessor is None else preprocessor(x)
                    if not self._admit(t0, timeout, False, stop):
                        return
                except Exception as err:
                    future = _failed(err)
                else:
                    t1 = perf_counter()
                    future = self._submit(item, t0, t1, timeout)
                if not _put(lane, (x, future, t0, t1), stop):
                    return
            _put(lane, StreamEnd(), stop)
        except BaseException as err:  # the user's iterator raised: so does the stream
            _put(lane, StreamRaised(err), stop)

    def _submit(
        self, item: Any, t0: float, t1: float, timeout: float
    ) -> concurrent.futures.Future[Any]:
        """Submit an admitted item; its place in the backlog is freed once it is answered."""
        try:
            future = self._backend.submit(item, t0, t1, timeout)
        except Exception as err:
            self._release()
            return _failed(err)
        future.add_done_callback(lambda _: self._release())
        return future

    def _admit(
        self, t0: float, timeout: float, backpressure: bool, stop: threading.Event | None = None
    ) -> bool:
        """Take a place in the backlog; False when ``stop`` was set while waiting.

        Raises:
            ServerBacklogFull: no room (at once with ``backpressure``, else after waiting).
        """
        with self._room:
            if self._backlog >= self._capacity:
                if backpressure:
                    raise ServerBacklogFull(self._backlog)
                room = self._room.wait_for(
                    lambda: self._backlog < self._capacity or (stop is not None and stop.is_set()),
                    timeout * 0.99,
                )
                if stop is not None and stop.is_set():
                    return False
                if not room:
                    raise ServerBacklogFull(self._backlog, perf_counter() - t0)
            self._backlog += 1
        return True

    def _release(self) -> None:
        with self._room:
            self._backlog -= 1
            # Every waiter looks: one may be a stopped stream's feeder that takes no place.
            self._room.notify_all()


def _failed(error: BaseException) -> concurrent.futures.Future[Any]:
    """A stream item that failed before it was sent."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_exception(error)
    return future


def _put(lane: queue.Queue[Any], entry: Any, stop: threading.Event) -> bool:
    """Hand an entry to the stream's reader; False once the reader has gone."""
    while not stop.is_set():
        try:
            lane.put(entry, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
