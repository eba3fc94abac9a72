"""Ours against the peers: the best of our targets against the best peer, per scenario.

A peer is every target that is not this repository's mosec (nor the harness's stub): upstream
mosec 0.9.8, LitServe, Ray Serve, PyTriton, BentoML, mpservice. Per scenario the best target of
each side is the one with the highest median req/s; the ratio is taken per repeat (paired, as
every ratio of the report) and summarised by its median. Peers that were not measured in a
scenario are named with the reason (not expressible, did not install, did not start ...), so no
peer drops out of the comparison unseen.
"""

from typing import Any, Dict, List, Optional, Sequence

from benchmarks.catalog import TARGETS
from benchmarks.report import by_repeat, cell, paired
from benchmarks.scenarios import by_name
from benchmarks.stats import ratio_spread

OURS = "ours"


def is_peer(target: str) -> bool:
    """Whether ``target`` names a peer (anything measured that is not ours or the stub)."""
    known = TARGETS.get(target)
    runtime = known.runtime if known is not None else target.split("-")[0]
    return runtime not in (OURS, "stub")


def _best(rows: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The row with the highest median req/s, or ``None``."""
    measured = [row for row in rows if row["rps"] is not None]
    return max(measured, key=lambda row: row["rps"].median, default=None)


def not_measured(scenario: str, skipped: Sequence[Dict[str, str]]) -> List[Dict[str, str]]:
    """The peers' skips that concern ``scenario`` (its own, and whole-run ones marked ``*``),
    leaving out the IPC variants that would only repeat another target or carry nothing here."""
    return [
        skip
        for skip in skipped
        if skip["scenario"] in (scenario, "*")
        and is_peer(skip["target"])
        and not _variant_only(skip["target"], scenario)
    ]


def _variant_only(target: str, scenario: str) -> bool:
    """Whether ``target`` is an IPC variant with nothing to show in ``scenario``."""
    known = TARGETS.get(target)
    if known is None or known.ipc is None:
        return False
    try:
        chosen = by_name(scenario)
    except KeyError:
        return False
    if known.redundant(chosen) is not None:
        return True
    return chosen.ipc != "none" and chosen.ipc not in known.ipc.carries


def compare(summary: Dict[str, Any], samples: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Best of ours and best peer in one scenario's summary, with paired ratios; ``None`` when a
    side was not measured."""
    rows = summary["rows"]
    ours = _best([row for row in rows if not is_peer(row["target"])])
    peer = _best([row for row in rows if is_peer(row["target"])])
    if ours is None or peer is None:
        return None
    mine = [s for s in samples if s["scenario"] == summary["scenario"]]
    ratios = {}
    for metric in ("rps", "p99_ms", "cpu_ms_per_request"):
        values, theirs = paired(
            by_repeat([s for s in mine if s["target"] == ours["target"]], metric),
            by_repeat([s for s in mine if s["target"] == peer["target"]], metric),
        )
        ratios[metric] = ratio_spread(values, theirs)
    return {"scenario": summary["scenario"], "ours": ours, "peer": peer, "ratios": ratios}


def headline(
    summaries: Sequence[Dict[str, Any]],
    samples: Sequence[Dict[str, Any]],
    skipped: Sequence[Dict[str, str]],
) -> str:
    """The Markdown table: per scenario, our best against the best peer, and who was missing."""
    lines = [
        "| scenario | our best | req/s | best peer | req/s | req/s × peer | p99 × peer"
        " | CPU/req × peer | peers not measured |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for summary in summaries:
        found = compare(summary, samples)
        if found is None:
            continue
        missing = sorted({skip["target"] for skip in not_measured(summary["scenario"], skipped)})
        ratios = found["ratios"]
        cells = [
            summary["scenario"],
            f"`{found['ours']['target']}`",
            cell(found["ours"]["rps"]),
            f"`{found['peer']['target']}`",
            cell(found["peer"]["rps"]),
            cell(ratios["rps"], "×"),
            cell(ratios["p99_ms"], "×"),
            cell(ratios["cpu_ms_per_request"], "×"),
            ", ".join(f"`{name}`" for name in missing) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""
