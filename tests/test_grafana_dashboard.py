"""The Grafana dashboard cannot drift from the metrics: every PromQL expression in it parses, and
every metric, label and matched label value it names is exported by a live server.

The expressions are parsed by ``promql-parser`` (Python bindings of the Rust ``promql-parser``
crate, the parser GreptimeDB uses), after Grafana's ``$__rate_interval`` is replaced by a range.
The server (``tests/servers/dashboard.py``) is driven until each family has samples: inline and
by-reference hops, a batching stage.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from server_util import REPO

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "mosec-dashboard.json"
#: Labels Prometheus adds to every scraped sample (the server never exports them).
SCRAPE_LABELS = {"instance", "job"}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def dashboard_expressions(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expression) of every target of every panel."""
    dashboard = json.loads(path.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def parse(expr: str) -> Any:
    """The expression's syntax tree, with Grafana's interval macros made concrete."""
    concrete = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return promql_parser.parse(concrete)


def selectors(node: Any) -> list[Any]:
    """Every vector selector under ``node``."""
    if isinstance(node, promql_parser.VectorSelector):
        return [node]
    found = []
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if isinstance(child, promql_parser.Expr):
            found += selectors(child)
    for child in getattr(node, "args", None) or []:
        found += selectors(child)
    return found


def grouping_labels(node: Any) -> set[str]:
    """Labels named in ``by (...)`` clauses under ``node``."""
    labels: set[str] = set()
    if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
        labels |= set(node.modifier.labels)
    for attr in ("lhs", "rhs", "expr", "param"):
        child = getattr(node, attr, None)
        if isinstance(child, promql_parser.Expr):
            labels |= grouping_labels(child)
    for child in getattr(node, "args", None) or []:
        labels |= grouping_labels(child)
    return labels


def exported(metrics_text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name → the label sets of its samples, from Prometheus text."""
    samples: dict[str, list[dict[str, str]]] = {}
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.setdefault(match.group(1), []).append(labels)
    return samples


def test_every_expression_parses_and_names_only_what_exists() -> None:
    """Parsing alone: a syntax error in any panel fails here, before any server starts."""
    expressions = dashboard_expressions()
    assert len(expressions) >= 15
    for title, expr in expressions:
        tree = parse(expr)
        assert selectors(tree), f"{title}: {expr} selects no metric"


def test_walker_finds_every_metric_of_a_binary_expression() -> None:
    """The walker itself: a ratio of two aggregations names both metrics and both groupings."""
    tree = parse("sum by (a) (rate(x_sum[$__rate_interval])) / sum by (b) (y_count)")
    assert sorted(s.name for s in selectors(tree)) == ["x_sum", "y_count"]
    assert grouping_labels(tree) == {"a", "b"}


def test_dashboard_metrics_are_exported_by_a_live_server(start_server) -> None:
    """Every metric, label and equality-matched value of the dashboard is in ``GET /metrics``."""
    server = start_server("dashboard.py", "--shm-size", "16M", "--namespace", "mosec_service")
    bodies = [{"big": True}, {"big": False}] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda body: server.post(json=body), bodies))
    assert [a.status_code for a in answers] == [200] * len(bodies)
    assert {a.json()["length"] for a in answers} == {32 * 1024, 4}
    samples = exported(server.metrics())
    carried = {labels["carried"] for labels in samples["mosec_service_ipc_bytes_total"]}
    assert carried == {"inline", "reference"}, "the inline-vs-reference panel needs both"

    template = json.loads(DASHBOARD.read_text())["templating"]["list"]
    for variable in template:
        query = variable.get("definition", "")
        match = re.match(r"label_values\((\w+),\s*(\w+)\)", query)
        if match:
            assert match.group(1) in samples, f"variable {variable['name']}: {query}"

    for title, expr in dashboard_expressions():
        tree = parse(expr)
        label_sets: list[dict[str, str]] = []
        for selector in selectors(tree):
            assert selector.name in samples, (
                f"{title}: {selector.name} is not exported; exported: {sorted(samples)}"
            )
            label_sets += samples[selector.name]
            for matcher in selector.matchers.matchers:
                if matcher.name in SCRAPE_LABELS:
                    continue
                values = {labels.get(matcher.name) for labels in samples[selector.name]}
                assert values - {None}, f"{title}: {selector.name} has no label {matcher.name}"
                if matcher.op == promql_parser.MatchOp.Equal:
                    assert matcher.value in values, (
                        f"{title}: no {selector.name} sample with {matcher.name}={matcher.value!r}"
                    )
        for label in grouping_labels(tree) - SCRAPE_LABELS:
            assert any(label in labels for labels in label_sets), f"{title}: no label {label}"


def test_scrape_config_and_compose_fit_together() -> None:
    """Prometheus scrapes the compose file's server at /metrics; Grafana gets this dashboard."""
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"
    compose = yaml.safe_load((GRAFANA / "compose.yaml").read_text())["services"]
    assert set(compose) == {"mosec", "prometheus", "grafana"}
    assert scrape["static_configs"][0]["targets"] == ["mosec:8000"]
    assert "8000" in compose["mosec"]["command"]
    volumes = " ".join(compose["grafana"]["volumes"])
    assert f"./{DASHBOARD.name}:" in volumes and "./provisioning:" in volumes
    assert "./prometheus.yml:" in " ".join(compose["prometheus"]["volumes"])


@pytest.mark.parametrize(
    "broken", ["rate(mosec_service_throughput_total[5m]", "sum by (le (x)"], ids=["paren", "by"]
)
def test_a_broken_expression_is_refused(broken: str) -> None:
    """The parser really checks syntax (so the first test means something)."""
    with pytest.raises(Exception):  # noqa: B017 - the bindings raise a plain ValueError or similar
        parse(broken)
