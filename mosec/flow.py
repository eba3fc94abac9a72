"""Flows beyond a line: ensembles (fan out, join in order) and switches (one branch per item).

A route is a list of steps; a step is a :class:`~mosec.Runtime` (a stage), an :class:`Ensemble`
or a :class:`Switch`, and members and branches are steps or lists of steps themselves::

    server.register_runtime({"/classify": [pre, Ensemble([a, b, c]), vote]})
    server.register_runtime({"/read": [decode, Switch(orient, [[upright], [rotate, upright]])]})

The engine does the routing (one queue and batcher per stage, as for a line; only payloads or
store ids cross it): an ensemble's input is stored once and read by every member, and the stage
after it gets, per item, the list of the members' outputs in member order. The route's engine
config is made by :func:`describe`; the joined payload the engine builds is split by
:func:`split_joined` (its layout is defined in ``engine/src/protocol.rs``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any, Union

from mosec.runtime import Runtime

#: ``count:u16`` at the start of a joined payload, then the parts.
_JOIN_COUNT = struct.Struct("<H")
#: ``status:u16 | flags:u16 | len:u32`` before each part's bytes.
_JOIN_PART = struct.Struct("<HHI")


class Ensemble:
    """Run every member on the same item and join their outputs into a list, in member order.

    Args:
        members: each a step or a list of steps (a sub-pipeline); at least one.
        fail_fast: True: the first member error fails the item at once with that error; False:
            the error takes the member's slot (a :class:`mosec.errors.MemberError`, unless the
            next stage's worker rebuilds it otherwise) and the others' outputs still arrive.
    """

    def __init__(self, members: Sequence[Step | Sequence[Step]], fail_fast: bool = True) -> None:
        """Describe the fan-out; see the class docstring."""
        if not members:
            raise ValueError("an Ensemble needs at least one member")
        self.members = [_flow(member, "an Ensemble member") for member in members]
        self.fail_fast = bool(fail_fast)

    def __repr__(self) -> str:
        """The members, for error messages."""
        return f"Ensemble({self.members!r}, fail_fast={self.fail_fast})"


class Switch:
    """Send each item down the branch its chooser picks.

    Args:
        chooser: a stage whose worker's ``forward`` returns the branch index of its item (a
            list of indices when it batches); the branch then gets the chooser's *input*.
        branches: each a step or a list of steps; at least one. An index out of range fails
            the item with a 500.
    """

    def __init__(self, chooser: Runtime, branches: Sequence[Step | Sequence[Step]]) -> None:
        """Describe the choice; see the class docstring."""
        if not isinstance(chooser, Runtime):
            raise TypeError(f"a Switch's chooser must be a Runtime, got {chooser!r}")
        if not branches:
            raise ValueError("a Switch needs at least one branch")
        self.chooser = chooser
        self.branches = [_flow(branch, "a Switch branch") for branch in branches]

    def __repr__(self) -> str:
        """The chooser and branches, for error messages."""
        return f"Switch({self.chooser!r}, {self.branches!r})"


#: One step of a route.
Step = Union[Runtime, Ensemble, Switch]


def _flow(steps: Step | Sequence[Step], what: str) -> list[Step]:
    """A member or branch as a list of steps, checked."""
    listed: list[Any] = list(steps) if isinstance(steps, (list, tuple)) else [steps]
    if not listed:
        raise ValueError(f"{what} needs at least one step")
    for step in listed:
        if not isinstance(step, (Runtime, Ensemble, Switch)):
            raise TypeError(f"{what} must be a Runtime, an Ensemble or a Switch, got {step!r}")
    return listed


def _walk(steps: Sequence[Step]) -> Iterator[tuple[Runtime, bool]]:
    """Every Runtime of a flow in the order it first appears, and whether it is a chooser."""
    for step in steps:
        if isinstance(step, Runtime):
            yield step, False
        elif isinstance(step, Ensemble):
            for member in step.members:
                yield from _walk(member)
        else:
            yield step.chooser, True
            for branch in step.branches:
                yield from _walk(branch)


def runtimes(steps: Sequence[Step]) -> list[Runtime]:
    """Every Runtime of a flow, choosers included, in the order they first appear."""
    return [runtime for runtime, _ in _walk(steps)]


def plain_stages(steps: Sequence[Step]) -> list[Runtime]:
    """The Runtimes of a flow that are stages (not choosers)."""
    return [runtime for runtime, chooser in _walk(steps) if not chooser]


def choosers(steps: Sequence[Step]) -> list[Runtime]:
    """The Runtimes of a flow that choose a branch."""
    return [runtime for runtime, chooser in _walk(steps) if chooser]


def is_linear(steps: Sequence[Step]) -> bool:
    """Whether a route is a plain line of stages (the engine's ``stages`` list)."""
    return all(isinstance(step, Runtime) for step in steps)


def last_stages(steps: Sequence[Step]) -> list[Runtime]:
    """The stages whose output can be a route's answer (their ``serialize`` encodes it)."""
    last = steps[-1]
    if isinstance(last, Runtime):
        return [last]
    paths = last.members if isinstance(last, Ensemble) else last.branches
    return [stage for path in paths for stage in last_stages(path)]


def first_stages(steps: Sequence[Step]) -> list[Runtime]:
    """The stages that can receive a route's request body (their ``deserialize`` decodes it)."""
    first = steps[0]
    if isinstance(first, Runtime):
        return [first]
    if isinstance(first, Ensemble):
        return [stage for member in first.members for stage in first_stages(member)]
    return [first.chooser] + [stage for branch in first.branches for stage in first_stages(branch)]


def describe(steps: Sequence[Step], index_of: dict[int, int]) -> list[dict[str, Any]]:
    """The engine config's ``flow`` of a route, with stages as indices (``index_of[id(rt)]``)."""
    described: list[dict[str, Any]] = []
    for step in steps:
        if isinstance(step, Runtime):
            described.append({"stage": index_of[id(step)]})
        elif isinstance(step, Ensemble):
            members = [describe(member, index_of) for member in step.members]
            described.append({"ensemble": {"members": members, "fail_fast": step.fail_fast}})
        else:
            branches = [describe(branch, index_of) for branch in step.branches]
            described.append(
                {"switch": {"chooser": index_of[id(step.chooser)], "branches": branches}}
            )
    return described


def split_joined(payload: bytes) -> list[tuple[int, bytes]]:
    """The parts of a joined payload: ``(status, bytes)`` per member, in member order.

    Raises:
        ValueError: the payload is not a whole joined container.
    """
    view = memoryview(payload)
    if len(view) < _JOIN_COUNT.size:
        raise ValueError("joined payload cut short")
    (count,) = _JOIN_COUNT.unpack_from(view)
    offset = _JOIN_COUNT.size
    parts = []
    for _ in range(count):
        if offset + _JOIN_PART.size > len(view):
            raise ValueError("joined payload ends inside a part header")
        status, _flags, length = _JOIN_PART.unpack_from(view, offset)
        offset += _JOIN_PART.size
        if offset + length > len(view):
            raise ValueError("joined payload ends inside a part")
        parts.append((status, bytes(view[offset : offset + length])))
        offset += length
    if offset != len(view):
        raise ValueError(f"joined payload has {len(view) - offset} bytes after its last part")
    return parts


def join(parts: Sequence[tuple[int, bytes]]) -> bytes:
    """A joined payload of ``(status, bytes)`` parts, as the engine builds one (for tests)."""
    out = [_JOIN_COUNT.pack(len(parts))]
    for status, data in parts:
        out.append(_JOIN_PART.pack(status, 0, len(data)))
        out.append(data)
    return b"".join(out)
