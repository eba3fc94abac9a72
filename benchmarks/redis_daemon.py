"""A private redis-server for the Redis IPC targets: a free port on 127.0.0.1, no persistence.

Started by the harness (Debian's ``redis-server``), owned by one target, stopped by PID with it.
"""

import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from benchmarks.net import HOST, free_port, redis_ping
from benchmarks.processes import ProcessTree


class RedisError(RuntimeError):
    """redis-server is missing or did not start."""


def redis_binary() -> Optional[str]:
    """The redis-server executable on PATH, or ``None``."""
    return shutil.which("redis-server")


class RedisDaemon:
    """A redis-server process listening on 127.0.0.1 only, with no snapshots to disk."""

    def __init__(self, log_path: Path):
        binary = redis_binary()
        if binary is None:
            raise RedisError("redis-server is not installed (run benchmarks/install.sh)")
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        argv = [
            binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.tree = ProcessTree(argv, log_path)

    @property
    def url(self) -> str:
        """The URL for ``RedisShmIPCMixin.set_redis_url``."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> "RedisDaemon":
        """Start it and wait until it answers PING.

        Raises:
            RedisError: it exited or did not answer in time (the daemon is stopped then).
        """
        self.tree.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if redis_ping(self.port):
                return self
            if self.tree.exit_code() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RedisError(f"redis-server did not start: {self.tree.log_tail(500)}")

    def stop(self) -> None:
        """Stop it by PID and remove its directory."""
        self.tree.stop(grace_s=5.0)
        shutil.rmtree(self._dir, ignore_errors=True)
