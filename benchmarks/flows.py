"""Flows: mpservice 0.16.8 in process against ``mosec.mpserver`` in process and mosec over HTTP.

Two scenarios, the same flow on every target (``targets/flow_workers.py``,
``targets/flow_http.py``): ``small``, small items through a 3-stage sequence; ``ensemble``, an
8 MiB array through a 2-member ensemble. In-process targets stream the items through
``Server.stream``; the HTTP target gets them from ``--connections`` client threads. Runs
alternate between targets, ``--repeats`` times; the table gives median items/s and the ratio to
mpservice measured in the same run.

Run from the repository root::

    python -m benchmarks.flows                 # makes benchmarks/.venv-mpservice on first use
    python -m benchmarks.flows --repeats 3 --items-small 3000 --items-ensemble 100
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

from benchmarks.net import HOST, free_port
from benchmarks.processes import ProcessTree
from benchmarks.runtimes import RUNTIMES, TARGETS_DIR

IN_PROCESS = {"mpservice": "mpservice.mpserver", "ours": "mosec.mpserver"}


def in_process(target: str, scenario: str, items: int) -> float:
    """Items per second of one in-process run."""
    runtime = RUNTIMES["mpservice" if target == "mpservice" else "ours"]
    env = {**runtime.env(), "FLOW_MPSERVER": IN_PROCESS[target]}
    out = subprocess.run(
        [str(runtime.python), "flow_inprocess.py", scenario, str(items)],
        cwd=TARGETS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["items"] / result["seconds"]


def over_http(port: int, scenario: str, items: int, connections: int) -> float:
    """Items per second of ``items`` requests from ``connections`` threads."""
    body = b'{"n": 1}'
    if scenario == "ensemble":
        sys.path.insert(0, str(TARGETS_DIR))
        import flow_workers  # the same array as in process

        body = flow_workers.array(0).tobytes()
    left = [items]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            conn.request("POST", f"/{scenario}", body)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return items / (time.perf_counter() - started)


def start_http_server(log_path: Path) -> "tuple[ProcessTree, int]":
    """Our HTTP target, ready."""
    port = free_port()
    runtime = RUNTIMES["ours"]
    script = str(TARGETS_DIR / "flow_http.py")
    tree = ProcessTree(
        [str(runtime.python), script, "--port", str(port), "--address", HOST, "--timeout", "60000"],
        log_path,
        env={**runtime.env(), "MOSEC_LOG_LEVEL": "warning"},
        cwd=TARGETS_DIR,
    ).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return tree, port
        except OSError:
            time.sleep(0.05)  # the server is still starting: poll again
    raise RuntimeError("the HTTP target did not start")


def main(argv: "List[str] | None" = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items-small", type=int, default=3000)
    parser.add_argument("--items-ensemble", type=int, default=100)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--output", type=Path, help="also write the table here (for `benchmarks publish --flows`)"
    )
    args = parser.parse_args(argv)
    RUNTIMES["mpservice"].ensure()
    counts = {"small": args.items_small, "ensemble": args.items_ensemble}
    samples: Dict[str, Dict[str, List[float]]] = {s: {} for s in counts}
    tree, port = start_http_server(Path(tempfile.mkdtemp(prefix="flows-")) / "http.log")
    try:
        for repeat in range(args.repeats):
            for scenario, items in counts.items():
                order = ["mpservice", "ours", "http"]
                order = order[repeat % 3 :] + order[: repeat % 3]
                for target in order:
                    if target == "http":
                        rate = over_http(port, scenario, items, args.connections)
                    else:
                        rate = in_process(target, scenario, items)
                    samples[scenario].setdefault(target, []).append(rate)
                    print(f"[{repeat + 1}] {scenario:8} {target:9} {rate:9.1f} items/s", flush=True)
    finally:
        tree.stop()
    lines = [
        "| scenario | mpservice items/s | mosec.mpserver in process | × | over HTTP | × |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, by_target in samples.items():
        base = statistics.median(by_target["mpservice"])
        ours = statistics.median(by_target["ours"])
        http_rate = statistics.median(by_target["http"])
        lines.append(
            f"| {scenario} | {base:.1f} | {ours:.1f} | {ours / base:.2f}× | {http_rate:.1f} | "
            f"{http_rate / base:.2f}× |"
        )
    command = " ".join(
        ["python -m benchmarks.flows", *(argv if argv is not None else sys.argv[1:])]
    )
    lines += ["", f"`{command}`: medians of {args.repeats} alternating runs."]
    print("\n" + "\n".join(lines) + f"\npid {os.getpid()}")
    if args.output is not None:
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
