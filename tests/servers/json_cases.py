"""Values a default ``Worker.serialize`` must encode exactly as ``json.dumps(indent=2)`` does.

mosec 0.9.8's ``serialize`` is ``json.dumps(data, indent=2).encode()``, and ours must answer the
same bytes (or the same 500) for every ``forward`` result. The engine's fast encoder takes the
plain ones and leaves the rest to ``json``; these cover both sides of that line. Shared by the
test and by the server script ``json_compat.py``, which answers ``CASES[name]``.
"""

from __future__ import annotations

import collections
import enum
from typing import Any


class Color(enum.IntEnum):
    """An int subclass: ``json`` writes ``int.__repr__`` of it."""

    RED = 1


class Text(str):
    """A str subclass with a ``__str__`` of its own, which ``json`` does not call."""

    def __str__(self) -> str:
        return "not this"


class Ratio(float):
    """A float subclass with a ``__repr__`` of its own, which ``json`` does not call."""

    def __repr__(self) -> str:
        return "not this"


def _circular() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def _nested(depth: int) -> Any:
    value: Any = {"leaf": [1, 2.5, "x"]}
    for level in range(depth):
        value = [value, {"level": level}] if level % 2 else {"down": value}
    return value


def _lists(depth: int) -> Any:
    value: Any = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


#: name -> forward's result.
CASES: dict[str, Any] = {
    "echo": {"id": 7, "text": "hello mosec", "tags": ["a", "b"]},
    "empties": {"list": [], "dict": {}, "nested": [[], {}, [[]]], "str": ""},
    "scalars": [None, True, False, 0, -1, 1.0, -0.0, 0.1, 1.5, 123456789.0],
    "float_notation": [1e16, 1e15, 1e-4, 1e-5, 1e22, 5e-324, 1.7976931348623157e308, 2.5e-7],
    "non_finite": [float("nan"), float("inf"), float("-inf")],
    "big_ints": [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**40, -(10**40)],
    "escapes": ['"quoted"', "back\\slash", "\b\f\n\r\t", "\x00\x01\x1f", "\x7f", "/"],
    "unicode": ["héllo", "日本語", "emoji 😀", "\u2028\u2029", "\ufeff", "mixed \x7f é 😀 \n"],
    "lone_surrogate": ["\ud800", "a\udfffb"],
    "unicode_keys": {"clé": 1, "😀": [2], 'q"uote': {"\n": None}},
    "tuple": (1, (2, 3), [4, (5,)]),
    "non_str_keys": {1: "int", 2.5: "float", False: "bool", None: "none", "s": "str"},
    "enum": [Color.RED, {"color": Color.RED}],
    "subclasses": [Text("t"), Ratio(0.5)],
    "ordered_dict": collections.OrderedDict([("b", 1), ("a", 2)]),
    "deep": _nested(200),
    # The extension writes 64 nested containers itself and leaves a 65th level to json.
    "at_the_depth_limit": _lists(64),
    "past_the_depth_limit": _lists(65),
    "bare_string": "just text",
    "bare_number": 42,
    "bare_null": None,
    # json rejects these: a 500 with mosec's "encoding error" body.
    "set": {1, 2},
    "bytes": b"raw",
    "object": object(),
    "circular": _circular(),
    # Deeper than the interpreter's recursion limit lets json's encoder go: RecursionError.
    "too_deep": _nested(3000),
    "nested_set": {"ok": [1, 2], "bad": [{3}]},
    "bad_key": {(1, 2): "tuple key"},
    # More digits than int.__str__ writes (sys.get_int_max_str_digits(), 4300 by default).
    "int_too_long": [10**5000],
}
