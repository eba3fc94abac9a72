"""PNG plots of a run: per scenario, throughput and p99 latency of every target (matplotlib).

Each bar is the median over repeats; the error bar spans the minimum to the maximum. Ours are
blue, the baseline orange, the other stacks green.
"""

from pathlib import Path
from typing import Any, Dict, List

from benchmarks.stats import Spread

# The other serving stacks, in green (upstream mosec is the orange baseline, ours blue).
PEERS = frozenset({"litserve", "ray-serve", "pytriton", "bentoml", "mpservice"})


def _bars(axis, rows: List[Dict[str, Any]], metric: str, title: str, baseline: str) -> None:
    """Draw one panel: a bar per target with its min-max range."""
    names, medians, below, above, colors = [], [], [], [], []
    for row in rows:
        value: Spread = row[metric]
        if value is None:
            continue
        names.append(row["target"])
        medians.append(value.median)
        below.append(value.median - value.low)
        above.append(value.high - value.median)
        colors.append("tab:blue" if row["target"].startswith("ours") else "tab:gray")
        if row["target"] in PEERS:
            colors[-1] = "tab:green"
        if row["target"] == baseline:
            colors[-1] = "tab:orange"
    positions = list(range(len(names)))
    bars = axis.bar(positions, medians, yerr=[below, above], color=colors, capsize=4)
    axis.bar_label(bars, labels=[_short(m) for m in medians], fontsize=7, padding=2)
    axis.set_xticks(positions)
    axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)


def _short(value: float) -> str:
    """A bar label: three significant digits."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def plot_scenario(summary: Dict[str, Any], title: str, path: Path) -> Path:
    """Write ``path`` with two panels (req/s, p99 ms) for one scenario's summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    rows = summary["rows"]
    _bars(left, rows, "rps", "throughput (req/s, higher is better)", summary["baseline"])
    _bars(right, rows, "p99_ms", "p99 latency (ms, lower is better)", summary["baseline"])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
