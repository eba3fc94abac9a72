"""Command line: ``python -m benchmarks run | list | setup``.

``run`` measures the chosen scenarios and targets and writes ``benchmarks/results/<timestamp>/``:
``results.json`` (every sample, the summaries, the skipped pairs, machine and versions),
``table.md`` (also printed on stdout), one PNG per scenario, and the servers' logs.
"""

import argparse
import datetime
import json
import os
import signal
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from benchmarks import catalog, scenarios
from benchmarks.machine import describe
from benchmarks.progress import Progress
from benchmarks.report import markdown, summarize, to_json
from benchmarks.runner import Settings, run_plan, steps
from benchmarks.runtimes import HERE, RUNTIMES
from benchmarks.selection import select

RUN_ID = "BENCH_RUN_ID"  # environment variable that marks every process of one run
QUICK = Settings(duration_s=2, warmup_s=1, repeats=1)
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
        help="short pass over everything: 1 repeat of 2 s after 1 s warm-up",
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
    setup = sub.add_parser("setup", help="create the virtual environments ahead of time")
    setup.add_argument("--runtimes", default="upstream,litserve", help="comma list")
    return top


def settings_from(args: argparse.Namespace) -> Settings:
    """The run settings: ``--quick`` or full defaults, each overridden by an explicit option."""
    base = QUICK if args.quick else FULL
    return Settings(
        duration_s=args.duration if args.duration is not None else base.duration_s,
        warmup_s=args.warmup if args.warmup is not None else base.warmup_s,
        repeats=args.repeats if args.repeats is not None else base.repeats,
        concurrency=args.concurrency,
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
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    probes = probe_runtimes([t.runtime for t in chosen_t], log)
    plan, skipped = select(chosen_s, chosen_t, probes, explicit)
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
        "machine": describe(),
        "runtimes": probes,
    }
    progress = Progress(steps(plan, settings))
    by_name = {s.name: s for s in chosen_s}
    try:
        outcome = run_plan(plan, by_name, settings, outdir, progress)
    finally:
        progress.close()
    summaries = [summarize(outcome.samples, name, args.baseline) for name in plan]
    summaries = [s for s in summaries if s["rows"]]
    tables = []
    for summary in summaries:
        scenario = by_name[summary["scenario"]]
        tables.append(markdown(summary, scenario, _load_note(settings, scenario)))
        if not args.no_plots:
            _plot(summary, scenario, outdir, log)
    skipped += outcome.skipped
    text = _document(meta, tables, skipped)
    (outdir / "table.md").write_text(text)
    result = {
        "meta": meta,
        "samples": outcome.samples,
        "summaries": [to_json(s) for s in summaries],
        "skipped": [s.to_dict() for s in skipped],
    }
    (outdir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
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


def _load_note(settings: Settings, scenario) -> str:
    """How a scenario was loaded: ``16 connections, 3 × 10 s after 2 s warm-up``."""
    return (
        f"{settings.connections(scenario)} connections, {settings.repeats} × "
        f"{settings.duration(scenario)} s after {settings.warmup_s} s warm-up"
    )


def _plot(summary, scenario, outdir: Path, log) -> None:
    try:
        from benchmarks.plots import plot_scenario
    except ImportError as err:  # pragma: no cover (install.sh installs matplotlib)
        log(f"no plots: {err}")
        return
    plot_scenario(
        summary, f"{scenario.name}: {scenario.description}", outdir / f"{scenario.name}.png"
    )


def _version(runtime: str, probe: dict) -> str:
    """What a runtime runs, in a few words: ``upstream: mosec 0.9.8 (python 3.11.7)``."""
    if "error" in probe:
        return f"{runtime}: unavailable"
    package = {"litserve": "litserve", "stub": None}.get(runtime, "mosec")
    if package and probe.get(package):
        return f"{runtime}: {package} {probe[package]} (python {probe.get('python')})"
    return f"{runtime}: python {probe.get('python')}"


def _document(meta, tables: List[str], skipped) -> str:
    """The Markdown report: machine line, one table per scenario, the skipped pairs."""
    machine = meta["machine"]
    versions = "; ".join(_version(name, probe) for name, probe in meta["runtimes"].items())
    lines = [
        f"## Benchmark run {meta['started']}",
        "",
        f"`{meta['command']}` on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), {machine['os']}, {machine['wrk']}, commit "
        f"{machine['git_commit']}{' (dirty)' if machine['git_dirty'] else ''}; {versions}.",
        "",
        *tables,
    ]
    if skipped:
        lines += ["### Skipped", ""]
        lines += [f"- {s.scenario} / {s.target}: {s.reason}" for s in skipped]
    return "\n".join(lines) + "\n"


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
        return command_setup(args)
    except KeyboardInterrupt:
        print("\ninterrupted: every process the run started has been stopped", file=sys.stderr)
        return 130
