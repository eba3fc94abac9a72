"""The object stores a server runs for its stages, from the server's side.

IPC mixins declare the store they use with a ``_mosec_store`` class attribute (``"arena"`` or
``"redis"``). The server reads it to ask the engine for that store (the arena is created by the
engine at start; Redis keys of abandoned tasks are deleted by the engine), then tells the
worker processes where the arena is through the environment they inherit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from mosec.mixin.arena import ARENA_ENV, WAIT_ENV


def engine_settings(workers: Iterable[type], defaults: dict[str, Any]) -> dict[str, Any]:
    """The engine config entries for the stores these worker classes use.

    Args:
        workers: every stage's worker class.
        defaults: the engine's default config (for the arena wait).
    """
    workers = list(workers)  # read twice below; the server passes a generator
    kinds = {getattr(worker, "_mosec_store", None) for worker in workers}
    settings: dict[str, Any] = {"use_arena": "arena" in kinds}
    if "redis" in kinds:
        urls = {getattr(worker, "_redis_url", None) for worker in workers}
        urls.discard(None)
        if len(urls) == 1:
            settings["redis_url"] = urls.pop()
    settings["shm_wait_ms"] = defaults["shm_wait_ms"]
    return settings


def export_to_workers(engine: Any, settings: dict[str, Any]) -> None:
    """Publish the arena's path to the worker processes started after this call."""
    path = engine.arena_path()
    if path:
        os.environ[ARENA_ENV] = path
        os.environ[WAIT_ENV] = str(settings["shm_wait_ms"])
