"""Start-up time: from spawning a server to its first ``GET /`` that answers 200, ours vs upstream.

Each run starts one server script (``targets/startup_*.py``, upstream-style, unchanged between the
two packages) under one runtime, on a free port of 127.0.0.1, and polls ``GET /`` every
``--poll-ms`` (a refused connection or any other status is "not ready") from just before the
process is spawned until the first 200; then it polls the route with a real request the same way,
for the time to the first answered inference. The server is then stopped by PID (SIGTERM to the
leader, then wait; its process group only if that fails). Runs alternate between the runtimes,
with the order rotated every repeat, so a slow moment of the machine hits both.

Run from the repository root::

    python -m benchmarks.startup                     # echo and pipeline, 7 repeats
    python -m benchmarks.startup --scripts echo --repeats 3 --server-args "--log-level debug"

It prints a Markdown table (median, min–max, ratio of the medians ours / upstream) and writes it,
the samples as JSON and every server's log to ``benchmarks/results/startup-<timestamp>/``.
"""

import argparse
import dataclasses
import datetime
import http.client
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from benchmarks.net import HOST, free_port
from benchmarks.processes import ProcessTree
from benchmarks.runtimes import HERE, RUNTIMES, TARGETS_DIR
from benchmarks.stats import Spread, ratio, spread


@dataclasses.dataclass(frozen=True)
class Script:
    """A server script of the start-up benchmark.

    Attributes:
        name: short name used on the command line and in the table.
        file: the script in ``targets/``.
        route: the inference route.
        body: a request body the route answers with 200.
    """

    name: str
    file: str
    route: str = "/inference"
    body: bytes = b'{"time": 0}'


SCRIPTS: Dict[str, Script] = {
    script.name: script
    for script in (
        Script("echo", "startup_echo.py"),
        Script("pipeline", "startup_pipeline.py"),
    )
}
MEASURES = (("root_s", "GET /"), ("inference_s", "first inference"))


class StartupError(RuntimeError):
    """A server exited or did not answer 200 in time."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One start of one script under one runtime, in seconds since the spawn."""

    script: str
    runtime: str
    root_s: float
    inference_s: float
    repeat: int = 0


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    top = argparse.ArgumentParser(
        prog="python -m benchmarks.startup", description=__doc__.splitlines()[0]
    )
    top.add_argument("--repeats", type=int, default=7, help="starts per script and runtime")
    top.add_argument("--scripts", default="echo,pipeline", help=f"comma list of {sorted(SCRIPTS)}")
    top.add_argument("--runtimes", default="ours,upstream", help="comma list; the ratio is 1st/2nd")
    top.add_argument("--poll-ms", type=float, default=10.0, help="interval between polls")
    top.add_argument("--timeout", type=float, default=60.0, help="seconds until a start fails")
    top.add_argument("--server-args", default="", help='extra flags, e.g. "--log-level debug"')
    top.add_argument(
        "--results-dir",
        type=Path,
        default=HERE / "results",
        help="parent of the startup-<timestamp> folder (logs, table, JSON)",
    )
    return top


def _names(text: str, known: Sequence[str], what: str) -> List[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SystemExit(f"unknown {what}: {', '.join(unknown) or '(none)'}; known: {known}")
    return names


def options(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check the command line; the lists come back split and validated.

    Raises:
        SystemExit: an unknown script or runtime, or a non-positive number.
    """
    args = parser().parse_args(argv)
    args.scripts = _names(args.scripts, sorted(SCRIPTS), "script")
    args.runtimes = _names(args.runtimes, sorted(RUNTIMES), "runtime")
    if args.repeats < 1 or args.poll_ms <= 0 or args.timeout <= 0:
        raise SystemExit("--repeats, --poll-ms and --timeout must be positive")
    args.server_args = shlex.split(args.server_args)
    return args


def schedule(scripts: Sequence[str], runtimes: Sequence[str], repeats: int) -> List[tuple]:
    """``(repeat, script, runtime)`` in run order: runtimes alternate, rotated every repeat."""
    order = []
    for repeat in range(repeats):
        shift = repeat % len(runtimes)
        turn = list(runtimes[shift:]) + list(runtimes[:shift])
        order += [(repeat, script, runtime) for script in scripts for runtime in turn]
    return order


def _status(method: str, port: int, path: str, body: Optional[bytes], timeout_s: float) -> int:
    """The HTTP status of one request on a new connection, or 0 when it could not be made."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0  # refused, reset or timed out: not ready
    finally:
        conn.close()


def _poll(tree: ProcessTree, port: int, request: tuple, poll_s: float, deadline: float) -> float:
    """Poll until ``request`` answers 200; returns the ``perf_counter`` of that answer.

    Raises:
        StartupError: the server exited, or ``deadline`` passed.
    """
    while True:
        started = time.perf_counter()
        status = _status(request[0], port, request[1], request[2], timeout_s=1.0)
        if status == 200:
            return time.perf_counter()
        code = tree.exit_code()
        if code is not None:
            raise StartupError(f"the server exited with {code}: {tree.log_tail()}")
        if started > deadline:
            raise StartupError(f"no 200 on {request[1]} in time (last status {status})")
        time.sleep(max(0.0, poll_s - (time.perf_counter() - started)))


def start_once(
    script: Script,
    runtime: str,
    log_path: Path,
    poll_s: float = 0.01,
    timeout_s: float = 60.0,
    server_args: Sequence[str] = (),
) -> Sample:
    """Spawn ``script`` under ``runtime``, time its first 200s, stop it by PID.

    Raises:
        StartupError: it exited or did not get ready within ``timeout_s``.
    """
    port = free_port()
    python = RUNTIMES[runtime].python
    argv = [str(python), str(TARGETS_DIR / script.file), "--address", HOST, "--port", str(port)]
    env = RUNTIMES[runtime].env()
    tree = ProcessTree([*argv, *server_args], log_path, env=env, cwd=TARGETS_DIR)
    spawned = time.perf_counter()
    tree.start()
    try:
        deadline = spawned + timeout_s
        root = _poll(tree, port, ("GET", "/", None), poll_s, deadline)
        inference = _poll(tree, port, ("POST", script.route, script.body), poll_s, deadline)
    finally:
        tree.stop()
    return Sample(script.name, runtime, root - spawned, inference - spawned)


def summarize(samples: Sequence[Sample], runtimes: Sequence[str]) -> List[dict]:
    """One row per script and measure: each runtime's spread, and the first/second median ratio."""
    rows = []
    for script in dict.fromkeys(sample.script for sample in samples):
        for field, label in MEASURES:
            spreads: Dict[str, Optional[Spread]] = {
                runtime: spread(
                    getattr(s, field) for s in samples if (s.script, s.runtime) == (script, runtime)
                )
                for runtime in runtimes
            }
            first, second = (spreads.get(name) for name in (list(runtimes) + [""])[:2])
            quotient = ratio(first.median, second.median) if first and second else None
            rows.append({"script": script, "measure": label, "spreads": spreads, "ratio": quotient})
    return rows


def _ms(value: Optional[Spread]) -> str:
    if value is None:
        return "–"
    return f"{value.median * 1e3:.0f} ({value.low * 1e3:.0f}–{value.high * 1e3:.0f})"


def markdown(rows: Sequence[dict], runtimes: Sequence[str], repeats: int) -> str:
    """The report: milliseconds from spawn to the first 200, median (min–max), and the ratio."""
    pair = "/".join(runtimes[:2]) if len(runtimes) > 1 else "ratio"
    header = ["script", "first 200 on", *(f"{name} ms" for name in runtimes), pair]
    lines = [
        f"Start-up: spawn → first 200, median (min–max) of {repeats} alternating runs",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join([" --- "] * 2 + [" ---: "] * (len(header) - 2)) + "|",
    ]
    for row in rows:
        quotient = "–" if row["ratio"] is None else f"{row['ratio']:.2f}×"
        cells = [row["script"], row["measure"], *(_ms(row["spreads"][r]) for r in runtimes)]
        lines.append("| " + " | ".join([*cells, quotient]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure, print the table, write the folder; returns the exit code."""
    args = options(argv)
    for name in args.runtimes:
        RUNTIMES[name].ensure()
    folder = args.results_dir / datetime.datetime.now().strftime("startup-%Y%m%d-%H%M%S")
    samples: List[Sample] = []
    plan = schedule(args.scripts, args.runtimes, args.repeats)
    for count, (repeat, name, runtime) in enumerate(plan, 1):
        log = folder / "logs" / f"{name}.{runtime}.{repeat}.log"
        try:
            sample = start_once(
                SCRIPTS[name], runtime, log, args.poll_ms / 1e3, args.timeout, args.server_args
            )
        except StartupError as err:
            print(f"{name} on {runtime} failed: {err}", file=sys.stderr)
            return 1
        samples.append(dataclasses.replace(sample, repeat=repeat))
        print(
            f"[{count}/{len(plan)}] {name:<8} {runtime:<8} GET / {sample.root_s * 1e3:6.0f} ms"
            f"  inference {sample.inference_s * 1e3:6.0f} ms",
            file=sys.stderr,
        )
    table = markdown(summarize(samples, args.runtimes), args.runtimes, args.repeats)
    print(table)
    (folder / "table.md").write_text(table)
    rows = [dataclasses.asdict(sample) for sample in samples]
    record = {"argv": list(argv if argv is not None else sys.argv[1:]), "samples": rows}
    (folder / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"written to {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
