"""Helpers shared by the tests that drive ``servers/ipc_arena.py``: the arena's usage, its rest.

The arena's state is read from the server's metrics (``<namespace>_shm_used_bytes`` and
``<namespace>_shm_objects``), so the tests see what the engine sees.
"""

from __future__ import annotations

import json

from inflight import Hold
from server_util import Server, wait_until

from mosec import _engine

_DEFAULTS = json.loads(_engine.default_config())
#: The metrics namespace of a server started without ``--namespace``.
NS: str = _DEFAULTS["namespace"]
#: How long a producer waits for room in a full arena (the engine's default), in seconds.
WAIT_S: float = _DEFAULTS["shm_wait_ms"] / 1000
#: The arena is empty: no bytes used, no object alive.
EMPTY = (0.0, 0.0)


def arena_usage(server: Server) -> tuple[float, float]:
    """``(used bytes, objects)`` of the server's arena now."""
    return server.metric(f"{NS}_shm_used_bytes"), server.metric(f"{NS}_shm_objects")


def wait_at_rest(
    server: Server, baseline: tuple[float, float] = EMPTY, timeout: float = 20.0
) -> None:
    """Wait until no task is in flight, then until the arena is back at ``baseline``.

    Raises:
        AssertionError: either did not happen in time; the message ends with the server's log.
    """
    wait_until(lambda: server.metric(f"{NS}_remaining_task") == 0, timeout, "no task in flight")
    try:
        wait_until(lambda: arena_usage(server) == baseline, 10.0, "the arena back at its baseline")
    except AssertionError:
        raise AssertionError(
            f"arena holds {arena_usage(server)} (bytes, objects), baseline {baseline}:\n"
            + server.logs()[-4000:]
        ) from None


def hold_keys(hold: Hold, stage: str) -> dict[str, str]:
    """The request keys that park a request in ``stage`` ("1" or "2") until ``hold`` is released."""
    return {f"mark{stage}": str(hold.mark), f"hold{stage}": str(hold.release_file)}
