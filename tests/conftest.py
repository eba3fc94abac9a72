"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_util import Server, StartServer, run_server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers for one test; every one is stopped by PID when the test ends.

    Call it as ``start_server("echo.py", "--timeout", "1000", env={...}, wait=True)``.
    """
    with contextlib.ExitStack() as stack:

        def start(script: str, *args: str, **kwargs: Any) -> Server:
            return stack.enter_context(run_server(script, *args, log_dir=tmp_path, **kwargs))

        yield start


@pytest.fixture(scope="session")
def upstream_mosec() -> str:
    """mosec 0.9.8 from PyPI in the benchmark harness's virtual environment, made on first use.

    The side-by-side tests run the same scripts on it and on this package. A missing network
    fails the test (pip's error) rather than skipping it.
    """
    from benchmarks.runtimes import RUNTIMES

    RUNTIMES["upstream"].ensure()
    return "upstream"


@pytest.fixture(scope="session")
def redis_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A redis-server for the session, as the environment of the conformance suite's server."""
    from ipc_targets import REDIS_URL_ENV
    from redis_util import run_redis

    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield {REDIS_URL_ENV: server.url}
