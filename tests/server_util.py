"""Start real servers for end-to-end tests and stop them by PID.

A server is a script run as ``python <script> --address 127.0.0.1 --port <free port> ...``
in its own session (so a Ctrl-C on pytest does not reach it), with its output in a file the test
can read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import httpx

REPO = Path(__file__).resolve().parent.parent
SERVERS = Path(__file__).resolve().parent / "servers"
EXAMPLES = REPO / "examples"

#: How long a server may take to answer ``GET /`` with 200.
START_TIMEOUT_S = 60.0
#: How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 20.0
POLL_S = 0.05


#: The ``start_server`` fixture's type: ``start_server(script, *args, env=..., wait=...)``.
StartServer = Callable[..., "Server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server under test: no stray ``MOSEC_*``, the repo importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOSEC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = POLL_S
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Server:
    """A server process under test."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        """Wrap a started server process."""
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    @property
    def pid(self) -> int:
        """The server process's id."""
        return self.proc.pid

    def logs(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def json_logs(self) -> list[dict[str, Any]]:
        """The log lines that are JSON objects, parsed."""
        records = []
        for line in self.logs().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def post(self, path: str = "/inference", **kwargs: Any) -> httpx.Response:
        """POST to the server."""
        return self.client.post(path, **kwargs)

    def metrics(self) -> str:
        """The Prometheus text of ``GET /metrics``."""
        response = self.client.get("/metrics")
        response.raise_for_status()
        return response.text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
        total = 0.0
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
        for line in self.metrics().splitlines():
            match = pattern.match(line)
            if not match:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                total += float(match.group(2))
        return total

    def is_ready(self) -> bool:
        """Whether ``GET /`` answers 200 now."""
        try:
            return self.client.get("/", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until ``GET /`` answers 200; fail early, with the log, if the server exits."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} before it was ready:\n{self.logs()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {timeout}s:\n{self.logs()}")
            time.sleep(POLL_S)

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Wait for the server to exit; returns its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running after {timeout}s:\n{self.logs()}") from None

    def terminate(self) -> int:
        """Send SIGTERM and wait for the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def close(self) -> None:
        """Stop the server by PID whatever its state: SIGTERM, then SIGKILL."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)


def script_path(script: str | Path) -> Path:
    """Resolve a script name: ``tests/servers/<name>`` unless it is a path."""
    path = Path(script)
    return path if path.is_absolute() else SERVERS / path


@contextlib.contextmanager
def run_server(
    script: str | Path,
    *args: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    wait: bool = True,
    port: int | None = None,
    runtime: str = "ours",
) -> Iterator[Server]:
    """Start a server script, wait until it is ready, yield it, and stop it by PID at the end.

    Args:
        script: a file in ``tests/servers/`` or an absolute path.
        *args: more command-line arguments.
        log_dir: where the server's output file goes.
        env: extra environment variables.
        wait: wait for ``GET /`` to answer 200 before yielding.
        port: the port to use (a free one when omitted).
        runtime: ``ours``, or a runtime of the benchmark harness (``upstream``: mosec 0.9.8 in
            its own virtual environment, which the caller has made sure exists).
    """
    port = free_port() if port is None else port
    path = script_path(script)
    log_path = log_dir / f"{path.stem}-{runtime}-{port}.log"
    python, full_env = _interpreter(runtime, env)
    command = [python, str(path), "--address", "127.0.0.1", "--port", str(port), *args]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, port, log_path)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        server.close()


def _interpreter(runtime: str, env: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """The interpreter and environment of a server under test in ``runtime``."""
    if runtime == "ours":
        return sys.executable, server_env(env)
    from benchmarks.runtimes import RUNTIMES

    other = RUNTIMES[runtime]
    full_env = {k: v for k, v in other.env().items() if not k.startswith("MOSEC_")}
    full_env.update(env or {})
    return str(other.python), full_env
