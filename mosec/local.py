"""Driving a server in process: the same engine, queues and batching, with no port.

``with server.local() as client:`` starts the engine and the workers as :meth:`Server.run`
does, minus signal handling and HTTP clients, and yields a :class:`LocalClient`. Its ``call``
submits a request to a route exactly as an HTTP request is submitted (admission, capacity,
deadline, the route's stages and batching), blocking only the calling thread while the engine
works. Leaving the block drains and stops everything.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from mosec.errors import MosecError


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
        timeout_ms = self._timeout_ms if timeout is None else max(1, int(timeout * 1000))
        status, body = self._engine.call(path, bytes(data), timeout_ms)
        return LocalResponse(status, body)

    def close(self) -> None:
        """Refuse further calls (the server is stopping)."""
        self._closed.set()
