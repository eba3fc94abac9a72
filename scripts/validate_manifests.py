"""Validate every Kubernetes manifest under deploy/kubernetes/, strictly (unknown fields fail).

Core kinds are checked against the Kubernetes schemas bundled with ``kubernetes-validate``, at
the pinned version below. ``kubernetes-validate`` only warns about a kind it has no schema for,
which would let a CRD (the Prometheus Operator's ``PodMonitor``) or a misspelt kind pass
unchecked; here a kind without a schema fails, and the CRDs we use are checked against the
schemas in ``deploy/kubernetes/schemas/`` (same registry, so they reuse the core definitions of
``ObjectMeta`` and ``LabelSelector``).

Helm values (``prometheus-adapter/values.yaml``) are not manifests and are skipped.

Usage: ``python scripts/validate_manifests.py`` (exit 1 on the first invalid file's report).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils
from referencing import Registry, Resource

#: The Kubernetes version the manifests must be valid for.
KUBERNETES_VERSION = "1.32.0"
ROOT = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
SCHEMAS = ROOT / "schemas"
#: Files under ROOT that are not manifests.
NOT_MANIFESTS = {Path("prometheus-adapter/values.yaml")}
#: CRD kinds and their local schemas.
CRDS = {("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json"}


def manifests() -> list[Path]:
    """Every manifest file under ROOT."""
    files = sorted(ROOT.rglob("*.yaml"))
    return [path for path in files if path.relative_to(ROOT) not in NOT_MANIFESTS]


def validate_crd(resource: dict[str, Any], schema_file: str) -> None:
    """Validate a custom resource against its local schema; raises on the first error."""
    definitions = utils.schema_contents(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/_definitions.json",
        KUBERNETES_VERSION,
    )
    schema = json.loads((SCHEMAS / schema_file).read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(resource)


def check(resource: dict[str, Any]) -> str:
    """Validate one resource; what it was checked against. Raises on an error or no schema."""
    crd = CRDS.get((resource.get("apiVersion", ""), resource.get("kind", "")))
    if crd is not None:
        validate_crd(resource, crd)
        return f"{SCHEMAS.name}/{crd}, strict"
    # Raises SchemaNotFoundError for a kind it does not know: a failure here, not a warning.
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    return f"Kubernetes {KUBERNETES_VERSION}, strict"


def main() -> int:
    """Validate every manifest; print one line per resource; 1 when any fails."""
    failed = 0
    files = manifests()
    for path in files:
        name = path.relative_to(ROOT.parent.parent)
        for resource in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
            what = f"{name}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
            try:
                against = check(resource)
            except jsonschema.ValidationError as err:
                failed += 1
                where = ".".join(str(part) for part in err.absolute_path)
                print(f"FAIL {what}: {where}: {err.message}")
            except kubernetes_validate.ValidationError as err:
                failed += 1
                where = ".".join(str(part) for part in err.path)
                print(f"FAIL {what}: {where}: {err.message}")
            except kubernetes_validate.SchemaNotFoundError as err:
                failed += 1
                print(f"FAIL {what}: {err.message} (add a schema to {SCHEMAS.name}/ for a CRD)")
            else:
                print(f"ok   {what} ({against})")
    if not files:
        print(f"FAIL no manifests under {ROOT}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
