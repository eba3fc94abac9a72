"""A worker's ``forward`` timeout: ``MosecTimeoutError`` raised in a call that runs too long.

The deadline is kept by ``mosec._engine.ForwardWatch`` (``engine/src/py/forward_watch.rs``):
starting and stopping a call only store a deadline, and a thread of the extension alarms the
process (``SIGALRM``) when a call runs past it. ``setitimer`` around each call cost two system
calls, 40% of a small item's time in the worker. The alarm is handled in the main thread only,
so only a process's main thread has a timeout (a thread stage has none). Code inside a long C
call that does not return to Python is interrupted when the call returns.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, TypeVar

from mosec._engine import ForwardWatch
from mosec.errors import MosecTimeoutError

T = TypeVar("T")

#: This process's watch, made by :func:`install`.
_watch: ForwardWatch | None = None


def install() -> None:
    """Make ``SIGALRM`` interrupt a call past its timeout (from the main thread, once)."""
    global _watch
    signal.signal(signal.SIGALRM, _on_alarm)
    if _watch is None:
        _watch = ForwardWatch()


def call(function: Callable[[Any], T], data: Any, timeout_s: float) -> T:
    """``function(data)``, interrupted with ``MosecTimeoutError`` after ``timeout_s``.

    No timeout when ``timeout_s`` is 0 or :func:`install` was not called.
    """
    watch = _watch
    if timeout_s <= 0 or watch is None:
        return function(data)
    watch.start(timeout_s)
    try:
        return function(data)
    finally:
        # Stopped in ``finally`` so that no alarm outlives its call; one that lands right
        # here still reaches the caller's ``except`` as a timeout.
        watch.stop()


def restart(timeout_s: float) -> None:
    """Give the running call ``timeout_s`` from now (a streaming worker sent an event)."""
    if _watch is not None:
        _watch.start(timeout_s)


def _on_alarm(signum: int, frame: Any) -> None:
    if _watch is not None and not _watch.expired():
        return  # the call it was for ended before it arrived
    raise MosecTimeoutError("forward exceeded its timeout")
