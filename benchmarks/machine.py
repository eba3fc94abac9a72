"""A description of the machine and the software versions, stored with every result."""

import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict

from benchmarks.loadgen import wrk_version
from benchmarks.redis_daemon import redis_binary
from benchmarks.runtimes import REPO


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return 0.0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _run(argv) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def _redis_version() -> str:
    binary = redis_binary()
    return _run([binary, "--version"]) if binary else "missing"


def describe() -> Dict[str, Any]:
    """The machine, the tools and the repository's commit."""
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
        "redis_server": _redis_version(),
        "git_commit": _run(["git", "rev-parse", "--short", "HEAD"]),
        "git_dirty": dirty not in ("", "unknown"),
        "load_average_1m": round(os.getloadavg()[0], 2),  # > 0.5 here: something else was running
    }
