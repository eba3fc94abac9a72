"""The load generator: ``wrk`` at fixed concurrency for a fixed duration, and its results.

``wrk`` (Debian's package) is a closed-loop generator: each of ``concurrency`` keep-alive
connections sends the next request as soon as the previous answer arrives. A small Lua script sets
the POST body (read from a file, so any bytes work) and, when the run ends, prints one line
``BENCH_RESULT {json}`` with the request count, the errors and latency percentiles in microseconds;
``parse_wrk_output`` reads that line. One wrk thread is used, leaving the other core to the server.
"""

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict

MARKER = "BENCH_RESULT "

LUA_TEMPLATE = """-- written by benchmarks/loadgen.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
local file = assert(io.open("{body_path}", "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},' ..
    '"latency_us":{{"p50":%.1f,"p90":%.1f,"p99":%.1f,"mean":%.1f,"max":%.1f}}}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


class LoadGenError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


@dataclass
class LoadResult:
    """One load run, as measured by the load generator.

    Attributes:
        requests: responses received (any status).
        duration_s: how long the run lasted.
        errors: counts by kind: connect, read, write, status (non-2xx/3xx answers), timeout.
        p50_ms, p90_ms, p99_ms, mean_ms, max_ms: latency of the answered requests.
        bytes_read: response bytes received.
    """

    requests: int
    duration_s: float
    errors: Dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    bytes_read: int

    @property
    def ok_requests(self) -> int:
        """Responses with a 2xx/3xx status."""
        return max(self.requests - self.errors.get("status", 0), 0)

    @property
    def rps(self) -> float:
        """Successful responses per second."""
        return self.ok_requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        """All errors together."""
        return sum(self.errors.values())

    def to_dict(self) -> Dict[str, object]:
        """A JSON-ready dict, with the derived values too."""
        data = asdict(self)
        data.update(ok_requests=self.ok_requests, rps=self.rps, error_count=self.error_count)
        return data


def parse_wrk_output(text: str) -> LoadResult:
    """Read the ``BENCH_RESULT`` line that the Lua script prints at the end of a wrk run.

    Raises:
        LoadGenError: no such line, or it is not the expected JSON.
    """
    for line in reversed(text.splitlines()):
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER) :])
                latency = data["latency_us"]
                return LoadResult(
                    requests=int(data["requests"]),
                    duration_s=data["duration_us"] / 1e6,
                    errors={k: int(v) for k, v in data["errors"].items()},
                    p50_ms=latency["p50"] / 1e3,
                    p90_ms=latency["p90"] / 1e3,
                    p99_ms=latency["p99"] / 1e3,
                    mean_ms=latency["mean"] / 1e3,
                    max_ms=latency["max"] / 1e3,
                    bytes_read=int(data["bytes"]),
                )
            except (ValueError, KeyError, TypeError) as err:
                raise LoadGenError(f"malformed wrk result line: {line!r}") from err
    raise LoadGenError(f"wrk printed no result line; its output ends with: {text[-500:]!r}")


def wrk_binary() -> str:
    """The wrk executable.

    Raises:
        LoadGenError: wrk is not installed.
    """
    binary = shutil.which("wrk")
    if binary is None:
        raise LoadGenError("wrk is not installed (run benchmarks/install.sh)")
    return binary


def wrk_version() -> str:
    """wrk's version line, or ``"missing"``."""
    try:
        proc = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True)
    except LoadGenError:
        return "missing"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0] if lines else "unknown"


class Wrk:
    """Runs wrk against one URL with one request body.

    Args:
        url: the full URL (on 127.0.0.1).
        body: the POST body.
        workdir: where the Lua script and the body file are written.
        content_type: the request's content type.
    """

    def __init__(self, url: str, body: bytes, workdir: Path, content_type="application/json"):
        self.url = url
        workdir.mkdir(parents=True, exist_ok=True)
        body_path = workdir / "body.bin"
        body_path.write_bytes(body)
        self.script = workdir / "post.lua"
        self.script.write_text(
            LUA_TEMPLATE.format(
                content_type=content_type, body_path=body_path.as_posix(), marker=MARKER
            )
        )

    def command(self, concurrency: int, duration_s: int, timeout_s: float) -> list:
        """The wrk command line."""
        return [
            wrk_binary(),
            "--threads", "1",
            "--connections", str(max(concurrency, 1)),
            "--duration", f"{max(int(duration_s), 1)}s",
            "--timeout", f"{max(int(round(timeout_s)), 1)}s",
            "--script", str(self.script),
            self.url,
        ]  # fmt: skip

    def run(self, concurrency: int, duration_s: int, timeout_s: float) -> LoadResult:
        """Run the load for ``duration_s`` whole seconds and return what wrk measured.

        Raises:
            LoadGenError: wrk failed or printed no result.
        """
        cmd = self.command(concurrency, duration_s, timeout_s)
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30
            )
        except subprocess.TimeoutExpired as err:
            raise LoadGenError(f"wrk did not finish: {' '.join(cmd)}") from err
        if proc.returncode != 0:
            raise LoadGenError(f"wrk exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return parse_wrk_output(proc.stdout)
