"""Where mpservice 0.16.8 is wrong: each case must be a clean error to the one caller
concerned, and the server must keep serving and exit.

Every test here FAILS on mpservice 0.16.8 (a hang, a lost result, a dead thread or a
wrong value; see docs/mpserver-contract.md, "Where mpservice 0.16.8 is wrong"). The
scenario runs in its own interpreter (scenarios.py) so a hang costs one bounded wait,
after which its whole process group is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .scenarios import SCENARIOS

LIMIT = 45  # seconds for one scenario, interpreter start and exit included
PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


def run_scenario(name: str) -> tuple[str, list[dict], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    pkg = __package__  # "mpserver" or "tests.mpserver", as the rootdir made it
    code = f"from {pkg}.scenarios import main; main({name!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=LIMIT)
        status = f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the scenario's own process group only
        out, err = proc.communicate(timeout=30)
        status = f"HUNG: killed after {LIMIT}s"
    steps = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if "DONE" not in out.splitlines():
        status += " (did not finish its steps)"
    return status, steps, err


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_failure_is_contained(name):
    status, steps, err = run_scenario(name)
    lines = [f"{'ok  ' if s['ok'] else 'FAIL'} {s['step']}: {s['detail']}" for s in steps]
    summary = "\n".join([f"scenario {name}: {status}", *lines, "--- stderr tail ---", err[-3000:]])
    assert status == "exit 0", summary
    assert steps and all(s["ok"] for s in steps), summary
