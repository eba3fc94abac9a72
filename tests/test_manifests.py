"""The manifest check of ``make lint`` (scripts/validate_manifests.py) rejects what it must.

Every manifest under deploy/kubernetes/ passes; an unknown field (core kind or CRD), a wrong type
and a kind without a schema each fail, so the check cannot pass by checking nothing.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "validate_manifests.py"
_spec = importlib.util.spec_from_file_location("validate_manifests", SCRIPT)
assert _spec and _spec.loader
validate_manifests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(validate_manifests)


def load(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "kubernetes" / name).read_text())
    return resource


def test_every_manifest_passes() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = result.stdout.count("\nok   ") + result.stdout.startswith("ok   ")
    assert checked == len(validate_manifests.manifests()) >= 5, result.stdout


def test_an_unknown_field_of_a_core_kind_fails() -> None:
    deployment = load("deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(Exception, match="readinesProbe"):
        validate_manifests.check(deployment)


def test_a_wrong_type_fails() -> None:
    deployment = load("deployment.yaml")
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    with pytest.raises(Exception, match="45s"):
        validate_manifests.check(deployment)


def test_an_unknown_field_of_the_pod_monitor_fails() -> None:
    monitor = load("podmonitor.yaml")
    bad = copy.deepcopy(monitor)
    bad["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    with pytest.raises(Exception, match="intervall"):
        validate_manifests.check(bad)
    bad = copy.deepcopy(monitor)
    bad["metadata"]["lables"] = {}
    with pytest.raises(Exception, match="lables"):
        validate_manifests.check(bad)


def test_a_kind_without_a_schema_fails() -> None:
    monitor = load("podmonitor.yaml")
    monitor["kind"] = "ServiceMonitor"
    with pytest.raises(kubernetes_validate.SchemaNotFoundError) as raised:
        validate_manifests.check(monitor)
    assert "ServiceMonitor" in raised.value.message
