"""Scale-out on one machine: a rolling restart behind HAProxy, two servers on one Redis.

One server is one pod; more pods behind a load balancer is how it scales. This script proves the
two things that story rests on, on 127.0.0.1 only, every process stopped by PID:

1. **Rolling restart**: two servers (arena store, a 2-stage tensor pipeline) behind HAProxy
   health-checking ``GET /`` (``benchmarks/haproxy.py``), under a steady load
   (``benchmarks/steady_load.py``); SIGTERM the first, wait until it has drained and exited, start
   it again, wait until HAProxy has it back; then the same with the second. Every request of the
   whole run must succeed; latency percentiles are reported per phase.
2. **Shared Redis**: two servers whose stages hand tensors through one redis-server
   (``RedisShmIPCMixin``), each under its own load; SIGKILL the first (its whole process group)
   mid-load. The survivor must keep answering every request, no key of a server may be deleted by
   a client of the other (``benchmarks/redis_watch.py`` reads Redis's ``MONITOR`` feed), and the
   killed server's keys must be gone by their expiry (``BENCH_REDIS_TTL_MS``); then it is started
   again and serves.

``python -m benchmarks.scale_out`` runs both (about a minute); ``--quick`` is the pytest's length.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import redis

from benchmarks.haproxy import HAProxy
from benchmarks.net import free_port, request
from benchmarks.processes import ProcessTree
from benchmarks.redis_daemon import RedisDaemon
from benchmarks.redis_watch import ClientPorts, RedisMonitor, foreign_deletions, wait_keys_gone
from benchmarks.runtimes import REPO, TARGETS_DIR
from benchmarks.steady_load import Sample, SteadyLoad

ROUTE = "/inference"
ROW = 1024  # floats per row of the target's tensor (targets/mosec_server.py)
BODY = json.dumps({"value": 1.0}).encode()


@dataclass
class Settings:
    """What one run does.

    Attributes:
        settle_s: seconds of load before the first restart and after each server is back.
        connections: load connections (through HAProxy; per server in the Redis part).
        tensor_bytes: the tensor stage 1 hands to stage 2 (≥ 64 KiB: it goes through the store).
        redis_tensor_bytes: the same in the Redis part, smaller: ``MONITOR`` echoes every value.
        timeout_ms: the servers' ``--timeout`` (and so their drain bound).
        redis_ttl_ms: the expiry of the Redis keys (above ``timeout_ms``, as the mixin requires).
        workdir: logs and configuration (a new temporary folder when empty).
    """

    settle_s: float = 6.0
    connections: int = 8
    tensor_bytes: int = 256 * 1024
    redis_tensor_bytes: int = 64 * 1024
    timeout_ms: int = 3000
    redis_ttl_ms: int = 4000
    workdir: str = ""


QUICK = Settings(settle_s=2.5, connections=6, timeout_ms=2000, redis_ttl_ms=2500)


class Backend:
    """One server of ``targets/mosec_server.py`` on a fixed port (HAProxy knows it by its port)."""

    def __init__(
        self, name: str, env: Dict[str, str], settings: Settings, logdir: Path, tensor_bytes: int
    ):
        self.name = name
        self._tensor_bytes = tensor_bytes
        self.port = free_port()
        self._env = env
        self._settings = settings
        self._logdir = logdir
        self.starts = 0
        self.tree: Optional[ProcessTree] = None

    def start(self) -> "Backend":
        """Start it (a new process tree, a new default ``--path`` and so a new arena)."""
        self.starts += 1
        argv = [sys.executable, str(TARGETS_DIR / "mosec_server.py"), "--address", "127.0.0.1"]
        argv += ["--port", str(self.port), "--timeout", str(self._settings.timeout_ms)]
        argv += ["--shm-size", "64M"]
        log = self._logdir / f"{self.name}.{self.starts}.log"
        self.tree = ProcessTree(argv, log, env=self._env, cwd=TARGETS_DIR).start()
        return self

    @property
    def pid(self) -> int:
        """The server process's id (the first part of its Redis keys)."""
        assert self.tree is not None
        return self.tree.pid

    def wait_ready(self, timeout_s: float = 90.0) -> float:
        """Poll ``GET /`` until 200, then check one real request; returns seconds since start.

        Raises:
            RuntimeError: it exited, or did not get ready, or answered wrongly.
        """
        assert self.tree is not None
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            if self.tree.exit_code() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tree.log_tail()}")
            try:
                if request("GET", self.port, "/", timeout_s=2.0)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s")
            time.sleep(0.05)
        ready_s = time.monotonic() - start
        status, body = request("POST", self.port, ROUTE, BODY, timeout_s=10.0)
        elements = self._tensor_bytes // 4 // ROW * ROW
        if status != 200 or json.loads(body).get("elements") != elements:
            raise RuntimeError(f"{self.name} answered {status} {body[:200]!r}")
        return ready_s

    def terminate(self, timeout_s: float) -> float:
        """SIGTERM the server process, wait until its tree has exited; returns the seconds."""
        assert self.tree is not None
        start = time.monotonic()
        self.tree.stop(grace_s=2 * timeout_s, first=signal.SIGTERM)
        return time.monotonic() - start

    def kill(self) -> None:
        """SIGKILL its whole process group at once (a pod killed), then reap it by PID."""
        assert self.tree is not None
        self.tree.processes()  # remember every process, to stop any that left the group
        try:
            os.killpg(self.tree.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.tree.stop(grace_s=2.0)

    def stop(self) -> None:
        """Stop it by PID if it runs."""
        if self.tree is not None:
            self.tree.stop()


def _env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _wait_samples(load: SteadyLoad, seconds: float) -> None:
    """Let the load run ``seconds``; fails when it answered nothing meanwhile."""
    before = load.count()
    time.sleep(seconds)  # the load itself is what is measured: this is its duration, not a sync
    if load.count() == before:
        raise RuntimeError("the load got no answer in its settle time")


@dataclass
class Phase:
    """Requests that started between two events."""

    name: str
    requests: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _phase(name: str, samples: Sequence[Sample]) -> Phase:
    latencies = [s.latency_s * 1e3 for s in samples]
    return Phase(
        name=name,
        requests=len(samples),
        failed=sum(not s.ok for s in samples),
        p50_ms=round(float(np.percentile(latencies, 50)), 2) if latencies else 0.0,
        p99_ms=round(float(np.percentile(latencies, 99)), 2) if latencies else 0.0,
        max_ms=round(max(latencies), 2) if latencies else 0.0,
    )


def _phases(samples: Sequence[Sample], events: List[Tuple[str, float]]) -> List[Phase]:
    """Split the samples at each event (by their start time); the last phase runs to the end."""
    phases = []
    for i, (name, since) in enumerate(events):
        until = events[i + 1][1] if i + 1 < len(events) else float("inf")
        phases.append(_phase(name, [s for s in samples if since <= s.start < until]))
    return phases


def _failures(samples: Sequence[Sample], origin: float, limit: int = 20) -> List[str]:
    return [
        f"t={s.start - origin:.3f}s status={s.status} {s.error}".rstrip()
        for s in samples
        if not s.ok
    ][:limit]


@dataclass
class RollingResult:
    """The rolling restart's figures."""

    requests: int
    failed: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    duration_s: float
    drain_s: Dict[str, float]
    restart_ready_s: Dict[str, float]
    back_in_rotation_s: Dict[str, float]
    served_after_restart: Dict[str, int]
    haproxy_retries: int
    haproxy_redispatches: int
    phases: List[Phase]
    failures: List[str] = field(default_factory=list)


def rolling_restart(settings: Settings, workdir: Path) -> RollingResult:
    """Two arena servers behind HAProxy; SIGTERM and restart one, then the other, under load."""
    names = ("s1", "s2")
    env = _env(
        BENCH_SPEC=json.dumps({"kind": "tensor", "tensor_bytes": settings.tensor_bytes}),
        BENCH_IPC_MIXIN="ShmIPCMixin",
    )
    backends = {
        name: Backend(name, env, settings, workdir, settings.tensor_bytes) for name in names
    }
    proxy: Optional[HAProxy] = None
    load: Optional[SteadyLoad] = None
    try:
        for backend in backends.values():
            backend.start()
        for backend in backends.values():
            backend.wait_ready()
        proxy = HAProxy(free_port(), {n: b.port for n, b in backends.items()}, workdir).start()
        proxy.wait_status(names, "UP", timeout_s=10.0)
        load = SteadyLoad(
            proxy.port, ROUTE, BODY, settings.connections, timeout_s=settings.timeout_ms / 1e3 + 5
        ).start()
        origin = time.monotonic()
        events = [("steady", origin)]
        drain, ready, back, served = {}, {}, {}, {}
        _wait_samples(load, settings.settle_s)
        for name, backend in backends.items():
            events.append((f"{name} SIGTERM, drain, exit", time.monotonic()))
            drain[name] = round(backend.terminate(settings.timeout_ms / 1e3), 3)
            events.append((f"{name} restart until back in rotation", time.monotonic()))
            started = time.monotonic()
            backend.start()
            ready[name] = round(backend.wait_ready(), 3)
            proxy.wait_status([name], "UP", timeout_s=10.0)
            back[name] = round(time.monotonic() - started, 3)
            before = int(proxy.server_stats()[name]["stot"])
            events.append((f"both serving after {name}", time.monotonic()))
            _wait_samples(load, settings.settle_s)
            served[name] = int(proxy.server_stats()[name]["stot"]) - before
        samples = load.stop()
        load = None
        duration = time.monotonic() - origin
        rows = proxy.server_stats()
        whole = _phase("whole run", samples)
        return RollingResult(
            requests=whole.requests,
            failed=whole.failed,
            rps=round(sum(s.ok for s in samples) / duration, 1),
            p50_ms=whole.p50_ms,
            p99_ms=whole.p99_ms,
            max_ms=whole.max_ms,
            duration_s=round(duration, 1),
            drain_s=drain,
            restart_ready_s=ready,
            back_in_rotation_s=back,
            served_after_restart=served,
            haproxy_retries=sum(int(r["wretr"] or 0) for r in rows.values()),
            haproxy_redispatches=sum(int(r["wredis"] or 0) for r in rows.values()),
            phases=_phases(samples, events),
            failures=_failures(samples, origin),
        )
    finally:
        if load is not None:
            load.stop()
        if proxy is not None:
            proxy.stop()
        for backend in backends.values():
            backend.stop()


@dataclass
class SharedRedisResult:
    """The shared-Redis figures."""

    survivor_requests: int
    survivor_failed: int
    survivor_p99_ms: float
    killed_requests_before_kill: int
    killed_keys_at_kill: int
    killed_keys_gone_after_s: float
    ttl_ms: int
    deletions_seen: int
    deletions_traced_to_owner: int
    foreign_deletions: List[str]
    restarted_served: bool
    failures: List[str] = field(default_factory=list)


def shared_redis(settings: Settings, workdir: Path) -> SharedRedisResult:
    """Two Redis-store servers on one redis-server; SIGKILL one mid-load."""
    daemon = RedisDaemon(workdir / "redis.log").start()
    env = _env(
        BENCH_SPEC=json.dumps({"kind": "tensor", "tensor_bytes": settings.redis_tensor_bytes}),
        BENCH_IPC_MIXIN="RedisShmIPCMixin",
        BENCH_REDIS_URL=daemon.url,
        BENCH_REDIS_TTL_MS=str(settings.redis_ttl_ms),
    )
    killed, survivor = (
        Backend(name, env, settings, workdir, settings.redis_tensor_bytes) for name in ("r1", "r2")
    )
    client = redis.Redis.from_url(daemon.url)
    loads: List[SteadyLoad] = []
    monitor: Optional[RedisMonitor] = None
    ports: Optional[ClientPorts] = None

    def keys(prefix: str) -> List[bytes]:
        return list(client.scan_iter(match=prefix + "*", count=1000))

    try:
        for backend in (killed, survivor):
            backend.start()
        for backend in (killed, survivor):
            backend.wait_ready()
        assert killed.tree is not None and survivor.tree is not None
        server_of_pid = {killed.pid: "r1", survivor.pid: "r2"}
        monitor = RedisMonitor(daemon.port).start()
        ports = ClientPorts(daemon.port, {"r1": killed.tree, "r2": survivor.tree}).start()
        per_server = max(settings.connections // 2, 1)
        timeout_s = settings.timeout_ms / 1e3 + 5
        load_killed = SteadyLoad(killed.port, ROUTE, BODY, per_server, timeout_s).start()
        load_survivor = SteadyLoad(survivor.port, ROUTE, BODY, per_server, timeout_s).start()
        loads = [load_killed, load_survivor]
        origin = time.monotonic()
        _wait_samples(load_survivor, settings.settle_s)
        prefix = f"mosec:{killed.pid}."
        ports.sample()
        kill_at = time.monotonic()
        killed.kill()
        killed_samples = load_killed.stop()
        loads.remove(load_killed)
        at_kill, _ = wait_keys_gone(keys, prefix, settings.redis_ttl_ms / 1e3 + 5.0)
        gone_after_s = time.monotonic() - kill_at
        _wait_samples(load_survivor, max(settings.settle_s - gone_after_s, 0.5))
        killed.start()
        killed.wait_ready()
        server_of_pid[killed.pid] = "r1-restarted"
        ports.track("r1-restarted", killed.tree)
        status, _ = request("POST", killed.port, ROUTE, BODY, timeout_s=10.0)
        _wait_samples(load_survivor, 1.0)
        survivor_samples = load_survivor.stop()
        loads.remove(load_survivor)
        deletions = monitor.stop()
        monitor = None
        owner_of_port = ports.stop()
        ports = None
        foreign, own = foreign_deletions(deletions, owner_of_port, server_of_pid)
        whole = _phase("survivor", survivor_samples)
        return SharedRedisResult(
            survivor_requests=whole.requests,
            survivor_failed=whole.failed,
            survivor_p99_ms=whole.p99_ms,
            killed_requests_before_kill=sum(s.ok for s in killed_samples if s.start < kill_at),
            killed_keys_at_kill=at_kill,
            killed_keys_gone_after_s=round(gone_after_s, 2),
            ttl_ms=settings.redis_ttl_ms,
            deletions_seen=len(deletions),
            deletions_traced_to_owner=own,
            foreign_deletions=[f"{d.command} {d.key} from port {d.client_port}" for d in foreign][
                :20
            ],
            restarted_served=status == 200,
            failures=_failures(survivor_samples, origin),
        )
    finally:
        for load in loads:
            load.stop()
        if monitor is not None:
            monitor.stop()
        if ports is not None:
            ports.stop()
        client.close()
        killed.stop()
        survivor.stop()
        daemon.stop()


def report(rolling: RollingResult, shared: SharedRedisResult) -> str:
    """The figures as Markdown."""
    lines = [
        "## Rolling restart behind HAProxy",
        "",
        f"{rolling.requests} requests in {rolling.duration_s} s ({rolling.rps} req/s), "
        f"**{rolling.failed} failed**; p50 {rolling.p50_ms} ms, **p99 {rolling.p99_ms} ms**, "
        f"max {rolling.max_ms} ms. HAProxy retried {rolling.haproxy_retries} "
        f"(redispatched {rolling.haproxy_redispatches}).",
        f"Drain to exit (s): {rolling.drain_s}; restart to ready (s): {rolling.restart_ready_s}; "
        f"restart to back in rotation (s): {rolling.back_in_rotation_s}; "
        f"requests served by each after its restart: {rolling.served_after_restart}.",
        "",
        "| phase | requests | failed | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in rolling.phases:
        lines.append(
            f"| {p.name} | {p.requests} | {p.failed} | {p.p50_ms} | {p.p99_ms} | {p.max_ms} |"
        )
    lines += [f"- failure: {f}" for f in rolling.failures]
    lines += [
        "",
        "## Two servers on one Redis, one SIGKILLed",
        "",
        f"Survivor: {shared.survivor_requests} requests, **{shared.survivor_failed} failed**, "
        f"p99 {shared.survivor_p99_ms} ms. Killed server: {shared.killed_requests_before_kill} "
        f"answered before the kill, {shared.killed_keys_at_kill} of its keys left at the kill, "
        f"all gone {shared.killed_keys_gone_after_s} s after it (expiry {shared.ttl_ms} ms); "
        f"restarted and served: {shared.restarted_served}.",
        f"Deleting commands seen by MONITOR: {shared.deletions_seen}, each traced to a client of "
        f"the server that made the key: {shared.deletions_traced_to_owner}; "
        f"**{len(shared.foreign_deletions)} by the other server**.",
    ]
    lines += [f"- foreign deletion: {f}" for f in shared.foreign_deletions]
    lines += [f"- survivor failure: {f}" for f in shared.failures]
    return "\n".join(lines)


def run(settings: Settings) -> Tuple[RollingResult, SharedRedisResult]:
    """Both experiments, one after the other, in ``settings.workdir`` (or a temporary folder)."""
    workdir = Path(settings.workdir or tempfile.mkdtemp(prefix="scale-out-"))
    rolling = rolling_restart(settings, workdir / "rolling")
    shared = shared_redis(settings, workdir / "redis")
    (workdir / "results.json").write_text(
        json.dumps({"rolling": asdict(rolling), "shared_redis": asdict(shared)}, indent=2)
    )
    return rolling, shared


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: run both, print the Markdown report; exit 1 when a property failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the pytest's shorter settle time")
    parser.add_argument("--workdir", default="", help="logs and results (default: a new tmp dir)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    settings.workdir = args.workdir
    rolling, shared = run(settings)
    print(report(rolling, shared))
    ok = (
        rolling.failed == 0
        and shared.survivor_failed == 0
        and not shared.foreign_deletions
        and shared.restarted_served
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
