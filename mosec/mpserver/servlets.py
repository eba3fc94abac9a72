"""Servlets: how workers are arranged (mpservice's API); descriptions only.

A servlet here holds what the user gave it and nothing running: :class:`~mosec.mpserver.Server`
turns the tree into mosec stages and flow steps (:mod:`mosec.mpserver.plan`), and the engine
runs them. So one servlet tree may serve several servers, one after the other or at once.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from mosec.mpserver.worker import Worker

#: One entry of ``ProcessServlet(cpus=[...])``: unpinned, one CPU, or a list of CPUs.
CpuSpec = Any


class Servlet(abc.ABC):
    """A part of the flow: simple (a worker in processes or threads) or compound."""

    @property
    @abc.abstractmethod
    def children(self) -> list[Any]:
        """The member servlets (none for a simple servlet)."""

    @property
    def workers(self) -> list[Any]:
        """The running workers in mpservice; the engine runs them here, so always empty."""
        return []

    @property
    def input_queue_type(self) -> str:
        """The queue kind in mpservice; every stage here is fed by the engine."""
        return "process"

    @property
    def output_queue_type(self) -> str:
        """The queue kind in mpservice; every stage here answers to the engine."""
        return "process"

    def start(self, q_in: Any, q_out: Any) -> None:
        """Not supported: a servlet runs inside a :class:`~mosec.mpserver.Server`.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("servlets are started by entering a mosec.mpserver.Server")

    def stop(self) -> None:
        """Nothing to stop: the server stops the stages."""
        return None


def _check_worker(worker_cls: Any) -> None:
    if not (isinstance(worker_cls, type) and issubclass(worker_cls, Worker)):
        raise TypeError(
            f"worker_cls must be a subclass of mosec.mpserver.Worker, got {worker_cls!r}"
        )


def _cpu_entry(entry: CpuSpec) -> int | list[int] | None:
    if entry is None:
        return None
    if isinstance(entry, bool) or not isinstance(entry, (int, Sequence)):
        raise ValueError(f"a cpus entry must be None, a CPU number or a list of them: {entry!r}")
    cpus = [entry] if isinstance(entry, int) else list(entry)
    if not cpus or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus):
        raise ValueError(f"a cpus entry must be None, a CPU number or a list of them: {entry!r}")
    return entry if isinstance(entry, int) else cpus


class ProcessServlet(Servlet):
    """A worker in one or more processes (for CPU-bound work)."""

    def __init__(
        self,
        worker_cls: type[Worker],
        *,
        cpus: None | int | Sequence[CpuSpec] = None,
        worker_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Describe the processes.

        Args:
            worker_cls: the :class:`Worker` subclass (importable: processes are spawned).
            cpus: None: one unpinned process; an int n: n unpinned processes; a list: one
                process per entry, pinned to that entry (None, a CPU, or a list of CPUs).
            worker_name: the prefix of the process names (default ``<class>-process``).
            **kwargs: passed to ``worker_cls.__init__`` in each process (pickled).

        Raises:
            TypeError: ``worker_cls`` is not a Worker subclass.
            ValueError: ``cpus`` names no process or has a bad entry.
        """
        _check_worker(worker_cls)
        if cpus is None:
            entries: list[int | list[int] | None] = [None]
        elif isinstance(cpus, bool) or not isinstance(cpus, (int, Sequence)):
            raise ValueError(f"cpus must be None, a process count or a list, got {cpus!r}")
        elif isinstance(cpus, int):
            if cpus < 1:
                raise ValueError(f"cpus={cpus} starts no process; give at least 1")
            entries = [None] * cpus
        else:
            if not cpus:
                raise ValueError("cpus=[] starts no process; give at least one entry")
            entries = [_cpu_entry(entry) for entry in cpus]
        self.worker_cls = worker_cls
        self.cpus = entries
        self.worker_name = worker_name
        self.init_kwargs = kwargs

    @property
    def children(self) -> list[Any]:
        """None: a simple servlet."""
        return []

    def __repr__(self) -> str:
        """The worker class and process count."""
        return f"ProcessServlet({self.worker_cls.__name__}, {len(self.cpus)} processes)"


class ThreadServlet(Servlet):
    """A worker in one or more threads (for I/O-bound or light work)."""

    def __init__(
        self,
        worker_cls: type[Worker],
        *,
        num_threads: int | None = None,
        worker_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Describe the threads.

        Args:
            worker_cls: the :class:`Worker` subclass; it must pickle (the threads live in a
                worker process of the engine, not in the caller's process).
            num_threads: how many threads, each with its own worker (None: 1).
            worker_name: the prefix of the thread names (default ``<class>-thread``).
            **kwargs: passed to ``worker_cls.__init__`` in each thread.

        Raises:
            TypeError: ``worker_cls`` is not a Worker subclass.
            ValueError: ``num_threads`` below 1.
        """
        _check_worker(worker_cls)
        num = 1 if num_threads is None else num_threads
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"num_threads must be None or an integer >= 1, got {num_threads!r}")
        self.worker_cls = worker_cls
        self.num_threads = num
        self.worker_name = worker_name
        self.init_kwargs = kwargs

    @property
    def children(self) -> list[Any]:
        """None: a simple servlet."""
        return []

    def __repr__(self) -> str:
        """The worker class and thread count."""
        return f"ThreadServlet({self.worker_cls.__name__}, {self.num_threads} threads)"


def _members(servlets: Sequence[Any], what: str, least: int) -> tuple[Servlet, ...]:
    if len(servlets) < least:
        raise ValueError(f"{what} needs at least {least} member servlet{'s' if least > 1 else ''}")
    for servlet in servlets:
        if not isinstance(servlet, Servlet):
            raise TypeError(f"a member of {what} must be a Servlet, got {servlet!r}")
    return tuple(servlets)


class SequentialServlet(Servlet):
    """Servlets in a line: each member's output is the next member's input."""

    def __init__(self, *servlets: Servlet) -> None:
        """Describe the line (at least one member)."""
        self.servlets = _members(servlets, "SequentialServlet", 1)

    @property
    def children(self) -> list[Any]:
        """The members, in order."""
        return list(self.servlets)


class EnsembleServlet(Servlet):
    """Every member gets each input; the result is the list of their results, in member order.

    ``fail_fast=True``: the first member error makes the item an :class:`EnsembleError`.
    ``fail_fast=False``: a failed member's slot holds its exception; when every member failed
    the item is an :class:`EnsembleError`.
    """

    def __init__(self, *servlets: Servlet, fail_fast: bool = True) -> None:
        """Describe the ensemble (at least two members)."""
        self.servlets = _members(servlets, "EnsembleServlet", 2)
        self.fail_fast = bool(fail_fast)

    @property
    def children(self) -> list[Any]:
        """The members, in order."""
        return list(self.servlets)


class SwitchServlet(Servlet):
    """Each input goes to the one member :meth:`switch` names.

    Subclass it and implement ``switch``. It runs in a worker process of the engine (mpservice
    runs it in the caller's process), so the subclass must be importable and its attributes
    picklable.
    """

    def __init__(self, *servlets: Servlet) -> None:
        """Describe the choice (at least one member)."""
        self.servlets = _members(servlets, type(self).__name__, 1)

    @property
    def children(self) -> list[Any]:
        """The members, in order."""
        return list(self.servlets)

    @abc.abstractmethod
    def switch(self, x: Any) -> int:
        """The index (``0 .. len(members) - 1``) of the member that handles ``x``."""
        raise NotImplementedError
