"""From the routes to the engine's stages: which paths are allowed, and how stages are shared.

Each distinct :class:`~mosec.Runtime` object is one stage (one pool of processes, one queue), also
when several routes list it: the engine then batches requests of all those routes together, and
tells the worker per item whether the stage is that route's first (INGRESS) or last (EGRESS).
A route streams server-sent events when the worker of its last stage is an ``SSEWorker``.
"""

from __future__ import annotations

from typing import Any

from mosec.runtime import Runtime
from mosec.supervisor import StagePlan
from mosec.worker import STAGE_EGRESS, STAGE_INGRESS, SSEWorker

#: Paths the engine answers itself: readiness and metrics. ``/openapi...`` is reserved too.
RESERVED_PATHS = ("/", "/metrics")
RESERVED_PREFIX = "/openapi"


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
        for position, runtime in enumerate(runtimes):
            if id(runtime) not in index_of:
                index_of[id(runtime)] = len(stages)
                stages.append(StagePlan(len(stages), runtime))
            stage = stages[index_of[id(runtime)]]
            if position == 0:
                stage.labels.add(STAGE_INGRESS)
            if position == len(runtimes) - 1:
                stage.labels.add(STAGE_EGRESS)
            indices.append(stage.index)
        route_configs.append(
            {
                "path": path,
                "stages": indices,
                "mime": runtimes[-1].worker.resp_mime_type,
                "stream": is_streaming(runtimes),
            }
        )
    return stages, route_configs
