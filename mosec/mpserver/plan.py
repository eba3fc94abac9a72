"""From a servlet tree to a mosec route: stages, ensembles and switches for the engine.

- ``ProcessServlet`` -> one :class:`mosec.Runtime` (``num`` = its process count, pinned by
  ``cpus``), batching by the servlet's ``batch_size`` / ``batch_wait_time`` keywords, or, with
  none, handed what is queued (``wait_for_batch=False``) and calling ``call`` item by item;
- ``ThreadServlet`` -> one Runtime with ``threads=num_threads`` (one process of the engine);
- ``SequentialServlet`` -> its members' steps, one after the other;
- ``EnsembleServlet`` -> :class:`mosec.Ensemble`; ``SwitchServlet`` -> :class:`mosec.Switch`
  whose chooser stage calls the servlet's ``switch``.

An ensemble that ends a member or a branch is followed by a small join stage, so that each
member's and each branch's result is one value (never a joined container inside another); an
ensemble that ends the whole route is joined by the caller (:mod:`mosec.mpserver.core`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mosec.flow import Ensemble, Step, Switch
from mosec.mpserver.servlets import (
    EnsembleServlet,
    ProcessServlet,
    SequentialServlet,
    Servlet,
    SwitchServlet,
    ThreadServlet,
)
from mosec.mpserver.stages import (
    ChooserStage,
    Enclosing,
    JoinStage,
    ServletStage,
    StageParams,
    stage_class,
)
from mosec.runtime import Runtime

#: A stage's own ``forward`` timeout, in seconds: mpservice has none (the call's deadline is
#: the engine's), so one no call reaches.
NO_FORWARD_TIMEOUT_S = 7 * 24 * 3600.0
#: mpservice's ``batch_wait_time`` when batching and none is given, in seconds.
DEFAULT_BATCH_WAIT_S = 0.01
#: The most items the engine hands a non-batching stage at once: what is queued when a worker
#: is free (no wait), each item still given to ``call`` on its own. Small items then cost one
#: hop to the worker per batch, not one each, which is where mpservice's pipes are fast.
ITEMS_PER_HOP = 64


@dataclass
class Plan:
    """A servlet tree as one route.

    Attributes:
        steps: the route's steps for :meth:`mosec.Server.register_runtime`.
        joined: whether the route ends with an ensemble (its answer is a joined container).
        worker_names: every worker's mpservice name, in tree order (for init errors).
    """

    steps: list[Step]
    joined: bool
    worker_names: list[str] = field(default_factory=list)

    @property
    def runtimes(self) -> list[Runtime]:
        """Every stage of the route."""
        from mosec.flow import runtimes

        return runtimes(self.steps)


def build(servlet: Servlet, report_dir: str | None, arena: bool = False) -> Plan:
    """Describe ``servlet`` as a route.

    Args:
        servlet: the root of the tree.
        report_dir: where workers leave the exception their ``__init__`` raised.
        arena: whether the stages hand large buffers over through the server's arena.

    Raises:
        TypeError: a servlet of a kind this package does not know.
    """
    builder = _Builder(report_dir, arena)
    steps = builder.steps(servlet, ())
    return Plan(steps, isinstance(steps[-1], Ensemble), builder.names)


class _Builder:
    def __init__(self, report_dir: str | None, arena: bool) -> None:
        self.report_dir = report_dir
        self.arena = arena
        self.names: list[str] = []

    def steps(self, servlet: Servlet, enclosing: tuple[Enclosing, ...]) -> list[Step]:
        if isinstance(servlet, (ProcessServlet, ThreadServlet)):
            return [self._simple(servlet, enclosing)]
        if isinstance(servlet, SequentialServlet):
            return [step for member in servlet.servlets for step in self.steps(member, enclosing)]
        if isinstance(servlet, EnsembleServlet):
            size = len(servlet.servlets)
            members = [
                self._path(member, (Enclosing(slot, size, servlet.fail_fast), *enclosing))
                for slot, member in enumerate(servlet.servlets)
            ]
            return [Ensemble(members, fail_fast=servlet.fail_fast)]
        if isinstance(servlet, SwitchServlet):
            params = StageParams(target=servlet, enclosing=enclosing, arena=self.arena)
            chooser = stage_class(ChooserStage, _stage_name(type(servlet).__name__), params)
            branches = [self._path(member, enclosing) for member in servlet.servlets]
            return [Switch(Runtime(chooser), branches)]
        raise TypeError(f"mosec.mpserver cannot run a servlet of type {type(servlet).__name__}")

    def _path(self, servlet: Servlet, enclosing: tuple[Enclosing, ...]) -> list[Step]:
        """A member's or a branch's steps, ending with one value."""
        steps = self.steps(servlet, enclosing)
        if isinstance(steps[-1], Ensemble):
            params = StageParams(enclosing=enclosing, arena=self.arena)
            steps.append(Runtime(stage_class(JoinStage, "EnsembleJoin", params)))
        return steps

    def _simple(
        self, servlet: ProcessServlet | ThreadServlet, enclosing: tuple[Enclosing, ...]
    ) -> Runtime:
        cls = servlet.worker_cls
        kwargs = servlet.init_kwargs
        size, wait_ms, waits = _batching(kwargs)
        threads = isinstance(servlet, ThreadServlet)
        kind = "thread" if threads else "process"
        base_name = servlet.worker_name or f"{cls.__name__}-{kind}"
        params = StageParams(
            target=cls,
            init_kwargs=dict(kwargs),
            cpus=None if isinstance(servlet, ThreadServlet) else list(servlet.cpus),
            base_name=base_name,
            threads=threads,
            enclosing=enclosing,
            report_dir=self.report_dir,
            arena=self.arena,
        )
        worker = stage_class(ServletStage, _stage_name(cls.__name__), params)
        common: dict[str, Any] = {
            "max_batch_size": size,
            "max_wait_time": wait_ms,
            "wait_for_batch": waits,
            "timeout": NO_FORWARD_TIMEOUT_S,
        }
        if isinstance(servlet, ThreadServlet):
            self.names += [f"{base_name}-{i}" for i in range(servlet.num_threads)]
            return Runtime(worker, threads=servlet.num_threads, **common)
        self.names += [f"{base_name}-{i}" for i in range(len(servlet.cpus))]
        pinned = any(entry is not None for entry in servlet.cpus)
        return Runtime(
            worker, num=len(servlet.cpus), cpus=servlet.cpus if pinned else None, **common
        )


def _batching(kwargs: dict[str, Any]) -> tuple[int, int, bool]:
    """The engine's ``max_batch_size``, ``max_wait_time`` (ms) and ``wait_for_batch``.

    From the servlet's keywords: its batching, or none (what is queued, item by item).

    A worker that fixes its ``batch_size`` in its own ``__init__`` is served right whatever
    this says (the stage splits or wraps what the engine hands it), but only the keyword makes
    the engine batch.
    """
    size = kwargs.get("batch_size") or 0
    if not isinstance(size, int) or size <= 1:
        return ITEMS_PER_HOP, 0, False
    wait = kwargs.get("batch_wait_time")
    seconds = DEFAULT_BATCH_WAIT_S if wait is None else float(wait)
    # The engine reads 0 as "the server's default"; mpservice's 0 is "what is queued now",
    # which the shortest wait the engine knows comes closest to.
    return size, max(1, round(seconds * 1000)), True


def _stage_name(name: str) -> str:
    """A class name as a stage name (``Worker-square`` -> ``Worker_square``)."""
    return re.sub(r"\W", "_", name) or "Stage"
