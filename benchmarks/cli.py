"""Command line: ``python -m benchmarks run | list | publish | setup | chaos``.

``run`` measures the chosen scenarios and targets and writes ``benchmarks/results/<timestamp>/``:
``results.json`` (every sample, the summaries, the skipped pairs, machine and versions),
``table.md`` (also printed on stdout), one PNG per scenario, and the servers' logs. ``publish``
turns such a folder into ``benchmarks/RESULTS.md`` with its plots in ``benchmarks/figures``.
``chaos`` runs the faults of ``benchmarks/chaos`` and writes ``benchmarks/RELIABILITY.md``.
"""

import argparse
import datetime
import json
import os
import signal
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from benchmarks import catalog, document, scenarios
from benchmarks.chaos import cli as chaos_cli
from benchmarks.machine import describe
from benchmarks.progress import Progress
from benchmarks.runner import Settings, run_plan, steps
from benchmarks.runtimes import HERE, RUNTIMES
from benchmarks.selection import Skip, select

RUN_ID = "BENCH_RUN_ID"  # environment variable that marks every process of one run
QUICK = Settings(duration_s=2, warmup_s=1, repeats=1, warmup_each=False)
FULL = Settings(duration_s=10, warmup_s=2, repeats=3)


def _names(values: Optional[List[str]]) -> List[str]:
    """Flatten repeated, comma-separated options into a list of names."""
    names: List[str] = []
    for value in values or []:
        names += [part.strip() for part in value.split(",") if part.strip()]
    return names


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    top = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure scenarios against targets")
    run.add_argument(
        "--scenario",
        "--scenarios",
        action="append",
        dest="scenario",
        help="comma list of scenarios (default: all)",
    )
    run.add_argument(
        "--targets",
        "--target",
        action="append",
        dest="targets",
        help="comma list of targets (default: all but the hidden stub)",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="short pass over everything: 1 run of 2 s each, one shared 1 s warm-up",
    )
    run.add_argument("--duration", type=int, help="seconds per measured run (default 10)")
    run.add_argument("--warmup", type=int, help="seconds of warm-up before each run (default 2)")
    run.add_argument("--repeats", type=int, help="measured runs per target (default 3)")
    run.add_argument("--concurrency", type=int, help="connections (default: per scenario)")
    run.add_argument("--baseline", help="target the ratios compare to (default upstream-pickle)")
    run.add_argument(
        "--results-dir",
        type=Path,
        default=HERE / "results",
        help="where the timestamped result folder goes",
    )
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    sub.add_parser("list", help="show scenarios, targets and what is available here")
    publish = sub.add_parser("publish", help="write benchmarks/RESULTS.md from a saved run")
    publish.add_argument("run_dir", type=Path, help="a folder under benchmarks/results")
    publish.add_argument(
        "--flows",
        type=Path,
        help="a table written by `python -m benchmarks.flows --output FILE`, appended as a section",
    )
    publish.add_argument(
        "--notes",
        type=Path,
        help="Markdown read from the run (where a peer beats us, and why), put before the tables",
    )
    setup = sub.add_parser("setup", help="create the virtual environments ahead of time")
    setup.add_argument(
        "--runtimes",
        default="upstream,litserve,ray,pytriton,bentoml,mpservice",
        help="comma list",
    )
    chaos_cli.add_parser(sub)
    return top


def settings_from(args: argparse.Namespace) -> Settings:
    """The run settings: ``--quick`` or full defaults, each overridden by an explicit option."""
    base = QUICK if args.quick else FULL
    return Settings(
        duration_s=args.duration if args.duration is not None else base.duration_s,
        warmup_s=args.warmup if args.warmup is not None else base.warmup_s,
        repeats=args.repeats if args.repeats is not None else base.repeats,
        concurrency=args.concurrency,
        warmup_each=base.warmup_each,
    )


def choose(args: argparse.Namespace):
    """The scenarios and targets named on the command line (all by default).

    Raises:
        SystemExit: an unknown name, with the known ones listed.
    """
    known_s = {s.name: s for s in scenarios.SCENARIOS}
    names = _names(args.scenario) or list(known_s)
    unknown = [n for n in names if n not in known_s]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(known_s)}")
    targets = _names(args.targets)
    unknown = [n for n in targets if n not in catalog.TARGETS]
    if unknown:
        raise SystemExit(f"unknown target(s) {unknown}; known: {', '.join(catalog.TARGETS)}")
    chosen = [catalog.TARGETS[n] for n in targets] or [
        t for t in catalog.TARGETS.values() if not t.hidden
    ]
    return [known_s[n] for n in names], chosen, bool(targets)


def quick_leaves_out(targets: Sequence[catalog.Target], quick: bool, explicit: bool):
    """The targets to run, and a ``Skip`` for each peer that ``--quick`` leaves out.

    ``--quick`` (what CI runs) never installs the peers: they run in the full run, or when named.
    """
    if not quick or explicit:
        return list(targets), []
    reason = "a peer: the full run measures it (--quick runs it only when named in --targets)"
    kept = [t for t in targets if not t.full_only]
    return kept, [Skip("*", t.name, reason) for t in targets if t.full_only]


def probe_runtimes(names: Sequence[str], log) -> Dict[str, dict]:
    """Install (once) and probe each runtime that a chosen target needs."""
    probes = {}
    for name in dict.fromkeys(names):
        runtime = RUNTIMES[name]
        try:
            runtime.ensure(log)
        except Exception as err:  # noqa: BLE001 (any failure: the target is skipped, with why)
            probes[name] = {"error": f"installing its environment failed: {err}"}
            continue
        probes[name] = runtime.probe()
    return probes


def command_run(args: argparse.Namespace) -> int:
    """Measure, then write and print the results."""
    settings = settings_from(args)
    chosen_s, chosen_t, explicit = choose(args)
    chosen_t, left_out = quick_leaves_out(chosen_t, args.quick, explicit)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    probes = probe_runtimes([t.runtime for t in chosen_t], log)
    plan, skipped = select(chosen_s, chosen_t, probes, explicit)
    skipped = left_out + skipped
    for skip in skipped:
        log(f"skip {skip.scenario} / {skip.target}: {skip.reason}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.environ.setdefault(RUN_ID, stamp)  # inherited by every process the run starts
    outdir = _fresh_dir(args.results_dir, stamp)
    meta = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "run_id": os.environ[RUN_ID],
        "settings": vars(settings),
        "baseline": args.baseline,
        "machine": describe(),
        "runtimes": probes,
    }
    progress = Progress(steps(plan, settings))
    try:
        outcome = run_plan(plan, {s.name: s for s in chosen_s}, settings, outdir, progress)
    finally:
        progress.close()
    result = {
        "meta": meta,
        "samples": outcome.samples,
        "skipped": [s.to_dict() for s in skipped + outcome.skipped],
    }
    print(document.write(result, outdir, plots=not args.no_plots, log=log))
    log(f"results in {outdir}")
    return 0 if outcome.samples else 1


def _fresh_dir(parent: Path, stamp: str) -> Path:
    """A new directory ``parent/stamp`` (``stamp-2``, ``-3`` ... when runs start in one second)."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise SystemExit(f"no free result directory under {parent}")


def command_list() -> int:
    """Print scenarios and targets, with what is available on this machine."""
    print("scenarios:")
    for s in scenarios.SCENARIOS:
        print(f"  {s.name:12} {s.description}" + (f"  [not yet: {s.missing}]" if s.missing else ""))
    print("targets:")
    probes = {
        name: (r.probe() if r.installed() else {"error": "not installed (setup)"})
        for name, r in RUNTIMES.items()
    }
    from benchmarks.selection import unavailable

    for t in catalog.TARGETS.values():
        why = unavailable(t, probes[t.runtime])
        state = "ready" if why is None else why
        print(f"  {t.name:16} {t.script.file:20} {state}" + ("  (hidden)" if t.hidden else ""))
    return 0


def command_publish(args: argparse.Namespace) -> int:
    """Turn a saved run into ``benchmarks/RESULTS.md``, its plots into ``benchmarks/figures``."""
    result = json.loads((args.run_dir / "results.json").read_text())
    figures = HERE / "figures"
    for old in figures.glob("*.png"):
        old.unlink()
    document.plot_all(result, figures, log=print)
    results_md = HERE / "RESULTS.md"
    flows = args.flows.read_text() if args.flows is not None else None
    notes = args.notes.read_text() if args.notes is not None else None
    results_md.write_text(document.results_page(result, "figures", flows, notes))
    print(f"wrote {results_md.relative_to(HERE.parent)} and {figures.relative_to(HERE.parent)}/")
    return 0


def command_setup(args: argparse.Namespace) -> int:
    """Create the virtual environments of the named runtimes."""
    for name in _names([args.runtimes]):
        RUNTIMES[name].ensure()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the command; SIGTERM stops like Ctrl-C, cleaning up first."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "list":
            return command_list()
        if args.command == "publish":
            return command_publish(args)
        if args.command == "chaos":
            return chaos_cli.command(args)
        return command_setup(args)
    except KeyboardInterrupt:
        print("\ninterrupted: every process the run started has been stopped", file=sys.stderr)
        return 130
