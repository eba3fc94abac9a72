"""From the routes to the engine's stages: which paths are allowed, and how stages are shared.

Each distinct :class:`~mosec.Runtime` object is one stage (one pool of processes, one queue), also
when several routes list it: the engine then batches requests of all those routes together, and
tells the worker per item whether the stage is that route's first (INGRESS) or last (EGRESS).
A route streams server-sent events when the worker of its last stage is an ``SSEWorker``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mosec import _engine
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

    def engine_config(self) -> dict[str, Any]:
        """The stage's entry in the engine config.

        The engine reads a ``max_wait_time`` of 0 as the server's ``--wait``.
        """
        runtime = self.runtime
        return {
            "name": runtime.name,
            "num": runtime.num,
            "max_batch_size": runtime.max_batch_size,
            "max_wait_time_ms": runtime.max_wait_time,
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


def is_streaming(runtimes: list[Runtime]) -> bool:
    """Whether a route answers with an event stream: its last worker is an ``SSEWorker``."""
    return issubclass(runtimes[-1].worker, SSEWorker)


def plan(routes: dict[str, list[Runtime]]) -> tuple[list[StagePlan], list[dict[str, Any]]]:
    """Number the stages (one per distinct Runtime object) and describe the routes.

    Args:
        routes: ``{path: [runtime, ...]}`` in registration order.

    Returns:
        The stages in engine order, and each route's entry of the engine config.
    """
    index_of: dict[int, int] = {}
    stages: list[StagePlan] = []
    route_configs = []
    for path, runtimes in routes.items():
        indices = []
        for runtime in runtimes:
            if id(runtime) not in index_of:
                index_of[id(runtime)] = len(stages)
                stages.append(StagePlan(len(stages), runtime))
            indices.append(index_of[id(runtime)])
        route_configs.append(
            {
                "path": path,
                "stages": indices,
                "mime": runtimes[-1].worker.resp_mime_type,
                "stream": is_streaming(runtimes),
            }
        )
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
