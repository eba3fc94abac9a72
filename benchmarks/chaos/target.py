"""One chaos server: ``targets/chaos_server.py`` under ours or upstream mosec, and its parts.

The server runs as a ``ProcessTree`` (its own session, stopped by PID). Its workers are the
children that ``multiprocessing``'s spawn start method made (both ours and upstream spawn them);
the resource tracker, upstream's Rust controller and a registered redis-server are the other
children. ``metric`` reads our engine's Prometheus text; upstream has no arena metrics, so the
arena columns are ``None`` there.
"""

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil

from benchmarks.net import free_port, request
from benchmarks.processes import ProcessTree
from benchmarks.runtimes import RUNTIMES, TARGETS_DIR

SCRIPT = "chaos_server.py"
ROUTE = "/inference"
#: The request deadline the servers get (``--timeout``): short, so a stuck request ends soon.
TIMEOUT_S = 2.0
#: Our arena: small enough that the overfull-arena fault fills it, with a short wait for room.
OURS_ARENA = ("--shm-size", "16M", "--shm-wait", "500")
#: Our metrics' prefix, set by ``--namespace`` so the harness need not know the engine's default.
NAMESPACE = "chaos"
FRONT_WORKERS = 2
BACK_WORKERS = 1


class ChaosServerError(RuntimeError):
    """The server did not start or answered wrongly."""


@dataclass
class ServerSpec:
    """How a fault wants its server.

    Attributes:
        runtime: ``ours`` or ``upstream`` (a key of ``runtimes.RUNTIMES``).
        store: ``CHAOS_STORE`` of the script: ``shm``, ``pickle`` or ``redis``.
    """

    runtime: str
    store: str


@dataclass
class ChaosServer:
    """A running chaos server.

    Attributes:
        spec: what runs.
        logdir: where its log goes.
        port: its HTTP port on 127.0.0.1.
        tree: its process tree.
        redis_port: the port of its registered redis-server (``store == "redis"``).
        redis_pid_file: where the script writes that redis-server's pid.
    """

    spec: ServerSpec
    logdir: Path
    port: int = 0
    tree: Optional[ProcessTree] = None
    redis_port: int = 0
    redis_pid_file: Optional[Path] = None
    _env: Dict[str, str] = field(default_factory=dict)

    @property
    def workers_expected(self) -> int:
        """How many worker processes the server runs when whole."""
        return FRONT_WORKERS + BACK_WORKERS

    def start(self, stem: str, timeout_s: float = 90.0) -> "ChaosServer":
        """Start it and wait until a valid request answers 200.

        Raises:
            ChaosServerError: it exited or did not answer in time (it is stopped then).
        """
        runtime = RUNTIMES[self.spec.runtime]
        env = runtime.env()
        env["CHAOS_STORE"] = self.spec.store
        env["CHAOS_FRONT_WORKERS"] = str(FRONT_WORKERS)
        if self.spec.store == "redis":
            self.redis_port = free_port()
            self.redis_pid_file = self.logdir / f"{stem}.redis.pid"
            env["CHAOS_REDIS_PORT"] = str(self.redis_port)
            env["CHAOS_REDIS_PID"] = str(self.redis_pid_file)
        self.port = free_port()
        argv = [str(runtime.python), str(TARGETS_DIR / SCRIPT)]
        argv += ["--address", "127.0.0.1", "--port", str(self.port)]
        argv += ["--timeout", str(int(TIMEOUT_S * 1000))]
        if self.spec.runtime == "ours":
            argv += [*OURS_ARENA, "--namespace", NAMESPACE]
        self.tree = ProcessTree(argv, self.logdir / f"{stem}.log", env=env, cwd=TARGETS_DIR)
        self.tree.start()
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.tree.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.tree is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.tree.exit_code() is not None:
                raise ChaosServerError(f"exited: {self.tree.log_tail()}")
            try:
                status, body = self.post({"n": 7})
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200 and len(self.workers()) == self.workers_expected:
                if json.loads(body).get("n") != 7:
                    raise ChaosServerError(f"answered wrongly: {body[:200]!r}")
                return
            time.sleep(0.1)
        raise ChaosServerError(f"not ready after {timeout_s:.0f} s: {self.tree.log_tail()}")

    def post(self, document: dict, timeout_s: float = TIMEOUT_S + 3) -> Tuple[int, bytes]:
        """POST one JSON document; returns the status and body.

        Raises:
            OSError: no connection, or no answer in ``timeout_s``.
        """
        return request("POST", self.port, ROUTE, json.dumps(document).encode(), timeout_s)

    def serves(self) -> bool:
        """Whether a valid request answers 200 with the right body now."""
        try:
            status, body = self.post({"n": 11})
            return status == 200 and json.loads(body).get("n") == 11
        except (OSError, ValueError):
            return False

    def workers(self) -> List[psutil.Process]:
        """The live worker processes (children made by ``multiprocessing``'s spawn)."""
        assert self.tree is not None
        leader = self.tree.pid
        found = []
        for proc in self.tree.processes():
            try:
                if proc.ppid() == leader and "multiprocessing.spawn" in " ".join(proc.cmdline()):
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        found.append(proc)
            except psutil.Error:
                continue
        return found

    def redis_pid(self) -> Optional[int]:
        """The registered redis-server's pid, once the script wrote it."""
        if self.redis_pid_file is None or not self.redis_pid_file.exists():
            return None
        text = self.redis_pid_file.read_text().strip()
        return int(text) if text else None

    def metrics(self) -> Dict[str, float]:
        """Our engine's metrics, by name without the namespace (``shm_used_bytes`` ...).

        Samples with labels are summed. Empty when the server has no such endpoint or is gone.
        """
        try:
            status, body = request("GET", self.port, "/metrics", timeout_s=TIMEOUT_S)
        except OSError:
            return {}
        if status != 200:
            return {}
        values: Dict[str, float] = {}
        for line in body.decode(errors="replace").splitlines():
            match = _SAMPLE.match(line)
            if match:
                values[match["name"]] = values.get(match["name"], 0.0) + float(match["value"])
        return values

    def arena(self) -> Optional[Tuple[int, int]]:
        """``(bytes, objects)`` in our arena now; ``None`` without one (upstream, Redis)."""
        if self.spec.runtime != "ours" or self.spec.store != "shm":
            return None
        values = self.metrics()
        if "shm_used_bytes" not in values:
            return None
        return int(values["shm_used_bytes"]), int(values["shm_objects"])

    def stop(self) -> None:
        """Stop every process of the tree by PID (escalating to SIGKILL)."""
        if self.tree is not None:
            self.tree.stop()


_SAMPLE = re.compile(rf"^{NAMESPACE}_(?P<name>\w+)(?:\{{[^}}]*\}})? (?P<value>\S+)$")
