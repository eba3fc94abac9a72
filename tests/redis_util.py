"""A real redis-server for tests: on a free 127.0.0.1 port and a Unix socket, stopped by PID.

Use :func:`run_redis` in a fixture::

    @pytest.fixture(scope="module")
    def redis_server(tmp_path_factory):
        with run_redis(tmp_path_factory.mktemp("redis")) as server:
            yield server
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from server_util import free_port, wait_until

#: How long redis-server may take to answer PING, and to exit after SIGTERM.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


@dataclass
class RedisServer:
    """A running redis-server."""

    proc: subprocess.Popen[bytes]
    port: int
    socket_path: Path
    log_path: Path

    @property
    def pid(self) -> int:
        """The redis-server process id."""
        return self.proc.pid

    @property
    def url(self) -> str:
        """The TCP URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The Unix-socket URL (database 0)."""
        return f"unix://{self.socket_path}?db=0"

    def client(self) -> redis.Redis:
        """A new client over TCP."""
        return redis.Redis.from_url(self.url)

    def our_keys(self) -> list[bytes]:
        """Every key mosec made (``mosec:*``), found with SCAN."""
        with contextlib.closing(self.client()) as client:
            return list(client.scan_iter(match="mosec:*", count=1000))

    def dbsize(self) -> int:
        """Keys in database 0."""
        with contextlib.closing(self.client()) as client:
            size: Any = client.dbsize()
            return int(size)

    def ping(self) -> bool:
        """Whether the server answers now."""
        try:
            with contextlib.closing(self.client()) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False


def require_redis_server() -> str:
    """The redis-server executable; fails the test when it is not installed."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not installed (scripts/install.sh installs it)")
    return path


def redis_command(executable: str, port: int, socket_path: Path | None = None) -> list[str]:
    """A redis-server command line: loopback only, nothing written to disk."""
    command = [
        executable,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    if socket_path is not None:
        command += ["--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    return command


@contextlib.contextmanager
def run_redis(directory: Path) -> Iterator[RedisServer]:
    """Start redis-server, wait until it answers PING, yield it, and stop it by PID."""
    executable = require_redis_server()
    port = free_port()
    socket_path = directory / "redis.sock"
    log_path = directory / f"redis-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            redis_command(executable, port, socket_path),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RedisServer(proc, port, socket_path, log_path)
    try:
        wait_until(
            lambda: proc.poll() is not None or server.ping(),
            START_TIMEOUT_S,
            "redis-server to answer PING",
        )
        if proc.poll() is not None:
            raise AssertionError(f"redis-server exited early:\n{log_path.read_text()}")
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
