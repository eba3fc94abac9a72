"""A target server running for one scenario: start, wait until it answers correctly, stop.

The server runs its target's script under its runtime's interpreter, listening on a free port on
127.0.0.1, with the scenario's spec in ``BENCH_SPEC`` and the IPC mixin in ``BENCH_IPC_MIXIN``.
It is ready once a real request (in the target's protocol: ``Script.wire``) answers 200 with a
correct body (so a server that answers
health checks but computes the wrong thing never gets measured); then its idle CPU use is taken,
the level ``monitor.wait_idle`` waits for between runs. A Redis target gets its own
redis-server, started first and stopped last, whose CPU and memory count as the target's.
"""

import json
import time
from pathlib import Path
from typing import List, Optional

from benchmarks.catalog import Target
from benchmarks.monitor import cpu_rate, wait_idle
from benchmarks.net import free_port, request
from benchmarks.processes import ProcessTree
from benchmarks.redis_daemon import RedisDaemon
from benchmarks.runtimes import RUNTIMES, TARGETS_DIR
from benchmarks.scenarios import Scenario


class ServerError(RuntimeError):
    """The server exited, never became ready, or answered wrongly."""


class TargetServer:
    """One target serving one scenario.

    Args:
        target: who serves.
        scenario: what it serves.
        logdir: where the server's (and redis-server's) logs go.
    """

    def __init__(self, target: Target, scenario: Scenario, logdir: Path):
        self.target = target
        self.scenario = scenario
        self.logdir = logdir
        self.port = 0
        self.redis: Optional[RedisDaemon] = None
        self.tree: Optional[ProcessTree] = None
        self.idle_cpu = 0.0  # cores used while idle, measured once ready (some servers poll)

    @property
    def url(self) -> str:
        """Where requests go."""
        return f"http://127.0.0.1:{self.port}{self.target.script.route}"

    @property
    def trees(self) -> List[ProcessTree]:
        """Every process tree that belongs to this target (server, and redis-server if any)."""
        trees = [self.redis.tree] if self.redis is not None else []
        return trees + ([self.tree] if self.tree is not None else [])

    def start(self, timeout_s: float = 90.0) -> "TargetServer":
        """Start the server (and its redis-server) and wait until a request answers correctly.

        Raises:
            ServerError: it did not become ready; everything started is stopped again.
            RedisError: its redis-server did not start.
        """
        runtime = RUNTIMES[self.target.runtime]
        env = runtime.env()
        env["BENCH_SPEC"] = json.dumps(self.scenario.spec)
        ipc = self.target.ipc
        env["BENCH_IPC_MIXIN"] = (ipc.mixin or "") if ipc is not None else ""
        env["BENCH_INPLACE"] = "1" if ipc is not None and ipc.inplace else ""
        stem = f"{self.scenario.name}.{self.target.name}"
        try:
            if ipc is not None and ipc.daemon == "redis":
                self.redis = RedisDaemon(self.logdir / f"{stem}.redis.log").start()
                env["BENCH_REDIS_URL"] = self.redis.url
            self.port = free_port()
            script = self.target.script
            argv = [str(runtime.python), str(TARGETS_DIR / script.file)]
            argv += script.argv(self.port, self.scenario.timeout_s)
            argv += list(ipc.server_args) if ipc is not None else []
            self.tree = ProcessTree(argv, self.logdir / f"{stem}.log", env=env, cwd=TARGETS_DIR)
            self.tree.start()
            self._wait_ready(timeout_s)
            wait_idle(self.trees, self.scenario.timeout_s, idle_rate=0.5)
            self.idle_cpu = cpu_rate(self.trees, 0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server's process tree, then its redis-server; every process by PID."""
        if self.tree is not None:
            self.tree.stop(first=self.target.script.stop_signal)
        if self.redis is not None:
            self.redis.stop()

    def _wait_ready(self, timeout_s: float) -> None:
        """Poll with the scenario's real request until it answers 200 with a correct body."""
        assert self.tree is not None
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.tree.exit_code()
            if code is not None:
                raise ServerError(f"{self.target.name} exited with {code}: {self.tree.log_tail()}")
            try:
                wire = self.target.script.wire
                status, body = request(
                    "POST",
                    self.port,
                    self.target.script.route,
                    wire.body(self.scenario),
                    timeout_s=self.scenario.timeout_s,
                    content_type=wire.content_type(self.scenario),
                )
            except OSError as err:
                last = f"{type(err).__name__}: {err}"
                time.sleep(0.2)
                continue
            if status == 200:
                self._check(body)
                return
            last = f"HTTP {status}: {body[:200]!r}"
            time.sleep(0.2)
        raise ServerError(f"{self.target.name} not ready after {timeout_s:.0f} s ({last})")

    def _check(self, body: bytes) -> None:
        """Raise ``ServerError`` unless the answer is what the scenario expects."""
        try:
            answer = self.target.script.wire.answer(self.scenario, body)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise ServerError(f"{self.target.name} answered {body[:200]!r}: {err}") from err
        problem = self.scenario.check(answer)
        if problem is not None:
            raise ServerError(f"{self.target.name} answered wrongly: {problem}")
