"""What :class:`Server` and :class:`AsyncServer` share: the engine behind them, one call.

:class:`Backend` turns the servlet into one mosec route (:mod:`mosec.mpserver.plan`), runs it
with :meth:`mosec.Server.local` and makes one call: the input pickled, the engine's answer
turned back into the result or the exception. A call blocks its thread; a submitted one does
not (a stream's many items in flight come back through one collector thread, not a thread
each). The engine owns the batching, the routing, the queues, the per-call deadline and the
workers' lives; :class:`ServerBase` keeps mpservice's admission rule (``capacity``,
``backlog``, back-pressure), which the engine's own capacity (set to the same number) only
backs up.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import multiprocessing
import os
import pickle
import shutil
import tempfile
import threading
from multiprocessing.reduction import ForkingPickler
from time import perf_counter
from typing import Any, Callable

import mosec
from mosec import _engine
from mosec.errors import StoreFullError
from mosec.flow import split_joined
from mosec.local import LocalResponse
from mosec.mpserver import plan
from mosec.mpserver.errors import (
    PROTOCOL,
    ServerBacklogFull,
    TimeoutError,
    ensemble_result,
    error_from_answer,
    unpack_exception,
)
from mosec.mpserver.servlets import Servlet
from mosec.mpserver.stages import init_error_path
from mosec.store.arena import ArenaStore
from mosec.store.codec import encode, is_reference, parse_reference
from mosec.store.mapping import ArenaMapping

#: The largest input a call may hand over (the engine needs a bound; mpservice has none).
MAX_CALL_BYTES = 1 << 40
#: The one route of a server.
ROUTE = "/inference"
#: The bytes of a server's arena, made when its shared-memory directory has room for twice
#: as much (else every payload is a pickle through the engine, as mpservice's through pipes).
#: Inputs and hand-overs with large buffers go through it; what finds no room goes inline.
ARENA_BYTES = 256 << 20
#: How long a call waits for room in a full arena before its input goes inline (ms); stages
#: never wait (their outputs go inline at once), so a full arena cannot stall the flow.
CALLER_ARENA_WAIT_MS = 1000
#: The engine's default deadline, which bounds the drain when the server stops (seconds);
#: every call gives its own deadline.
DRAIN_S = 60.0


class Backend:
    """The engine and the workers of one server, and one call through them."""

    def __init__(self, servlet: Servlet, capacity: int, backlog: Callable[[], int]) -> None:
        """Describe the run; nothing starts before :meth:`start`.

        Args:
            servlet: the servlet tree.
            capacity: the engine's capacity (the server admits no more than this).
            backlog: the server's backlog now, for a ``ServerBacklogFull`` raised here.
        """
        self._servlet = servlet
        self._capacity = capacity
        self._backlog = backlog
        self._local: Any = None
        self._client: Any = None
        self._joined = False
        self._report_dir: str | None = None
        #: The arena as this process writes call inputs into it, when the server has one.
        self._store: ArenaStore | None = None

    def start(self) -> None:
        """Start the engine and every worker; returns once each worker's ``__init__`` is done.

        Raises:
            Exception: the exception a worker's ``__init__`` raised (its own type), a pickling
                error for a worker class or arguments that cannot reach a spawned process, or
                ``RuntimeError`` when a stage cannot start for another reason.
        """
        self._report_dir = tempfile.mkdtemp(prefix="mpserver-")
        try:
            arena = _arena_fits()
            route = plan.build(self._servlet, self._report_dir, arena)
            _check_picklable(route)
            server = mosec.Server()
            server._add_route(ROUTE, route.steps, http=False)
            local = server.local(
                capacity=self._capacity,
                timeout=DRAIN_S,
                # mpservice has no size limit on what a call hands over, and logs quietly.
                max_request_size=MAX_CALL_BYTES,
                log_level="warning",
                shm_size=ARENA_BYTES if arena else None,
                shm_wait_ms=0,
            )
            try:
                self._client = local.__enter__()
            except RuntimeError:
                raised = self._init_error(route.worker_names)
                if raised is not None:
                    # Not ``from``: the exception's cause is its worker-side traceback.
                    raise raised  # noqa: B904
                raise
        except BaseException:
            self._remove_reports()
            raise
        self._local = local
        self._joined = route.joined
        path = self._client.arena_path
        if path is not None:
            self._store = ArenaStore(ArenaMapping(path, CALLER_ARENA_WAIT_MS))

    def stop(self) -> None:
        """Drain, stop every worker (their ``cleanup`` runs) and the engine."""
        local, self._local = self._local, None
        try:
            if local is not None:
                local.__exit__(None, None, None)
        finally:
            self._client = None
            self._store = None
            self._remove_reports()

    def call(self, x: Any, t0: float, t1: float, timeout: float) -> Any:
        """Run ``x`` through the route until ``t0 + timeout``; blocks this thread.

        Args:
            x: the input.
            t0: when the call began (``perf_counter``).
            t1: when it was admitted.
            timeout: seconds from ``t0``.

        Raises:
            Exception: the item's exception (its own type), ``TimeoutError`` past the deadline.
        """
        return self.result(self.submit(x, t0, t1, timeout).result(), t0, t1)

    def submit(
        self, x: Any, t0: float, t1: float, timeout: float
    ) -> concurrent.futures.Future[LocalResponse]:
        """:meth:`call` without waiting: the future gets the engine's answer.

        :meth:`result` turns that answer into the result, or raises its exception.

        Raises:
            Exception: ``x`` cannot be pickled, or ``TimeoutError`` when its time is up already.
        """
        client = self._running()
        remaining = t0 + timeout - perf_counter()
        if remaining <= 0:
            raise _timeout(t0, t1)
        data, stored = self._encode(x)
        try:
            return client.submit(data, ROUTE, timeout=remaining, stored=stored)
        except BaseException:
            if stored:  # never handed over: nobody else will free its objects
                assert self._store is not None
                self._store.discard(parse_reference(data, self._store)[0])
            raise

    def _running(self) -> Any:
        client = self._client
        if client is None:
            raise RuntimeError("the server is not running: use it as a context manager")
        return client

    def _encode(self, x: Any) -> tuple[bytes, bool]:
        """The call's body, and whether it is an arena reference the call hands over."""
        store = self._store
        if store is not None:
            try:
                data = encode(x, store)
            except StoreFullError:
                pass  # no room within the wait: this input goes inline
            else:
                return data, is_reference(data)
        return pickle.dumps(x, protocol=PROTOCOL), False

    def result(self, answer: LocalResponse, t0: float, t1: float) -> Any:
        """The result the engine's answer carries, or its exception raised.

        Raises:
            Exception: the item's exception (its own type), ``TimeoutError`` past the deadline.
        """
        status, body = answer.status, answer.body
        if status == 200:
            if not self._joined:
                return pickle.loads(body)
            parts = split_joined(body)
            values = [
                pickle.loads(part) if code == 200 else error_from_answer(code, part)
                for code, part in parts
            ]
            return ensemble_result(values, [code != 200 for code, _ in parts])
        if status == 408:
            raise _timeout(t0, t1)
        if status == 429:  # our admission should make this impossible; the engine agrees
            raise ServerBacklogFull(self._backlog())
        raise error_from_answer(status, body)

    def arena_stats(self) -> dict[str, int] | None:
        """The arena's ``capacity``, ``used`` bytes and ``objects`` now; None without one."""
        store = self._store
        if store is None:
            return None
        capacity, used, objects = store.mapping.stats()
        return {"capacity": capacity, "used": used, "objects": objects}

    def _init_error(self, names: list[str]) -> BaseException | None:
        """The exception the first failing worker's ``__init__`` raised, when one reported."""
        assert self._report_dir is not None
        for name in names:
            path = init_error_path(self._report_dir, name)
            with contextlib.suppress(OSError):
                with open(path, "rb") as file:
                    return unpack_exception(file.read())
        return None

    def _remove_reports(self) -> None:
        if self._report_dir is not None:
            shutil.rmtree(self._report_dir, ignore_errors=True)
            self._report_dir = None


def _timeout(t0: float, t1: float) -> TimeoutError:
    return TimeoutError(f"{t1 - t0:.3f} seconds enqueue, {perf_counter() - t0:.3f} seconds total")


def _arena_fits() -> bool:
    """Whether the engine's shared-memory directory has room for an arena, twice over."""
    shm_dir = json.loads(_engine.default_config())["shm_dir"]
    try:
        stats = os.statvfs(shm_dir)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize >= 2 * ARENA_BYTES


def _check_picklable(route: plan.Plan) -> None:
    """Fail at ``__enter__``, in the caller's thread, for a stage that cannot be spawned.

    A worker class that is local (defined in a function) or a keyword argument that does not
    pickle would otherwise fail inside the engine's supervisor, far from its cause.
    """
    for runtime in route.runtimes:
        try:
            ForkingPickler.dumps(runtime.worker)
        except Exception as err:
            note = (
                f"mosec.mpserver runs every servlet's workers in spawned processes, so "
                f"{runtime.worker.__name__}'s worker class and keyword arguments must pickle"
            )
            if hasattr(err, "add_note"):
                err.add_note(note)
            raise


class StreamEnd:
    """A stream's feeder read the whole input."""


class StreamRaised:
    """Reading a stream's input raised: the stream raises it too."""

    def __init__(self, error: BaseException) -> None:
        """Keep the error for the stream's reader."""
        self.error = error


class ServerBase:
    """mpservice's server surface shared by both servers: capacity, backlog, debug info."""

    def __init__(self, servlet: Servlet, *, capacity: int = 256) -> None:
        """Describe the server; it starts when its context is entered.

        Raises:
            ValueError: ``capacity`` below 1.
        """
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.servlet = servlet
        self._capacity = capacity
        self._backlog = 0
        self._backend = Backend(servlet, capacity, lambda: self._backlog)

    def __getstate__(self) -> Any:
        """A server holds processes and threads: refuse to pickle it."""
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    @classmethod
    def get_mp_context(cls) -> Any:
        """The spawn context, which every process of this package uses."""
        return multiprocessing.get_context("spawn")

    @property
    def capacity(self) -> int:
        """The most requests in the server at once, all stages together."""
        return self._capacity

    @property
    def backlog(self) -> int:
        """Requests accepted and not finished yet."""
        return self._backlog

    def debug_info(self) -> dict[str, Any]:
        """The server's state, as JSON-friendly values."""
        return {
            "type": type(self).__name__,
            "datetime": str(datetime.datetime.now(datetime.timezone.utc)),
            "perf_counter": perf_counter(),
            "capacity": self._capacity,
            "backlog": self._backlog,
            "servlet": _describe(self.servlet),
            "arena": self._backend.arena_stats(),
            "pid": os.getpid(),
            "active_processes": [str(p) for p in multiprocessing.active_children()],
            "active_threads": [str(t) for t in threading.enumerate()],
        }


def _describe(servlet: Servlet) -> dict[str, Any]:
    info: dict[str, Any] = {"type": type(servlet).__name__, "repr": repr(servlet)}
    if servlet.children:
        info["children"] = [_describe(child) for child in servlet.children]
    return info
