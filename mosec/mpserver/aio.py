"""``AsyncServer``: mpservice's asynchronous server over the mosec engine.

Each call is submitted to the engine without waiting and its answer awaited, so the event loop
never blocks and no thread waits per call; starting and stopping run on the loop's default
executor. Admission follows
:class:`~mosec.mpserver.Server`'s rule with a queue of waiting futures: a finished call hands
its place in the backlog to the first waiter.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from time import perf_counter
from typing import Any, Callable

from mosec.mpserver.core import ServerBase, StreamEnd, StreamRaised
from mosec.mpserver.errors import ServerBacklogFull
from mosec.mpserver.servlets import Servlet


class AsyncServer(ServerBase):
    """Serves a servlet tree to coroutines of one event loop.

    Example::

        async with AsyncServer(ProcessServlet(Model)) as server:
            y = await server.call(x)
            async for y in server.stream(xs):
                ...
    """

    def __init__(self, servlet: Servlet, *, capacity: int = 256) -> None:
        """Describe the server (see :class:`~mosec.mpserver.core.ServerBase`)."""
        super().__init__(servlet, capacity=capacity)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> AsyncServer:
        """Start every worker; returns once each worker's ``__init__`` finished.

        Raises:
            Exception: what a worker's ``__init__`` raised, with its type.
        """
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self._backend.start)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        """Stop the workers (after the calls in flight) and the engine."""
        await asyncio.get_running_loop().run_in_executor(None, self._backend.stop)

    async def call(self, x: Any, /, *, timeout: float = 60, backpressure: bool = True) -> Any:
        """Run one input through the servlet and return its result.

        Cancelling the awaiting coroutine cancels the call's future (the item's place in the
        backlog is kept until the engine is done with it).

        Args:
            x: the input.
            timeout: seconds from now until ``TimeoutError``.
            backpressure: with ``backlog == capacity``: True raises ``ServerBacklogFull`` at
                once; False waits for room up to ``0.99 * timeout``, then raises it.

        Raises:
            ServerBacklogFull: no room (see ``backpressure``).
            TimeoutError: the result was not ready in time.
            Exception: the exception the item's processing raised, with its own type.
        """
        t0 = perf_counter()
        await self._admit(t0, timeout, backpressure)
        t1 = perf_counter()
        return self._backend.result(await self._submit(x, t0, t1, timeout), t0, t1)

    async def stream(
        self,
        data_stream: AsyncIterable[Any],
        /,
        *,
        return_x: bool = False,
        return_exceptions: bool = False,
        timeout: float = 3600,
        preprocessor: Callable[[Any], Any] | None = None,
    ) -> AsyncIterator[Any]:
        """Run every input of an async iterable through the servlet; results in input order.

        The arguments are :meth:`mosec.mpserver.Server.stream`'s; ``data_stream`` must be an
        async iterable (a plain list raises ``TypeError``).
        """
        loop = asyncio.get_running_loop()
        lane: asyncio.Queue[Any] = asyncio.Queue(maxsize=self._capacity)
        feeder = loop.create_task(self._feed(data_stream, preprocessor, timeout, lane))
        try:
            while True:
                entry = await lane.get()
                if isinstance(entry, StreamEnd):
                    return
                if isinstance(entry, StreamRaised):
                    raise entry.error
                x, future, t0, t1 = entry
                try:
                    y = self._backend.result(await future, t0, t1)
                except Exception as err:
                    if not return_exceptions:
                        raise
                    y = err
                yield (x, y) if return_x else y
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            while not lane.empty():
                entry = lane.get_nowait()
                if isinstance(entry, tuple):
                    entry[1].add_done_callback(_retrieve)  # nobody awaits it any more

    async def _feed(
        self,
        data_stream: AsyncIterable[Any],
        preprocessor: Callable[[Any], Any] | None,
        timeout: float,
        lane: asyncio.Queue[Any],
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for x in data_stream:
                t0 = t1 = perf_counter()
                try:
                    item = x if preprocessor is None else preprocessor(x)
                    await self._admit(t0, timeout, False)
                    t1 = perf_counter()
                    future = self._submit(item, t0, t1, timeout)
                except Exception as err:
                    future = loop.create_future()
                    future.set_exception(err)
                await lane.put((x, future, t0, t1))
            await lane.put(StreamEnd())
        except Exception as err:  # the input raised (or is not async-iterable): so does the stream
            await lane.put(StreamRaised(err))

    def _submit(self, x: Any, t0: float, t1: float, timeout: float) -> asyncio.Future[Any]:
        """Submit an admitted item; its place is freed (on the loop) once it is answered.

        Raises:
            Exception: ``x`` cannot be sent (its place is freed already).
        """
        try:
            done = self._backend.submit(x, t0, t1, timeout)
        except BaseException:
            self._release()
            raise
        done.add_done_callback(self._release_soon)
        return asyncio.wrap_future(done)

    def _release_soon(self, _: concurrent.futures.Future[Any]) -> None:
        """From the engine's collector thread: free the place on the loop's thread."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._release)

    async def _admit(self, t0: float, timeout: float, backpressure: bool) -> None:
        """Take a place in the backlog, waiting for one unless ``backpressure``.

        Raises:
            ServerBacklogFull: no room (at once with ``backpressure``, else after waiting).
        """
        if self._backlog < self._capacity:
            self._backlog += 1
            return
        if backpressure:
            raise ServerBacklogFull(self._backlog)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout * 0.99)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # a place was handed over just before: pass it on
            else:
                self._forget(waiter)
            raise
        if not waiter.done():
            self._forget(waiter)
            raise ServerBacklogFull(self._backlog, perf_counter() - t0)
        # A finished call handed its place to this waiter; the backlog already counts it.

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _release(self) -> None:
        """A call is done: hand its place to the first waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._backlog -= 1


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read an abandoned result so that asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
