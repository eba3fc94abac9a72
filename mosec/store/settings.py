"""What the server tells the engine and its workers about the stores its stages use.

IPC mixins declare the store they use with a ``_mosec_store`` class attribute (``"arena"`` or
``"redis"``). The server reads it to ask the engine for that store (the arena is created by the
engine at start; Redis keys of abandoned tasks are deleted by the engine), then tells each
worker process where the stores are in its pickled spec (:class:`WorkerStores`), which the
worker installs with :func:`configure_worker` before it builds the user's worker.

The ``MOSEC_ARENA``/``MOSEC_SHM_WAIT_MS`` variables are read only when nothing was configured: by
programs that map a server's arena without being its workers (the arena benchmark, say).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mosec import log

#: Variable naming the arena file, set by the server for its workers.
ARENA_ENV = "MOSEC_ARENA"
#: Variable with the milliseconds a producer waits for room in a full arena.
WAIT_ENV = "MOSEC_SHM_WAIT_MS"
#: Variable carrying the Redis URL to worker processes. ``set_redis_url`` runs in the server
#: process, usually under ``if __name__ == "__main__"``, which spawned workers never execute, so
#: the class attribute alone would not reach them; the environment they inherit does.
REDIS_URL_ENV = "MOSEC_REDIS_URL"
#: mosec 0.9's name of the same variable, which scripts written for it may set directly.
MOSEC_REDIS_URL_ENV = "MOSEC_INTERNAL_REDIS_URL"

logger = log.get_logger("store")


@dataclass(frozen=True)
class WorkerStores:
    """Where a worker process finds the server's stores; it travels in the worker's spec.

    Attributes:
        arena_path: the arena file, when the server made one.
        shm_wait_ms: how long an allocation waits for room in a full arena (``--shm-wait``).
        redis_url: the Redis of the Redis mixin, when a stage uses it.
        shm_alloc_min: the smallest numpy array an arena stage's ``forward`` makes in the arena
            (``--shm-alloc-min``; 0: none, ``None``: not configured, the default applies).
    """

    arena_path: str | None = None
    shm_wait_ms: int | None = None
    redis_url: str | None = None
    shm_alloc_min: int | None = None


# This process's stores, installed by the worker loop from its spec.
_configured = WorkerStores()


def configure_worker(stores: WorkerStores) -> None:
    """Install the stores of this worker process (before the user's worker is built)."""
    global _configured
    _configured = stores


def configured() -> WorkerStores:
    """The stores installed in this process (empty outside a server's worker)."""
    return _configured


def for_workers(
    engine: Any, settings: dict[str, Any], shm_wait_ms: int, shm_alloc_min: int
) -> WorkerStores:
    """What the worker processes must know of the stores the started engine serves."""
    arena = engine.arena_path() or None
    return WorkerStores(arena, shm_wait_ms, settings.get("redis_url"), shm_alloc_min)


def engine_settings(workers: Iterable[type]) -> dict[str, Any]:
    """The engine config entries for the stores these worker classes use.

    Args:
        workers: every stage's worker class.

    Raises:
        ValueError: two workers use Redis with different URLs. The engine deletes the keys of
            abandoned tasks through one connection, and spawned workers all read the one URL
            in their environment, so a second URL cannot be served.
    """
    workers = list(workers)  # read twice below; the server passes a generator
    kinds = {getattr(worker, "_mosec_store", None) for worker in workers}
    settings: dict[str, Any] = {"use_arena": "arena" in kinds}
    if "redis" in kinds:
        url = _one_redis_url(workers)
        if url is not None:
            settings["redis_url"] = url
    return settings


def _one_redis_url(workers: list[type]) -> str | None:
    """The Redis URL the workers set (None when none did); a ValueError when they disagree."""
    users: dict[str, str] = {}  # URL -> the first worker class that set it
    for worker in workers:
        if getattr(worker, "_mosec_store", None) != "redis":
            continue
        url = redis_url_of(worker)
        if url is not None:
            users.setdefault(url, worker.__name__)
    if len(users) > 1:
        (first, first_user), (second, second_user) = list(users.items())[:2]
        message = (
            f"one server uses one Redis, but {first_user} uses {first!r} and {second_user} "
            f"uses {second!r}: call set_redis_url with the same URL for every stage"
        )
        raise ValueError(message)
    return next(iter(users), None)


def redis_url_of(worker: type) -> str | None:
    """Where a Redis worker's Redis is.

    Its ``set_redis_url``, else what the server configured, else the environment (ours, then
    mosec 0.9's variable).
    """
    url = getattr(worker, "_redis_url", None) or _configured.redis_url
    return url or os.environ.get(REDIS_URL_ENV) or os.environ.get(MOSEC_REDIS_URL_ENV) or None
