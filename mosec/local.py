"""Driving a server in process: the same engine, queues and batching, with no port.

``with server.local() as client:`` starts the engine and the workers as :meth:`Server.run`
does, minus signal handling and HTTP clients, and yields a :class:`LocalClient`. Its ``call``
submits a request to a route exactly as an HTTP request is submitted (admission, capacity,
deadline, the route's stages and batching), blocking only the calling thread while the engine
works; ``submit`` does the same without blocking, for a caller with many requests in flight
(their answers come back through one collector thread, not one waiting thread each). Leaving
the block drains and stops everything.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any

from mosec.errors import MosecError

#: How long the collector waits for answers before it looks again (milliseconds); it ends
#: once the engine has stopped and answered every call.
_COLLECT_WAIT_MS = 1000


@dataclass(frozen=True)
class LocalResponse:
    """A route's answer to an in-process call.

    Attributes:
        status: 200, or the error status an HTTP client would get.
        body: the response body (the error message when ``status`` is not 200).
    """

    status: int
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    def raise_for_status(self) -> LocalResponse:
        """This response, or a ``MosecError`` carrying its status and message."""
        if self.status != 200:
            error = MosecError(self.body.decode("utf-8", errors="replace"))
            error.code = self.status
            raise error
        return self


class LocalClient:
    """Calls the routes of a server running in this process (thread-safe)."""

    def __init__(self, engine: Any, timeout_ms: int) -> None:
        """Wrap the started engine; ``timeout_ms`` is the default deadline of a call."""
        self._engine = engine
        self._timeout_ms = timeout_ms
        self._closed = threading.Event()
        #: Submitted calls not answered yet, by token.
        self._pending: dict[int, concurrent.futures.Future[LocalResponse]] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._collector: threading.Thread | None = None

    def call(
        self, data: bytes, path: str = "/inference", timeout: float | None = None
    ) -> LocalResponse:
        """Run ``data`` through the route at ``path``, as the body of an HTTP request would.

        Args:
            data: the request body (the route's first stage ``deserialize``s it).
            path: the route.
            timeout: seconds before the call is answered 408; the server's ``--timeout`` when
                omitted.

        Raises:
            RuntimeError: the server has stopped.
        """
        if self._closed.is_set():
            raise RuntimeError("the in-process server has stopped")
        status, body = self._engine.call(path, _as_bytes(data), self._deadline_ms(timeout))
        return LocalResponse(status, body)

    @property
    def arena_path(self) -> str | None:
        """The server's arena file, when a stage uses it (for :meth:`submit`'s ``stored``)."""
        return self._engine.arena_path()

    def submit(
        self,
        data: bytes,
        path: str = "/inference",
        timeout: float | None = None,
        *,
        stored: bool = False,
    ) -> concurrent.futures.Future[LocalResponse]:
        """Start :meth:`call` and return at once; the future gets its :class:`LocalResponse`.

        Every submitted call is answered (503 when the server stops first), so the future
        always completes; it cannot be cancelled. With ``stored``, ``data`` is a store
        reference (:func:`mosec.store.codec.encode` into the arena at :attr:`arena_path`):
        the call takes its objects over, and the engine releases them when it ends (also when
        it is refused), as it releases any stage's output.

        Raises:
            RuntimeError: the server has stopped.
        """
        if self._closed.is_set():
            raise RuntimeError("the in-process server has stopped")
        future: concurrent.futures.Future[LocalResponse] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # running from now on: ``cancel()`` is refused
        token = next(self._tokens)
        with self._lock:
            self._pending[token] = future
            if self._collector is None:
                self._collector = threading.Thread(
                    target=self._collect, name="mosec-local-collector", daemon=True
                )
                self._collector.start()
        try:
            self._engine.submit(path, _as_bytes(data), self._deadline_ms(timeout), token, stored)
        except BaseException:
            with self._lock:
                self._pending.pop(token, None)
            raise
        return future

    def _deadline_ms(self, timeout: float | None) -> int:
        return self._timeout_ms if timeout is None else max(1, int(timeout * 1000))

    def _collect(self) -> None:
        """Hand each answer to its future, until the engine has stopped and answered all."""
        while (answered := self._engine.completions(_COLLECT_WAIT_MS)) is not None:
            with self._lock:
                futures = [self._pending.pop(token) for token, _, _ in answered]
            for future, (_, status, body) in zip(futures, answered):
                future.set_result(LocalResponse(status, body))

    def close(self) -> None:
        """Refuse further calls (the server is stopping)."""
        self._closed.set()

    def join(self) -> None:
        """Once the engine has stopped: wait until every submitted call's future is done."""
        collector = self._collector
        if collector is not None:
            collector.join()


def _as_bytes(data: bytes) -> bytes:
    """The engine holds on to a ``bytes`` object itself (no copy); other buffers are copied."""
    return data if type(data) is bytes else bytes(data)
