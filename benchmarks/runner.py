"""The measuring loop: per scenario, start every target, then alternate them for each repeat.

For one scenario all its targets are started (side by side) and kept up; then, for each
repeat, every target in turn gets a warm-up run and a measured run of the load generator, while a
monitor records its processes' CPU and memory. The order rotates from one repeat to the next, so
no target always runs first or last. Every server is stopped by PID when the scenario ends, or
when anything goes wrong, including Ctrl-C.
"""

import datetime
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.catalog import Target
from benchmarks.loadgen import LoadGenError, Wrk
from benchmarks.monitor import ResourceMonitor, wait_idle
from benchmarks.progress import Progress
from benchmarks.redis_daemon import RedisError
from benchmarks.scenarios import Scenario
from benchmarks.selection import Skip
from benchmarks.servers import ServerError, TargetServer

MIB = 1 << 20


@dataclass
class Settings:
    """How long and how hard each target is loaded.

    Attributes:
        duration_s: seconds of each measured run (whole seconds: wrk's unit).
        warmup_s: seconds of load before each measured run, not recorded.
        warmup_each: warm up before every measured run; otherwise (``--quick``) all servers of a
            scenario are warmed up once, side by side, right after they started.
        repeats: measured runs per target and scenario.
        concurrency: connections, overriding each scenario's default when set.
        start_timeout_s: how long a server may take to become ready.
    """

    duration_s: int = 10
    warmup_s: int = 2
    warmup_each: bool = True
    repeats: int = 3
    concurrency: Optional[int] = None
    start_timeout_s: float = 120.0

    def connections(self, scenario: Scenario) -> int:
        """The concurrency used for ``scenario``."""
        return self.concurrency or scenario.concurrency

    def duration(self, scenario: Scenario) -> int:
        """The measured seconds for ``scenario``: never under its own minimum."""
        return max(self.duration_s, scenario.min_duration_s)


@dataclass
class Outcome:
    """Everything a run measured or skipped."""

    samples: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Skip] = field(default_factory=list)


def steps(plan: Dict[str, List[Target]], settings: Settings) -> int:
    """How many measured runs ``plan`` has (the progress bar's total)."""
    return sum(len(targets) for targets in plan.values()) * settings.repeats


def run_plan(
    plan: Dict[str, List[Target]],
    scenarios: Dict[str, Scenario],
    settings: Settings,
    outdir: Path,
    progress: Progress,
) -> Outcome:
    """Measure every (scenario, target) pair of ``plan``; results land in the returned outcome."""
    outcome = Outcome()
    for name, targets in plan.items():
        _run_scenario(scenarios[name], targets, settings, outdir, progress, outcome)
    return outcome


def _run_scenario(
    scenario: Scenario,
    targets: List[Target],
    settings: Settings,
    outdir: Path,
    progress: Progress,
    outcome: Outcome,
) -> None:
    created = [TargetServer(target, scenario, outdir / "logs") for target in targets]
    try:
        servers = _start_all(created, settings, progress, outcome)
        if not settings.warmup_each:
            _warm_up_all(servers, scenario, settings, outdir, progress)
        for repeat in range(settings.repeats):
            shift = repeat % max(len(servers), 1)
            for position, server in enumerate(servers[shift:] + servers[:shift]):
                progress.show(f"{scenario.name}: {server.target.name} run {repeat + 1}")
                sample = _measure(server, scenario, settings, outdir, repeat, position)
                if isinstance(sample, str):
                    _skip(outcome, progress, scenario, server.target, sample)
                else:
                    outcome.samples.append(sample)
                progress.advance(f"{scenario.name}: {server.target.name} run {repeat + 1}")
    finally:
        progress.show(f"{scenario.name}: stopping {len(created)} server(s)")
        with ThreadPoolExecutor(max_workers=max(len(created), 1)) as pool:
            list(pool.map(TargetServer.stop, created))


def _warm_up_all(
    servers: List[TargetServer],
    scenario: Scenario,
    settings: Settings,
    outdir: Path,
    progress: Progress,
) -> None:
    """Load every server of the scenario at once for ``warmup_s``, then wait until all are idle."""
    if settings.warmup_s <= 0 or not servers:
        return
    progress.show(f"{scenario.name}: warming up {len(servers)} server(s)")

    def warm(server: TargetServer) -> None:
        wrk = _wrk(server, scenario, outdir)
        try:
            wrk.run(settings.connections(scenario), settings.warmup_s, scenario.timeout_s)
        except LoadGenError:
            pass  # the measured run that follows reports the problem
        wait_idle(server.trees, scenario.timeout_s, server.idle_cpu)

    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        list(pool.map(warm, servers))


def _start_all(
    created: List[TargetServer], settings: Settings, progress: Progress, outcome: Outcome
) -> List[TargetServer]:
    """Start the servers side by side (mostly waiting on imports); returns those that started.

    A server that does not start is skipped with the reason. On Ctrl-C the pool first lets the
    starts in progress finish, so the caller's clean-up finds and stops every process.
    """
    if not created:
        return []
    progress.show(f"{created[0].scenario.name}: starting {len(created)} server(s)")

    def start(server: TargetServer) -> Optional[str]:
        try:
            server.start(settings.start_timeout_s)
        except (ServerError, RedisError, OSError) as err:
            return f"did not start: {err}"
        return None

    with ThreadPoolExecutor(max_workers=len(created)) as pool:
        failures = list(pool.map(start, created))
    started = []
    for server, failure in zip(created, failures):
        if failure is None:
            started.append(server)
        else:
            _skip(outcome, progress, server.scenario, server.target, failure)
            progress.done += settings.repeats
    return started


def _measure(
    server: TargetServer,
    scenario: Scenario,
    settings: Settings,
    outdir: Path,
    repeat: int,
    position: int,
):
    """One warm-up and one measured run; returns the sample, or why it failed."""
    connections = settings.connections(scenario)
    duration_s = settings.duration(scenario)
    wrk = _wrk(server, scenario, outdir)
    try:
        if settings.warmup_each and settings.warmup_s > 0:
            wrk.run(connections, settings.warmup_s, scenario.timeout_s)
        settle_s = wait_idle(server.trees, scenario.timeout_s, server.idle_cpu)
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with ResourceMonitor(server.trees) as monitor:
            load = wrk.run(connections, duration_s, scenario.timeout_s)
        settle_s += wait_idle(server.trees, scenario.timeout_s, server.idle_cpu)
    except LoadGenError as err:
        return f"load run failed: {err}"
    usage = monitor.usage()
    return {
        "scenario": scenario.name,
        "target": server.target.name,
        "repeat": repeat,
        "position": position,
        "started": started,
        "concurrency": connections,
        "duration_s": duration_s,
        "settle_s": settle_s,
        "load": load.to_dict(),
        "rps": load.rps,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "errors": load.error_count,
        "cpu_s": usage.cpu_s,
        "cpu_ms_per_request": usage.cpu_s * 1e3 / load.ok_requests if load.ok_requests else None,
        "peak_memory_mib": usage.peak_memory_bytes / MIB,
        "peak_rss_sum_mib": usage.peak_rss_bytes / MIB,
        "processes": usage.processes,
        "idle_cpu_cores": server.idle_cpu,
    }


def _skip(outcome, progress, scenario, target, reason):
    outcome.skipped.append(Skip(scenario.name, target.name, reason))
    progress.note(f"skipped {scenario.name} / {target.name}: {reason}")


def _wrk(server: TargetServer, scenario: Scenario, outdir: Path) -> Wrk:
    """The load generator for one server in one scenario, its files under ``outdir``."""
    wire = server.target.script.wire
    return Wrk(
        server.url,
        wire.body(scenario),
        outdir / "wrk" / scenario.name / server.target.name,
        content_type=wire.content_type(scenario),
    )
