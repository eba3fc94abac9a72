"""Helpers for tests that hold requests inside ``forward`` (see servers/behaviour.py)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from server_util import Server, wait_until


class Request(threading.Thread):
    """A POST sent from a thread, so the test can act while it is in flight."""

    def __init__(self, server: Server, path: str = "/inference", **kwargs: Any) -> None:
        """Start sending right away."""
        super().__init__(daemon=True)
        self.url = server.url + path
        self.kwargs = kwargs
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.response = httpx.post(self.url, timeout=60.0, **self.kwargs)
        except BaseException as err:  # reported by result()
            self.error = err

    def result(self, timeout: float = 60.0) -> httpx.Response:
        """Wait for the response."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"no response after {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


class Hold:
    """A request body that parks the request in ``forward`` until released."""

    def __init__(self, directory: Path, name: str) -> None:
        """Name the marker and release files of one held request."""
        self.mark = directory / f"{name}.mark"
        self.release_file = directory / f"{name}.release"

    def body(self, **extra: Any) -> dict[str, Any]:
        """The JSON body that holds."""
        return {"mark": str(self.mark), "hold": str(self.release_file), **extra}

    def wait_inside(self, timeout: float = 30.0) -> int:
        """Wait until the request is inside ``forward``; returns the worker's pid."""
        wait_until(self.mark.exists, timeout, f"{self.mark.name} in forward")
        return int(self.mark.read_text())

    def release(self) -> None:
        """Let the held request finish."""
        self.release_file.touch()
