"""The demo's side of the conversation: the server process, its HTTP answers and its metrics.

Standard library only (``urllib``), so the demo needs nothing the server does not.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Tuple

#: How long the server may take to answer ``GET /`` (model loading and warm-up included).
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class DemoError(Exception):
    """Something the demo checks went wrong."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> Tuple[int, bytes]:
    """Status and body of ``GET url``; status 0 when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""
    except OSError:
        return 0, b""


def wait_ready(server: subprocess.Popen, url: str) -> None:
    """Poll ``GET /`` until it answers 200; fail if the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while get(url + "/")[0] != 200:
        if server.poll() is not None:
            raise DemoError(f"the server exited with code {server.returncode}")
        if time.monotonic() > deadline:
            raise DemoError(f"the server was not ready after {START_TIMEOUT_S:.0f} s")
        time.sleep(0.2)  # polling interval, not synchronisation


def read_image(url: str, body: bytes, timeout_s: float) -> Tuple[float, Dict[str, Any]]:
    """POST one image; returns the latency in seconds and the JSON answer.

    Raises:
        DemoError: the server answered something other than 200.
    """
    request = urllib.request.Request(
        url + "/inference",
        data=body,
        headers={"content-type": "application/octet-stream"},
        method="POST",
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise DemoError(f"HTTP {err.code}: {err.read().decode(errors='replace')}") from err
    return time.perf_counter() - start, answer


def metric_samples(text: str, suffix: str) -> List[Tuple[Dict[str, str], float]]:
    """Samples of the metric whose name ends in ``suffix``, whatever the namespace."""
    samples = []
    for match in re.finditer(rf"^\w*{suffix}(?:\{{(.*)\}})? (\S+)$", text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        samples.append((labels, float(match.group(2))))
    return samples


def batch_sizes(text: str, stage: str) -> str:
    """A stage's batch-size histogram, as ``1: n, 2: n, 3-4: n; k in m batches, mean x``.

    Buckets past the largest batch seen are left out.

    Args:
        text: the ``/metrics`` page.
        stage: the stage's label, ``<WorkerClass>_<n>``.
    """

    def of_stage(suffix: str) -> List[Tuple[Dict[str, str], float]]:
        return [s for s in metric_samples(text, suffix) if s[0].get("stage") == stage]

    # One series per worker of the stage: summed bucket by bucket.
    cumulative: Dict[float, float] = {}
    for labels, count in of_stage("_batch_size_bucket"):
        if labels["le"] != "+Inf":
            cumulative[float(labels["le"])] = cumulative.get(float(labels["le"]), 0.0) + count
    batches = sum(value for _, value in of_stage("_batch_size_count"))
    parts, below, low = [], 0.0, 1
    for bound, count in sorted(cumulative.items()):
        if below >= batches:
            break
        high = int(bound)
        parts.append(f"{low if low == high else f'{low}-{high}'}: {int(count - below)}")
        below, low = count, high + 1
    items = sum(value for _, value in of_stage("_batch_size_sum"))
    mean = items / batches if batches else 0.0
    return f"{', '.join(parts)}; {int(items)} requests in {int(batches)} batches, mean {mean:.1f}"


def stop(server: subprocess.Popen) -> int:
    """SIGTERM the server by PID and wait for its exit code (SIGKILL if it hangs)."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def arena_files(pid: int) -> List[Path]:
    """The server's arena files in /dev/shm (named ``mosec-arena-<pid>-<id>``)."""
    return sorted(Path("/dev/shm").glob(f"mosec-arena-{pid}-*"))


def server_errors(log_path: Path, shown: int = 3) -> List[str]:
    """Distinct ERROR records of the server's JSON log, each with its exception's last line."""
    errors = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "ERROR":
            cause = (record.get("exception") or "").strip().splitlines()[-1:]
            errors.append(": ".join([str(record.get("message")), *cause]))
    return list(dict.fromkeys(errors))[:shown] or ["none logged"]
