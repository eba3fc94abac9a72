"""Which (scenario, target) pairs a run measures, and why the others are skipped.

A pair is skipped, with the reason recorded and printed, when the scenario cannot run yet, the
target's script cannot express it, its IPC mixin cannot carry the scenario's payload, its runtime
or mixin is not there (our extension not built, ``mosec.mixin.ShmIPCMixin`` not written yet, a
virtual environment that failed to install), or it would only repeat another target (a non-default
IPC mixin on a one-stage scenario, unless that target was asked for by name).
"""

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks.catalog import Target
from benchmarks.redis_daemon import redis_binary
from benchmarks.runtimes import RUNTIMES
from benchmarks.scenarios import Scenario

Probe = Dict[str, Any]


@dataclass(frozen=True)
class Skip:
    """A pair (or a whole scenario or target, with ``*``) left out, and why."""

    scenario: str
    target: str
    reason: str

    def to_dict(self) -> Dict[str, str]:
        """A JSON-ready dict."""
        return asdict(self)


def unavailable(
    target: Target, probe: Probe, has_redis: Optional[Callable[[], bool]] = None
) -> Optional[str]:
    """Why ``target`` cannot run on this machine, judged from its runtime's probe; else ``None``."""
    runtime = RUNTIMES[target.runtime]
    if "error" in probe:
        return f"{runtime.label} is not available: {probe['error']}"
    if target.runtime == "ours" and not probe.get("engine"):
        why = probe.get("engine_error", "mosec._engine does not import")
        return f"our extension is not built ({why}); run `make build`"
    package = runtime.package
    if package is not None and package != "mosec" and not probe.get(package):
        return f"{package} does not import in its environment"
    ipc = target.ipc
    if ipc is not None and ipc.mixin is not None and ipc.mixin not in probe.get("mixins", []):
        return f"mosec.mixin.{ipc.mixin} does not exist yet in {runtime.label}"
    if ipc is not None and ipc.daemon == "redis":
        if not (has_redis() if has_redis is not None else redis_binary() is not None):
            return "redis-server is not installed (run benchmarks/install.sh)"
    return None


def select(
    scenarios: Sequence[Scenario],
    targets: Sequence[Target],
    probes: Dict[str, Probe],
    explicit: bool,
    has_redis: Optional[Callable[[], bool]] = None,
) -> Tuple[Dict[str, List[Target]], List[Skip]]:
    """Pick the pairs to measure.

    Args:
        scenarios: the scenarios asked for.
        targets: the targets asked for.
        probes: each runtime's probe (``Runtime.probe``), by runtime name.
        explicit: the targets were named on the command line (keep redundant ones then).
        has_redis: whether redis-server exists (for tests); looked up on PATH by default.

    Returns:
        The targets to run per scenario name (in the given order), and the skipped pairs.
    """
    skipped: List[Skip] = []
    usable = []
    for target in targets:
        reason = unavailable(target, probes.get(target.runtime, {"error": "not probed"}), has_redis)
        if reason is None:
            usable.append(target)
        else:
            skipped.append(Skip("*", target.name, reason))
    plan: Dict[str, List[Target]] = {}
    for scenario in scenarios:
        if scenario.missing is not None:
            skipped.append(Skip(scenario.name, "*", scenario.missing))
            continue
        chosen = []
        for target in usable:
            reason = target.unsupported(scenario)
            if reason is None and not explicit:
                reason = target.redundant(scenario)
            if reason is None:
                chosen.append(target)
            else:
                skipped.append(Skip(scenario.name, target.name, reason))
        if chosen:
            plan[scenario.name] = chosen
    return plan, skipped
