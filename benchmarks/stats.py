"""Medians, spreads and ratios of repeated samples.

Targets are measured alternately, so repeat ``i`` of two targets ran close together in time; a
ratio is therefore taken per repeat (paired) and summarised by its median, which cancels slow drift
of the machine better than a ratio of two medians would.
"""

import statistics
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence


@dataclass(frozen=True)
class Spread:
    """The median and the range of some samples."""

    median: float
    low: float
    high: float
    count: int

    def to_dict(self):
        """A JSON-ready dict."""
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.count}


def spread(values: Iterable[float]) -> Optional[Spread]:
    """Median, minimum and maximum of ``values``; ``None`` when there are none."""
    data = [float(v) for v in values]
    if not data:
        return None
    return Spread(statistics.median(data), min(data), max(data), len(data))


def ratio(numerator: float, denominator: float) -> Optional[float]:
    """``numerator / denominator``, or ``None`` when the denominator is zero."""
    if denominator == 0:
        return None
    return numerator / denominator


def paired_ratios(values: Sequence[float], baseline: Sequence[float]) -> List[float]:
    """Per-repeat ratios ``values[i] / baseline[i]`` over the repeats both have, skipping zeros."""
    ratios = []
    for value, base in zip(values, baseline):
        quotient = ratio(value, base)
        if quotient is not None:
            ratios.append(quotient)
    return ratios


def ratio_spread(values: Sequence[float], baseline: Sequence[float]) -> Optional[Spread]:
    """The median and range of the paired ratios; ``None`` when no pair is usable."""
    return spread(paired_ratios(values, baseline))
