"""Summaries of the samples: per scenario and target, medians with ranges and ratios to a baseline
(and, for our targets, to upstream with the same IPC mixin).

The baseline of a scenario is the ``--baseline`` target when it was measured there, else
``upstream-pickle`` when measured, else the first target measured. Ratios are paired per repeat
(see ``stats``): ``req/s ×`` above 1 means more throughput than the baseline, ``p50 ×`` and
``p99 ×`` below 1 mean lower latency.
"""

from typing import Any, Dict, List, Optional, Sequence

from benchmarks.scenarios import Scenario
from benchmarks.stats import Spread, ratio_spread, spread

METRICS = ("rps", "p50_ms", "p99_ms", "cpu_s", "cpu_ms_per_request", "peak_memory_mib")
DEFAULT_BASELINE = "upstream-pickle"


def by_repeat(samples: Sequence[Dict[str, Any]], metric: str) -> Dict[int, float]:
    """The value of ``metric`` per repeat index, leaving out missing values."""
    return {s["repeat"]: s[metric] for s in samples if s.get(metric) is not None}


def paired(mine: Dict[int, float], base: Dict[int, float]):
    """Two aligned lists over the repeats both sides have."""
    common = sorted(set(mine) & set(base))
    return [mine[r] for r in common], [base[r] for r in common]


def pick_baseline(measured: Sequence[str], wanted: Optional[str]) -> Optional[str]:
    """The baseline among the targets ``measured`` in a scenario (see the module doc)."""
    for choice in (wanted, DEFAULT_BASELINE):
        if choice in measured:
            return choice
    return measured[0] if measured else None


def like_for_like(target: str, measured: Sequence[str]) -> Optional[str]:
    """Upstream with the same IPC as one of our targets (``ours-numbin`` → ``upstream-numbin``),
    when it was measured too."""
    if not target.startswith("ours-"):
        return None
    peer = "upstream-" + target[len("ours-") :]
    return peer if peer in measured else None


def summarize(
    samples: Sequence[Dict[str, Any]], scenario: str, baseline: Optional[str] = None
) -> Dict[str, Any]:
    """The summary of one scenario: the baseline and one row per target, in measuring order."""
    mine = [s for s in samples if s["scenario"] == scenario]
    order: List[str] = []
    for sample in sorted(mine, key=lambda s: (s["repeat"], s["position"])):
        if sample["target"] not in order:
            order.append(sample["target"])
    base_name = pick_baseline(order, baseline)
    base = [s for s in mine if s["target"] == base_name]
    rows = []
    for target in order:
        own = [s for s in mine if s["target"] == target]
        row: Dict[str, Any] = {"target": target, "errors": sum(s["errors"] for s in own)}
        for metric in METRICS:
            row[metric] = spread(v for v in by_repeat(own, metric).values())
        for metric in ("rps", "p50_ms", "p99_ms"):
            values, base_values = paired(by_repeat(own, metric), by_repeat(base, metric))
            row[f"{metric}_ratio"] = ratio_spread(values, base_values)
        peer = like_for_like(target, order)
        row["peer"] = peer
        row["rps_peer_ratio"] = None
        if peer is not None:
            theirs = [s for s in mine if s["target"] == peer]
            values, peer_values = paired(by_repeat(own, "rps"), by_repeat(theirs, "rps"))
            row["rps_peer_ratio"] = ratio_spread(values, peer_values)
        rows.append(row)
    return {"scenario": scenario, "baseline": base_name, "rows": rows}


def to_json(summary: Dict[str, Any]) -> Dict[str, Any]:
    """A JSON-ready copy of a summary."""
    rows = []
    for row in summary["rows"]:
        rows.append({k: (v.to_dict() if isinstance(v, Spread) else v) for k, v in row.items()})
    return {**summary, "rows": rows}


def _num(value: float) -> str:
    """A number with three significant digits, thousands separated."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(value: Optional[Spread], suffix: str = "") -> str:
    """``median (min–max)``, or the median alone for one sample, or a dash."""
    if value is None:
        return "–"
    text = _num(value.median) + suffix
    if value.count > 1:
        text += f" ({_num(value.low)}–{_num(value.high)})"
    return text


def markdown(
    summary: Dict[str, Any],
    scenario: Scenario,
    note: str,
    absent: Sequence[Dict[str, str]] = (),
) -> str:
    """The Markdown table of one scenario, with a heading naming its load and baseline, and a
    row for each target in ``absent`` (skips: ``target``, ``reason``) saying why it has none."""
    base = summary["baseline"]
    lines = [
        f"### {scenario.name}: {scenario.description}",
        "",
        f"{note}; ratios against `{base}` in the same run.",
        "",
        "| target | req/s | p50 ms | p99 ms | CPU s | CPU ms/req | peak mem MiB"
        " | req/s × | p50 × | p99 × | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary["rows"]:
        cells = [
            f"`{row['target']}`",
            cell(row["rps"]),
            cell(row["p50_ms"]),
            cell(row["p99_ms"]),
            cell(row["cpu_s"]),
            cell(row["cpu_ms_per_request"]),
            cell(row["peak_memory_mib"]),
            cell(row["rps_ratio"], "×"),
            cell(row["p50_ms_ratio"], "×"),
            cell(row["p99_ms_ratio"], "×"),
            str(row["errors"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for skip in absent:
        reason = skip["reason"].replace("|", "/").replace("\n", " ")
        lines.append(f"| `{skip['target']}` | not measured: {reason} |" + " |" * 9)
    return "\n".join(lines) + "\n"


def headline(summaries: Sequence[Dict[str, Any]], prefix: str = "ours") -> str:
    """One table over all scenarios: each ``prefix-*`` target against its scenario's baseline."""
    lines = [
        "| scenario | target | req/s | req/s × baseline | p99 × baseline | baseline"
        " | req/s × upstream, same IPC |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for summary in summaries:
        for row in summary["rows"]:
            if not row["target"].startswith(prefix) or row["target"] == summary["baseline"]:
                continue
            cells = [
                summary["scenario"],
                f"`{row['target']}`",
                cell(row["rps"]),
                cell(row["rps_ratio"], "×"),
                cell(row["p99_ms_ratio"], "×"),
                f"`{summary['baseline']}`",
                cell(row["rps_peer_ratio"], "×") if row["peer"] else "–",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""
