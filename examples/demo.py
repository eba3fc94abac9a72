"""The demo: classify images with a four-stage pipeline whose tensors travel through shared memory.

Run it from the repository root (``make demo`` does)::

    python examples/demo.py

It starts ``examples/vision/pipeline.py`` (decode -> resize and normalise -> batched inference
with an UNTRAINED onnxruntime model -> top 3) as a server on a free port of 127.0.0.1 with a
64 MiB arena, and waits until it answers ``GET /``. It then sends scikit-image's sample
pictures, encoded in memory as JPEG or PNG, as request bodies: one warm-up pass, then
``ROUNDS`` passes with ``CONCURRENCY`` requests in flight so that the inference stage batches.
It prints the top 3 classes of each picture (the same in every round, whatever the batch),
the throughput and latency, the batch sizes the inference stage saw (from ``/metrics``) and the
bytes the arena carried. Finally it stops the server with SIGTERM by its PID and checks that the
server exited 0 and left no arena file in /dev/shm.

It exits 0, or 1 on any failure (then it shows the server's errors). The model is built in
memory by the server's inference worker when it starts; nothing is cached or downloaded. The
server's log goes to a temporary file, removed when the demo succeeds.
Needs the ``demo`` extra: ``pip install -e '.[demo]'`` (onnx, onnxruntime, scikit-image).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VISION = HERE / "vision"
SERVER_SCRIPT = VISION / "pipeline.py"
#: Timed passes over the sample pictures, and requests in flight during them.
ROUNDS = 10
CONCURRENCY = 16
#: Arena size: the largest object is a decoded 1411 x 1411 picture (6 MB).
SHM_SIZE = "64M"
#: The stage whose batches are shown (``<index>_<class name>``), and its largest batch.
#: The batching stage's name in the metrics: the pipeline's third Runtime, ``Inference_3``.
BATCH_STAGE = "Inference_3"
MAX_BATCH_SIZE = 8
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0
#: Errors of the server's log shown when the demo fails.
SHOWN_ERRORS = 3
#: Modules the demo needs beyond mosec's own dependencies.
NEEDS = ("PIL", "skimage", "onnx", "onnxruntime")


class DemoError(Exception):
    """Something the demo checks went wrong."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    """Status and body of ``GET url``; status 0 when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""
    except OSError:
        return 0, b""


def wait_ready(server: subprocess.Popen[bytes], url: str) -> None:
    """Poll ``GET /`` until it answers 200; fail if the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while get(url + "/")[0] != 200:
        if server.poll() is not None:
            raise DemoError(f"the server exited with code {server.returncode}")
        if time.monotonic() > deadline:
            raise DemoError(f"the server was not ready after {START_TIMEOUT_S}s")
        time.sleep(0.1)  # polling interval, not synchronisation


def classify(url: str, body: bytes) -> tuple[float, list[dict]]:
    """POST one encoded picture; returns the latency in seconds and the top classes."""
    request = urllib.request.Request(
        url + "/inference",
        data=body,
        headers={"content-type": "application/octet-stream"},
        method="POST",
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise DemoError(f"HTTP {err.code}: {err.read().decode(errors='replace')}") from err
    return time.perf_counter() - start, answer["top"]


def send(url: str, images: list, passes: int) -> tuple[float, list[tuple[int, float, list]]]:
    """Send every picture ``passes`` times, ``CONCURRENCY`` at once.

    Returns:
        The wall time in seconds, and ``(picture index, latency, top classes)`` per request.
    """
    jobs = [index for _ in range(passes) for index in range(len(images))]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(lambda index: classify(url, images[index].body), jobs))
    elapsed = time.perf_counter() - start
    return elapsed, [(index, *answer) for index, answer in zip(jobs, answers)]


def check_same(results: list[tuple[int, float, list]], names: list[str]) -> dict[int, list]:
    """The top classes of each picture, checked to be the same in every round and batch."""
    first: dict[int, list] = {}
    for index, _, top in results:
        seen = first.setdefault(index, top)
        labels_match = [c["label"] for c in seen] == [c["label"] for c in top]
        if not labels_match or any(
            abs(a["probability"] - b["probability"]) > 2e-3 for a, b in zip(seen, top)
        ):
            raise DemoError(f"{names[index]} got {top} after {seen}")
        if len(top) != 3:
            raise DemoError(f"expected 3 classes, got {top}")
    return first


def metric_samples(text: str, suffix: str) -> list[tuple[dict[str, str], float]]:
    """Samples of the metric whose name ends in ``suffix``, whatever the namespace."""
    samples = []
    for match in re.finditer(rf"^\w*{suffix}(?:\{{(.*)\}})? (\S+)$", text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        samples.append((labels, float(match.group(2))))
    return samples


def batch_sizes(text: str, stage: str) -> str:
    """The batch size histogram of ``stage`` as ``1: n, 2: n, 3-4: n, 5-8: n; ...``."""

    def of_stage(suffix: str) -> list[tuple[dict[str, str], float]]:
        return [s for s in metric_samples(text, suffix) if s[0].get("stage") == stage]

    # One series per worker of the stage: summed bucket by bucket.
    cumulative_by_bound: dict[float, float] = {}
    for labels, count in of_stage("_batch_size_bucket"):
        if labels["le"] != "+Inf":
            bound = float(labels["le"])
            cumulative_by_bound[bound] = cumulative_by_bound.get(bound, 0.0) + count
    buckets = sorted(cumulative_by_bound.items())
    parts, below, low = [], 0.0, 1
    for bound, cumulative in buckets:
        if bound > MAX_BATCH_SIZE:
            break
        high = int(bound)
        parts.append(f"{low if low == high else f'{low}-{high}'}: {int(cumulative - below)}")
        below, low = cumulative, high + 1
    items = sum(value for _, value in of_stage("_batch_size_sum"))
    batches = sum(value for _, value in of_stage("_batch_size_count"))
    mean = items / batches if batches else 0.0
    return f"{', '.join(parts)}; {int(items)} items in {int(batches)} batches, mean {mean:.1f}"


def mib(size: float) -> str:
    """Bytes as MiB with one decimal."""
    return f"{size / 2**20:.1f} MiB"


def report_metrics(url: str) -> None:
    """Print the inference stage's batch sizes and the arena's traffic, from ``/metrics``."""
    status, body = get(url + "/metrics")
    if status != 200:
        raise DemoError(f"GET /metrics answered {status}")
    text = body.decode()
    print(f"batch sizes at {BATCH_STAGE} (from /metrics): {batch_sizes(text, BATCH_STAGE)}")
    carried = {
        labels.get("carried"): value for labels, value in metric_samples(text, "_ipc_bytes_total")
    }
    used = sum(value for _, value in metric_samples(text, "_shm_used_bytes"))
    print(
        f"arena: {mib(carried.get('reference', 0))} passed between stages by reference, "
        f"{carried.get('inline', 0) / 1024:.1f} KiB inline; {mib(used)} in use after the run"
    )
    if not carried.get("reference"):
        raise DemoError("no tensor went through the arena")


def arena_files(pid: int) -> list[Path]:
    """The server's arena files in /dev/shm (named ``mosec-arena-<pid>-<id>``)."""
    return sorted(Path("/dev/shm").glob(f"mosec-arena-{pid}-*"))


def stop(server: subprocess.Popen[bytes]) -> int:
    """SIGTERM the server by PID and wait for its exit code (SIGKILL if it hangs)."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def server_errors(log_path: Path) -> list[str]:
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
    return list(dict.fromkeys(errors))[:SHOWN_ERRORS] or ["none logged"]


def server_command(port: int) -> list[str]:
    """The command line of the pipeline server."""
    return [
        *(sys.executable, str(SERVER_SCRIPT), "--address", "127.0.0.1", "--port", str(port)),
        *("--shm-size", SHM_SIZE, "--timeout", str(int(REQUEST_TIMEOUT_S * 1000))),
    ]


def server_env() -> dict[str, str]:
    """The server's environment: ours, with the checkout importable (mosec may not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    return env


def run(url: str, server: subprocess.Popen[bytes], images: list) -> None:
    """Everything between the server start and its stop."""
    started = time.perf_counter()
    wait_ready(server, url)
    print(f"server ready after {time.perf_counter() - started:.1f} s", flush=True)
    print("arena files:", ", ".join(str(path) for path in arena_files(server.pid)) or "none")
    send(url, images, 1)  # warm-up: the first request of each worker pays one-off costs
    elapsed, results = send(url, images, ROUNDS)
    tops = check_same(results, [image.filename for image in images])
    print(
        f"predictions of the untrained model (the same in all {ROUNDS} rounds, whatever the batch):"
    )
    width = max(len(image.filename) for image in images)
    for index, image in enumerate(images):
        size = f"{image.size[0]}x{image.size[1]} {image.mode}"
        classes = ", ".join(f"{c['label']} {c['probability']:.1%}" for c in tops[index])
        print(f"  {image.filename:<{width}}  {size:<14} -> {classes}")
    latencies = sorted(latency for _, latency, _ in results)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    rate = len(results) / elapsed
    p50 = statistics.median(latencies) * 1000
    print(
        f"throughput: {len(results)} requests in {elapsed:.2f} s = {rate:.1f} req/s"
        f" ({CONCURRENCY} in flight); latency p50 {p50:.0f} ms, p95 {p95 * 1000:.0f} ms"
    )
    report_metrics(url)


def main() -> int:
    """Run the demo; returns the exit code."""
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        print(f"the demo needs {', '.join(missing)}: pip install -e '.[demo]'", file=sys.stderr)
        return 1
    sys.path.insert(0, str(VISION))
    from images import sample_images

    images = sample_images()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The server's JSON log lines go to a file, so the results are easy to read here.
    log = tempfile.NamedTemporaryFile(prefix="mosec_demo_", suffix=".log", delete=False)
    print(f"{len(images)} sample pictures from scikit-image, encoded in memory as JPEG and PNG")
    print("model: an UNTRAINED 3-layer CNN built in code, run by onnxruntime (arbitrary labels)")
    print(f"starting vision/pipeline.py on {url} (log, kept on failure: {log.name})", flush=True)
    server = subprocess.Popen(
        server_command(port),
        env=server_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    failed = False
    try:
        run(url, server, images)
    except Exception as err:
        print(f"demo failed: {err}; the server's log is in {log.name}", file=sys.stderr)
        failed = True
    finally:
        code = stop(server)
    left = arena_files(server.pid)
    print(f"server stopped with exit code {code}; arena files left: {len(left)}", flush=True)
    if not failed and (code != 0 or left):
        print(f"demo failed: the server did not stop cleanly; see {log.name}", file=sys.stderr)
        failed = True
    if failed:
        print("the server's errors:", *server_errors(Path(log.name)), sep="\n  ", file=sys.stderr)
        return 1
    os.unlink(log.name)  # kept only when something went wrong
    return 0


if __name__ == "__main__":
    sys.exit(main())
