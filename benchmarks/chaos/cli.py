"""The ``chaos`` subcommand: its options, and running and writing a chaos run."""

import argparse
import datetime
import sys
from pathlib import Path

from benchmarks.chaos import report
from benchmarks.chaos.faults import FAULTS
from benchmarks.chaos.run import FULL, SHORT, Settings, run
from benchmarks.machine import describe
from benchmarks.runtimes import HERE, RUNTIMES

TARGETS = ("ours", "upstream")


def add_parser(sub) -> None:
    """Add ``chaos`` to the subcommands."""
    chaos = sub.add_parser(
        "chaos",
        help="faults under steady load: kill -9, disconnects, a stuck worker, a dead store daemon",
        description=(
            "Each fault runs against a fresh server under a steady mix of valid, invalid and slow "
            "requests with random client timeouts; the table counts statuses and hangs, what "
            "leaked (arena bytes and objects, fds), what outlived a graceful stop, and whether "
            "the server recovered. Writes benchmarks/RELIABILITY.md."
        ),
    )
    chaos.add_argument(
        "--short",
        action="store_true",
        help=f"{SHORT.duration_s:g} s per fault, {SHORT.recovery_s:g} s to recover "
        f"(default: {FULL.duration_s:g} s and {FULL.recovery_s:g} s)",
    )
    chaos.add_argument("--duration", type=float, help="seconds of each fault's window")
    chaos.add_argument("--recovery", type=float, help="seconds a recovery may take")
    chaos.add_argument(
        "--concurrency", type=int, default=FULL.concurrency, help="clients of the steady load"
    )
    chaos.add_argument(
        "--targets",
        "--target",
        default="ours",
        help="comma list of ours, upstream (mosec 0.9.8 in benchmarks/.venv-upstream); "
        "default: ours",
    )
    chaos.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma list (default: {','.join(FAULTS)})"
    )
    chaos.add_argument("--seed", type=int, default=FULL.seed, help="random seed (default 0)")
    chaos.add_argument(
        "--output",
        type=Path,
        default=HERE / "RELIABILITY.md",
        help="the page written (default benchmarks/RELIABILITY.md)",
    )
    chaos.add_argument("--no-output", action="store_true", help="print the table only")
    chaos.add_argument(
        "--workdir",
        type=Path,
        default=HERE / "results",
        help="parent of the chaos-<timestamp> folder with the servers' logs",
    )


def _names(text: str, known, what: str):
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return names


def _machine() -> str:
    """``2 cores (Intel ...), Linux 6.1, commit abc1234``."""
    facts = describe()
    return (
        f"{facts['cores']} cores ({facts['cpu']}), {facts['os']}, kernel {facts['kernel']}, "
        f"Python {facts['python']}, commit {facts['git_commit']}"
        + (" with local changes" if facts["git_dirty"] else "")
    )


def command(args: argparse.Namespace) -> int:
    """Run the chosen faults against the chosen targets; print and write the table."""
    base = SHORT if args.short else FULL
    settings = Settings(
        duration_s=args.duration if args.duration is not None else base.duration_s,
        recovery_s=args.recovery if args.recovery is not None else base.recovery_s,
        concurrency=args.concurrency,
        seed=args.seed,
    )
    faults = _names(args.faults, FAULTS, "fault(s)")
    targets = _names(args.targets, TARGETS, "target(s)")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    for target in targets:
        RUNTIMES[target].ensure(log)
    now = datetime.datetime.now()
    workdir = args.workdir / f"chaos-{now.strftime('%Y%m%d-%H%M%S')}"
    rows = run(faults, targets, settings, workdir, log)
    print(report.table(rows))
    if not args.no_output:
        meta = {
            "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
            "started": now.astimezone().isoformat(timespec="seconds"),
            "machine": _machine(),
        }
        args.output.write_text(report.page(rows, settings, meta))
        log(f"wrote {args.output}")
    log(f"logs in {workdir}")
    return 1 if any(row.error for row in rows) else 0
