"""One chaos run: for each target and fault, a fresh server, a baseline, the fault, the leaks.

Each row: start the server (``target.ChaosServer``), warm it up with the client mix, take the
baseline at rest, run the fault under the mix (``faults``), let the server settle and measure
what stayed above the baseline (``leaks``), stop it with SIGTERM and count what outlived it.
The server is then stopped by PID whatever happened, so a failed row leaves nothing running.
"""

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from benchmarks.chaos.faults import FAULTS, Context, Fault, Outcome
from benchmarks.chaos.leaks import Leaks, Leftovers, rest, settle, stop_gracefully
from benchmarks.chaos.load import Tally
from benchmarks.chaos.target import ChaosServer, ServerSpec

#: Seconds of the client mix before the baseline (lazy connections and mappings get made).
WARMUP_S = 1.0
#: How long the server may take to settle back to its baseline after the load stops.
SETTLE_S = 10.0
#: How long a SIGTERM'd server may take to be gone, workers and daemons with it.
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class Settings:
    """How long and how hard.

    Attributes:
        duration_s: each fault's window.
        recovery_s: how long recovery may take before it is "no".
        concurrency: clients of the steady load.
        seed: the random seed of the run.
    """

    duration_s: float
    recovery_s: float
    concurrency: int = 8
    seed: int = 0


#: The short run's recovery bound covers a stuck worker's replacement: its forward timeout
#: (the 2 s deadline) plus the engine's 5 s grace, then a restart.
SHORT = Settings(duration_s=2.5, recovery_s=10.0)
FULL = Settings(duration_s=15.0, recovery_s=10.0)


@dataclass
class Row:
    """One fault against one target.

    Attributes:
        fault: the fault's name.
        target: ``ours`` or ``upstream``.
        applies: ``False`` when the fault does not apply to the target (the rest is empty).
        load: the steady load's outcomes.
        outcome: how the server took the fault.
        leaks: what stayed above the baseline.
        leftovers: what outlived a graceful stop.
        error: why the row could not run (the server did not start ...).
    """

    fault: str
    target: str
    applies: bool = True
    load: Tally = field(default_factory=Tally)
    outcome: Optional[Outcome] = None
    leaks: Optional[Leaks] = None
    leftovers: Optional[Leftovers] = None
    error: str = ""

    def unexpected(self) -> Dict[str, int]:
        """Statuses neither the mix nor the fault explains (load and the fault's own requests)."""
        if self.outcome is None:
            return {}
        found = self.load.unexpected(self.outcome.allowed)
        for key, count in self.outcome.own.unexpected(self.outcome.own_allowed).items():
            found[f"own {key}"] = count
        return found


def run_row(fault: Fault, target: str, settings: Settings, workdir: Path) -> Row:
    """Run one fault against one target."""
    row = Row(fault.name, target)
    store = fault.stores.get(target)
    if store is None:
        row.applies = False
        return row
    stem = f"{fault.name}.{target}"
    rowdir = workdir / stem
    rowdir.mkdir(parents=True, exist_ok=True)
    server = ChaosServer(ServerSpec(target, store), rowdir)
    rng = random.Random(f"{settings.seed}-{stem}")
    try:
        server.start(stem)
        ctx = Context(
            server,
            settings.duration_s,
            settings.recovery_s,
            rng,
            rowdir,
            settings.concurrency,
            rng.randrange(1 << 16),
        )
        with ctx.loaded():
            time.sleep(WARMUP_S)
        baseline = rest(server, SETTLE_S)
        ctx.tally = Tally()  # the warm-up is not part of the row
        row.outcome = fault.run(ctx)
        row.load = ctx.tally
        if server.tree is not None and server.tree.exit_code() is None:
            row.leaks = settle(server, baseline, SETTLE_S)
        row.leftovers = stop_gracefully(server, STOP_GRACE_S)
    except Exception as err:  # noqa: BLE001 (the row reports it; the run goes on)
        row.error = f"{type(err).__name__}: {err}"
    finally:
        server.stop()
    return row


def run(
    faults: Sequence[str],
    targets: Sequence[str],
    settings: Settings,
    workdir: Path,
    log=print,
) -> List[Row]:
    """Every fault against every target, in order; one row each."""
    rows = []
    for target in targets:
        for name in faults:
            log(f"chaos: {name} against {target} ...")
            row = run_row(FAULTS[name], target, settings, workdir)
            rows.append(row)
    return rows
