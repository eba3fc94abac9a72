"""A stage of a pipeline: a worker class and how many processes of it to run."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence

from mosec.worker import Worker

_START_METHODS = ("spawn", "fork", "forkserver")


class Runtime:
    """Describes one stage: the worker class, its process count and its batching.

    Pass lists of runtimes to :meth:`mosec.Server.register_runtime` to build routes; a runtime
    that appears in several routes is one shared stage (one pool of processes).
    """

    def __init__(
        self,
        worker: type[Worker],
        num: int = 1,
        max_batch_size: int = 1,
        max_wait_time: int = 0,
        timeout: float = 0,
        start_method: str = "spawn",
        env: list[dict[str, str]] | None = None,
        *,
        threads: int = 1,
        cpus: Sequence[int | Sequence[int] | None] | None = None,
        wait_for_batch: bool = True,
    ) -> None:
        """Describe a stage.

        Args:
            worker: the :class:`Worker` subclass (importable, the processes build it).
            num: how many processes run this stage.
            max_batch_size: the largest batch given to ``forward``; 1 means no batching.
            max_wait_time: milliseconds a batch waits for more items after its first one;
                0 means the server's ``--wait``.
            timeout: seconds one ``forward`` call may take before it is stopped with 408;
                0 means the server's ``--timeout``.
            start_method: ``spawn``, ``fork`` or ``forkserver``.
            env: one dict of environment variables per process (``len(env) == num``).
            threads: how many threads of each process serve the stage, each with its own
                worker instance (built in its thread) and its own place in the engine's
                batching; for light stages beside heavy ones. A thread stage has no
                ``forward`` timeout (a signal can interrupt only the main thread).
            cpus: pins each process to CPUs with ``os.sched_setaffinity`` before its worker is
                built: one entry per process (``None``: unpinned, an int, or a list of ints).
                ``num`` is then ``len(cpus)`` (leave it at 1, or give the same number).
            wait_for_batch: False: a batch never waits for items to come (``max_wait_time``
                is not used); it is what is queued when a worker is free, up to
                ``max_batch_size``, shared among the stage's workers, and no more than about
                2 ms of the worker's measured time per item (one item until measured). For a
                worker that runs a batch's items one by one, so that many small items take
                one hop to it while slow ones still go one at a time.

        Raises:
            TypeError: when ``worker`` is not a Worker subclass.
            ValueError: when a number is out of range or ``env`` does not have ``num`` dicts.
        """
        if not (isinstance(worker, type) and issubclass(worker, Worker)):
            raise TypeError(f"worker must be a subclass of mosec.Worker, got {worker!r}")
        pins = _pins(cpus, num)
        if pins is not None:
            num = len(pins)
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_time < 0 or timeout < 0:
            raise ValueError("max_wait_time and timeout must be >= 0")
        if start_method not in _START_METHODS:
            raise ValueError(f"start_method must be one of {_START_METHODS}, got {start_method!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method {start_method!r} is not available on this platform")
        if env is not None and (len(env) != num or not all(isinstance(item, dict) for item in env)):
            raise ValueError(f"env must be a list of {num} dicts, one per process")
        self.worker = worker
        self.num = num
        self.max_batch_size = max_batch_size
        self.max_wait_time = max_wait_time
        self.timeout = timeout
        self.start_method = start_method
        self.env = env
        self.threads = threads
        self.wait_for_batch = bool(wait_for_batch)
        #: Each process's CPUs (``None``: unpinned), or None when no process is pinned.
        self.cpus = pins
        Runtime._created += 1
        #: ``<WorkerClass>_<n>``, n counting the runtimes made in this process (as mosec names
        #: stages): unique even when one class serves two stages. Metrics and logs use it, and
        #: the worker reads it as ``self.stage``.
        self.name = f"{worker.__name__}_{Runtime._created}"

    #: How many runtimes this process has made; numbers their names.
    _created = 0

    @property
    def timeout_sec(self) -> float:
        """``timeout`` under mosec's attribute name."""
        return float(self.timeout)

    def __repr__(self) -> str:
        """The stage's name and settings."""
        return (
            f"Runtime({self.name}, num={self.num}, max_batch_size={self.max_batch_size}, "
            f"max_wait_time={self.max_wait_time}, timeout={self.timeout})"
        )


def _pins(
    cpus: Sequence[int | Sequence[int] | None] | None, num: int
) -> list[list[int] | None] | None:
    """``cpus`` as one sorted CPU list (or None) per process, checked."""
    if cpus is None:
        return None
    if isinstance(cpus, (int, str)) or not isinstance(cpus, Sequence):
        raise TypeError(f"cpus must be a list with one entry per process, got {cpus!r}")
    if not cpus:
        raise ValueError("cpus must name at least one process")
    if num not in (1, len(cpus)):
        raise ValueError(f"cpus has {len(cpus)} entries for num={num}: give one per process")
    pins: list[list[int] | None] = []
    for entry in cpus:
        if entry is None:
            pins.append(None)
            continue
        chosen = [entry] if isinstance(entry, int) else list(entry)
        if not chosen or not all(isinstance(cpu, int) and cpu >= 0 for cpu in chosen):
            raise ValueError(f"a cpus entry must be None, a CPU or a list of CPUs: {entry!r}")
        pins.append(sorted(set(chosen)))
    return pins
