"""Character accuracy: how much of the expected text was read, by edit distance.

The accuracy of a reading is ``1 - distance / len(expected)``, floored at 0, where the distance
is the Levenshtein distance (insertions, deletions and substitutions of single characters)
between the expected and the read text, after runs of spaces are collapsed (lines are
compared as text, not as layout). Over a set of pictures the distances and lengths are
summed first, so a long text weighs more than a short one.
"""

from __future__ import annotations

from typing import Iterable, Tuple


def normalise(text: str) -> str:
    """The text with each line's runs of spaces collapsed to one, and blank lines dropped."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def distance(expected: str, read: str) -> int:
    """The Levenshtein distance between two strings (one row of the table at a time)."""
    previous = list(range(len(read) + 1))
    for i, want in enumerate(expected, start=1):
        current = [i]
        for j, got in enumerate(read, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (want != got))
            )
        previous = current
    return previous[-1]


def score(expected: str, read: str) -> Tuple[int, int]:
    """The edit distance and the expected length, after :func:`normalise`."""
    want, got = normalise(expected), normalise(read)
    return distance(want, got), len(want)


def accuracy(pairs: Iterable[Tuple[str, str]]) -> float:
    """The character accuracy of ``(expected, read)`` pairs, taken together."""
    errors = total = 0
    for expected, read in pairs:
        wrong, length = score(expected, read)
        errors += wrong
        total += length
    return max(0.0, 1.0 - errors / total) if total else 1.0
