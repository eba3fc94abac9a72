"""From the routes to the engine's stages: which paths are allowed, and how stages are shared.

Each distinct :class:`~mosec.Runtime` object is one stage (one pool of processes, one queue), also
when several routes list it: the engine then batches requests of all those routes together, and
tells the worker per item whether the stage is that route's first (INGRESS) or last (EGRESS).
A route streams server-sent events when the worker of its last stage is an ``SSEWorker``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mosec import _engine, flow
from mosec.flow import Step
from mosec.runtime import Runtime
from mosec.worker import SSEWorker

#: Paths the engine answers itself (readiness and metrics) and the prefix of its documents,
#: from their definition in the engine.
RESERVED_PATHS = tuple(_engine.RESERVED_PATHS)
RESERVED_PREFIX = _engine.RESERVED_PREFIX


@dataclass
class StagePlan:
    """A stage as the server runs it: its index in the engine config and its runtime."""

    index: int
    runtime: Runtime
    #: Whether the stage chooses a Switch's branch (its workers answer branch indices).
    chooser: bool = False

    def engine_config(self, forward_timeout_s: float) -> dict[str, Any]:
        """The stage's entry in the engine config.

        The engine reads a ``max_wait_time`` of 0 as the server's ``--wait``, and counts a
        worker busy past its forward timeout plus a grace as stuck (to be killed and restarted).

        Args:
            forward_timeout_s: the workers' ``forward`` timeout
                (:meth:`mosec.config.ServerConfig.forward_timeout_s`).
        """
        runtime = self.runtime
        # A thread stage's workers have no forward timeout (coordinator: only the main thread
        # gets the alarm), so none of them is ever stuck past one.
        timed = forward_timeout_s > 0 and runtime.threads == 1
        return {
            "name": runtime.name,
            # One link per thread of each process: the engine batches for each of them.
            "num": runtime.num * runtime.threads,
            "max_batch_size": runtime.max_batch_size,
            "max_wait_time_ms": runtime.max_wait_time,
            "wait_for_batch": runtime.wait_for_batch,
            "forward_timeout_ms": math.ceil(forward_timeout_s * 1000) if timed else 0,
        }


def check_path(path: str) -> None:
    """Refuse a route path the server cannot serve.

    Args:
        path: the POST path of a route.

    Raises:
        ValueError: when the path does not start with ``/`` or is reserved by the server.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"route {path!r} must be a string starting with '/'")
    if path in RESERVED_PATHS or path.startswith(RESERVED_PREFIX):
        raise ValueError(
            f"route {path!r} is reserved by the server ('/' is the readiness check, '/metrics' "
            f"the metrics, '{RESERVED_PREFIX}...' the API documents); choose another path"
        )


def is_streaming(steps: Sequence[Step]) -> bool:
    """Whether a route answers with an event stream: its last worker is an ``SSEWorker``."""
    return any(issubclass(stage.worker, SSEWorker) for stage in flow.last_stages(steps))


def check_flow(path: str, steps: Sequence[Step], http: bool = True) -> None:
    """Refuse a route the engine cannot serve, with the reason.

    Args:
        path: the route's path.
        steps: its steps.
        http: whether HTTP clients get its answers (then the last step must not be an
            ensemble: its answer would be the engine's joined container, not a body).

    Raises:
        ValueError: for an empty route, an HTTP route ending in an ensemble, a streaming route
            with an ensemble or a switch, or a chooser used as a plain stage too.
    """
    if not steps:
        raise ValueError(f"route {path!r} needs at least one step")
    if http and isinstance(steps[-1], flow.Ensemble):
        raise ValueError(
            f"route {path!r} ends with an Ensemble: end it with a stage that combines the "
            "members' outputs (its forward gets them as a list)"
        )
    if is_streaming(steps) and not flow.is_linear(steps):
        raise ValueError(f"route {path!r} streams events, so it must be a line of stages")
    chooser_ids = {id(chooser) for chooser in flow.choosers(steps)}
    if any(id(stage) in chooser_ids for stage in flow.plain_stages(steps)):
        raise ValueError(f"route {path!r}: a Switch's chooser cannot also be a plain stage")


def plan(routes: dict[str, list[Step]]) -> tuple[list[StagePlan], list[dict[str, Any]]]:
    """Number the stages (one per distinct Runtime object) and describe the routes.

    Args:
        routes: ``{path: [step, ...]}`` in registration order.

    Returns:
        The stages in engine order, and each route's entry of the engine config: its ``stages``
        when it is a line, its ``flow`` otherwise (see :mod:`mosec.flow`).
    """
    index_of: dict[int, int] = {}
    stages: list[StagePlan] = []
    route_configs = []
    chooser_ids = {id(c) for steps in routes.values() for c in flow.choosers(steps)}
    for path, steps in routes.items():
        if any(id(stage) in chooser_ids for stage in flow.plain_stages(steps)):
            raise ValueError(f"route {path!r}: a Switch's chooser cannot also be a plain stage")
        for runtime in flow.runtimes(steps):
            if id(runtime) not in index_of:
                index_of[id(runtime)] = len(stages)
                stages.append(StagePlan(len(stages), runtime, id(runtime) in chooser_ids))
        config: dict[str, Any] = {
            "path": path,
            "mime": flow.last_stages(steps)[0].worker.resp_mime_type,
            "stream": is_streaming(steps),
        }
        if flow.is_linear(steps):
            config["stages"] = [index_of[id(step)] for step in steps]
        else:
            config["stages"] = []
            config["flow"] = flow.describe(steps, index_of)
        route_configs.append(config)
    return stages, route_configs


@contextlib.contextmanager
def scoped_environment(env: dict[str, str] | None) -> Iterator[None]:
    """Set variables in this process for the duration of the block, then restore them.

    Worker processes are started inside it with their stage's ``env``, so the variables are
    there from the child's first instruction (before the user's module is imported).
    """
    if not env:
        yield
        return
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
