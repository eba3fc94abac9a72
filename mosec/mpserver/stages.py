"""The mosec workers that run servlets: one generic adapter per kind of stage.

Each servlet becomes a :class:`mosec.Runtime` whose worker class is made by :func:`stage_class`:
a subclass of :class:`ServletStage`, :class:`ChooserStage` or :class:`JoinStage` carrying its
:class:`StageParams` as a class attribute. Those classes are made at run time, so they cannot be
imported by name in a spawned process; their metaclass is registered with :mod:`copyreg` to
pickle as "make this kind of stage with these parameters" instead, and the worker process makes
the same class again when it unpickles its spec. The parameters hold the user's worker class (by
name), the servlet's keyword arguments (pickled, as mpservice pickles them) and where the stage
sits in the ensembles around it.

Every payload is a pickle (protocol 5) in all four of mosec's (de)serializers, so an item is the
same Python object whichever stage of a route it enters or leaves. A failure is an exception packed
into an error answer (:class:`~mosec.mpserver.errors.ObjectError`); the engine ends the item there
and its caller rebuilds the exception.

Inside an ensemble with ``fail_fast=True`` a stage's failure is already the ensemble's:
the stage wraps its exception in an :class:`~mosec.mpserver.errors.EnsembleError` (once per
enclosing fail-fast ensemble) before packing it, and the engine fails the item at once. Under
``fail_fast=False`` the packed exception fills the member's slot, and the stage after the
ensemble applies mpservice's rule (every member failed: an ``EnsembleError``) in ``_mosec_join``.
"""

from __future__ import annotations

import abc
import atexit
import copyreg
import logging
import multiprocessing
import operator
import os
import pickle
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, cast

from mosec.errors import StoreFullError
from mosec.mpserver.errors import (
    PROTOCOL,
    EnsembleError,
    ObjectError,
    ensemble_result,
    error_from_answer,
    pack_exception,
)
from mosec.mpserver.worker import Worker, outcomes
from mosec.store.arena import arena_store
from mosec.store.codec import decode, encode, is_reference
from mosec.worker import Worker as MosecWorker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enclosing:
    """An ensemble around a stage: the member slot the stage is in, and the ensemble's rule."""

    slot: int
    size: int
    fail_fast: bool


@dataclass(frozen=True)
class StageParams:
    """What a stage's worker process needs to run its part of the servlet tree.

    Attributes:
        target: the user's :class:`Worker` subclass, or the ``SwitchServlet`` (choosers).
        init_kwargs: the servlet's extra keyword arguments for the worker's ``__init__``.
        cpus: each process's ``cpu_affinity`` (process servlets), or None (threads, others).
        base_name: the prefix of the process (or thread) names, mpservice's.
        threads: whether the workers are a thread servlet's (no ``cpu_affinity``).
        enclosing: the ensembles around the stage, innermost first.
        report_dir: where a worker whose ``__init__`` raised leaves the packed exception.
        arena: whether the server has an arena: inputs and hand-overs with large buffers then
            travel through it (read into the reader's own copy), small ones inline.
    """

    target: Any = None
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    cpus: list[Any] | None = None
    base_name: str = ""
    threads: bool = False
    enclosing: tuple[Enclosing, ...] = ()
    report_dir: str | None = None
    arena: bool = False


class _SlotError:
    """A failed member's slot on its way into ``_mosec_join`` (an exception may also be data)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Failure:
    """An item's failure inside a batch; encoding it raises its error (a per-item answer)."""

    __slots__ = ("error",)

    def __init__(self, error: ObjectError) -> None:
        self.error = error


class _Stage(MosecWorker):
    """What every stage shares: pickle payloads, packed failures, mpservice's join rule."""

    _mp_params: StageParams = StageParams()

    def _mp_fail(self, exc: BaseException) -> ObjectError:
        """The error answer for ``exc``, as the ensembles around this stage see it."""
        for ensemble in self._mp_params.enclosing:
            if not ensemble.fail_fast:
                break  # the failure fills this ensemble's slot; its join decides
            slots: list[Any] = [None] * ensemble.size
            slots[ensemble.slot] = exc
            wrapped = EnsembleError({"y": slots, "n": 1})
            wrapped.__cause__ = exc
            exc = wrapped
        return ObjectError(pack_exception(exc))

    def _mp_loads(self, data: bytes) -> Any:
        try:
            if self._mp_params.arena and is_reference(data):
                # A copy of its own, writable, as mpservice's unpickled input is: the item may
                # keep it or change it in place whatever happens to the arena object after.
                return decode(data, arena_store(), private=True)
            return pickle.loads(data)
        except Exception as err:
            raise self._mp_fail(err) from err

    def _mp_dumps(self, data: Any, handover: bool = False) -> bytes:
        if isinstance(data, _Failure):
            raise data.error
        try:
            if handover and self._mp_params.arena:
                try:
                    return encode(data, arena_store())
                except StoreFullError:
                    pass  # the arena is an accelerator: with no room, the output goes inline
            return pickle.dumps(data, protocol=PROTOCOL)
        except Exception as err:
            try:
                raise TypeError(f"a result cannot be pickled: {type(err).__name__}: {err}") from err
            except TypeError as explained:
                raise self._mp_fail(explained) from err

    def deserialize(self, data: bytes) -> Any:
        """The caller's input (a pickle)."""
        return self._mp_loads(data)

    def deserialize_ipc(self, data: bytes) -> Any:
        """The previous stage's output (a pickle)."""
        return self._mp_loads(data)

    def serialize(self, data: Any) -> bytes:
        """The caller's result (a pickle), or this item's failure."""
        return self._mp_dumps(data)

    def serialize_ipc(self, data: Any) -> bytes:
        """The next stage's input (large buffers in the arena), or this item's failure."""
        return self._mp_dumps(data, handover=True)

    def _mosec_member_error(self, status: int, body: bytes) -> Any:
        """A failed member's slot: its rebuilt exception, marked as a failure."""
        return _SlotError(error_from_answer(status, body))

    def _mosec_join(self, slots: list[Any]) -> Any:
        """The members' results in order; every member failed: an ``EnsembleError``."""
        failed = [isinstance(slot, _SlotError) for slot in slots]
        values = [slot.error if isinstance(slot, _SlotError) else slot for slot in slots]
        try:
            return ensemble_result(values, failed)
        except EnsembleError as err:
            raise self._mp_fail(err) from err


class ServletStage(_Stage):
    """A process or thread servlet's worker: builds the user's worker, runs ``call`` on items."""

    def __init__(self) -> None:
        """Build the user's worker as mpservice's servlet would, in this process (or thread)."""
        params = self._mp_params
        index = self.worker_id - 1  # mosec numbers workers from 1, mpservice from 0
        kwargs = dict(params.init_kwargs)
        kwargs["worker_index"] = index
        name = f"{params.base_name}-{index}"
        thread = threading.current_thread()
        previous = thread.name
        if params.threads:
            thread.name = name
        else:
            kwargs["cpu_affinity"] = params.cpus[index] if params.cpus else None
            multiprocessing.current_process().name = name
        try:
            self._mp_worker: Worker = params.target(**kwargs)
        except BaseException as err:
            _report_init_error(params.report_dir, name, err)
            raise
        finally:
            thread.name = previous
        worker = self._mp_worker
        self._mp_preprocess = getattr(worker, "preprocess", None)
        # mpservice's own ``stream`` cannot tell a raised exception from a returned one; when
        # the user kept it, ``call`` runs here directly so that exceptions can also be data.
        self._mp_own_stream = type(worker).stream is not Worker.stream
        atexit.register(self._mp_cleanup)

    def _mp_cleanup(self) -> None:
        """At the process's exit (atexit, main thread): the worker's ``cleanup()``."""
        if threading.current_thread() is threading.main_thread():
            # The server may SIGTERM a worker that is already exiting; the handler's
            # SystemExit must not cut a cleanup short (SIGKILL still ends a stuck one).
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self._mp_worker.cleanup()
        except Exception:
            logger.exception("%s.cleanup() raised", type(self._mp_worker).__name__)

    def forward(self, data: list[Any]) -> list[Any]:
        """Run the items through ``preprocess`` and ``call``; a failure stays with its item.

        The engine always hands this stage a list (a batch, or what was queued for a servlet
        that does not batch: see :mod:`mosec.mpserver.plan`).
        """
        return self._mp_run(data)

    def _mp_run(self, items: list[Any]) -> list[Any]:
        results: list[Any] = [None] * len(items)
        positions: list[int] = []
        inputs: list[Any] = []
        preprocess = self._mp_preprocess
        for index, item in enumerate(items):
            if preprocess is not None:
                try:
                    item = preprocess(item)
                except Exception as err:
                    results[index] = _Failure(self._mp_fail(err))
                    continue
            positions.append(index)
            inputs.append(item)
        size = self._mp_worker.batch_size
        if size:
            chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
            places = [positions[i : i + size] for i in range(0, len(positions), size)]
            for chunk_places, outcome in zip(places, self._mp_outcomes(chunks)):
                self._mp_spread(results, chunk_places, outcome)
        else:
            for index, (ok, value) in zip(positions, self._mp_outcomes(inputs)):
                results[index] = value if ok else _Failure(self._mp_fail(value))
        return results

    def _mp_outcomes(self, inputs: list[Any]) -> list[tuple[bool, Any]]:
        """``(ok, value)`` for each input of ``call`` (an item, or a batch), in order."""
        worker = self._mp_worker
        if not self._mp_own_stream:
            return list(outcomes(worker.call, inputs, worker.num_stream_threads))
        try:
            values = list(worker.stream(iter(inputs)))
            if len(values) != len(inputs):
                raise RuntimeError(
                    f"{type(worker).__name__}.stream() yielded {len(values)} results "
                    f"for {len(inputs)} inputs"
                )
        except Exception as err:
            return [(False, err)] * len(inputs)
        return [(not isinstance(value, Exception), value) for value in values]

    def _mp_spread(self, results: list[Any], places: list[int], outcome: tuple[bool, Any]) -> None:
        """One batch's outcome onto its items: a result each, or the same failure for all."""
        ok, value = outcome
        if ok:
            try:
                count = len(value)
            except TypeError:
                count = -1
            if count == len(places):
                for index, each in zip(places, value):
                    results[index] = each
                return
            shape = f"{count} results" if count >= 0 else f"a {type(value).__name__}"
            try:
                raise RuntimeError(
                    f"{type(self._mp_worker).__name__}.call() returned {shape} for a batch of "
                    f"{len(places)}; it must return one result per item, in order"
                )
            except RuntimeError as err:
                value = err
        failure = _Failure(self._mp_fail(value))
        for index in places:
            results[index] = failure


class ChooserStage(_Stage):
    """A switch servlet's chooser: ``switch(x)`` gives the branch the engine sends ``x`` down."""

    def __init__(self) -> None:
        """Keep the servlet (unpickled with the stage) and its member count."""
        self._mp_switch = self._mp_params.target
        self._mp_branches = len(self._mp_switch.servlets)

    def forward(self, data: Any) -> int:
        """The branch index for one item; a raising ``switch`` or a bad index fails the item."""
        try:
            chosen = self._mp_switch.switch(data)
            index = operator.index(chosen)
            if not 0 <= index < self._mp_branches:
                raise IndexError(
                    f"{type(self._mp_switch).__name__}.switch() returned {chosen!r}; it has "
                    f"{self._mp_branches} member{'s' if self._mp_branches > 1 else ''}"
                )
        except Exception as err:
            raise self._mp_fail(err) from err
        return index


class JoinStage(_Stage):
    """After an ensemble that ends a member or a branch: its joined result, as one value."""

    def forward(self, data: Any) -> Any:
        """``_mosec_join`` made the value already."""
        return data


class _StageClass(abc.ABCMeta):
    """The metaclass of :func:`stage_class`'s classes, which pickle as their recipe."""


def stage_class(kind: type[_Stage], name: str, params: StageParams) -> type[_Stage]:
    """A worker class of ``kind`` for one stage, named after the user's class."""
    namespace: dict[str, Any] = {"_mp_params": params, "__module__": __name__}
    if params.arena:
        namespace["_mosec_store"] = "arena"  # the server gives its workers the arena
    made = _StageClass(name, (kind,), namespace)
    return cast(type[_Stage], made)


def _reduce_stage_class(cls: _StageClass) -> tuple[Any, ...]:
    return stage_class, (cls.__bases__[0], cls.__name__, cls.__dict__["_mp_params"])


copyreg.pickle(_StageClass, _reduce_stage_class)


def init_error_path(report_dir: str, name: str) -> str:
    """Where the worker named ``name`` leaves the exception its ``__init__`` raised."""
    return os.path.join(report_dir, f"{name}.init-error")


def _report_init_error(report_dir: str | None, name: str, err: BaseException) -> None:
    """Leave the packed exception for the server, which raises it from ``__enter__``."""
    if report_dir is None or not isinstance(err, Exception):
        return
    path = init_error_path(report_dir, name)
    try:
        with open(f"{path}.tmp", "wb") as file:
            file.write(pack_exception(err))
        os.replace(f"{path}.tmp", path)  # whole or absent, for a reader at any moment
    except OSError:
        logger.warning("cannot report the init error of %s in %s", name, report_dir)
