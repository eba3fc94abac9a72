"""``--dry-run``: every route's examples through every stage, with no server."""

from __future__ import annotations

import subprocess
import sys

import pytest
from server_util import REPO, SERVERS, server_env


def dry_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SERVERS / "dry_run.py"), *args],
        cwd=REPO,
        env=server_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("how", [("--dry-run",), ("--dry-run", "true"), ()])
def test_success_prints_timings_per_stage_and_exits_0(how: tuple[str, ...]) -> None:
    result = dry_run(*how, **({} if how else {"MOSEC_DRY_RUN": "yes"}))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "route /inference: Prepare_1 -> Infer_2 -> Stream_3" in out
    for stage, items, calls in (("Prepare_1", 3, 3), ("Infer_2", 3, 2), ("Stream_3", 3, 3)):
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{stage}:"))
        assert f"for {items} item(s) in {calls} call(s)" in line, line
        assert "ms per item" in line
    assert "3 stream event(s)" in out
    assert "route /other: Lonely_4" in out and "skipped: Lonely_4 has no example" in out
    assert out.rstrip().endswith("dry run passed")


@pytest.mark.parametrize("stage", ["Prepare", "Infer", "Stream"])
def test_a_failing_stage_is_named_and_exits_non_zero(stage: str) -> None:
    result = dry_run("--dry-run", TEST_FAIL_STAGE=stage)
    assert result.returncode != 0
    position = ["Prepare", "Infer", "Stream"].index(stage) + 1
    name = f"{stage}_{position}"
    assert f"FAILED at route /inference, stage {position} of 3 ({name}) during forward" in (
        result.stdout
    )
    assert f"RuntimeError: {stage} was asked to fail" in result.stdout


def test_a_stage_whose_process_dies_is_named() -> None:
    result = dry_run("--dry-run", TEST_CRASH_STAGE="Prepare")
    assert result.returncode != 0
    assert "FAILED at route /inference, stage 1 of 3 (Prepare_1) during run" in result.stdout
    assert "exited with code 3" in result.stdout
