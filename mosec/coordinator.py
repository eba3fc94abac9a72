"""The main loop of a worker process: warm up, connect, then answer batches until the engine goes.

A worker process:

1. sets the stage's environment and builds the worker (:func:`mosec.stage_worker.build`: the
   user's ``__init__`` already sees ``worker_id``, ``stage`` and ``max_batch_size``);
2. warms up (:func:`mosec.stage_worker.warm_up`) and only then connects to the engine and sends
   HELLO; the engine accepts HTTP connections only once every worker has, so nothing is served
   while a model is still loading;
3. loops: receive a BATCH, decode each item (``deserialize`` on an item flagged INGRESS,
   ``deserialize_ipc`` otherwise), run ``forward`` on the items that decoded, encode each result
   (``serialize`` when flagged EGRESS, ``serialize_ipc`` otherwise) and send the RESULT with a
   status per item. An unbatched stage's BATCH holds the requests queued when the worker got
   free (``engine/src/batcher.rs``); each is handled on its own, with its own ``forward`` call;
4. exits with 0 when the engine closes the socket or on SIGTERM (after the batch in hand).
   SIGINT is ignored: on Ctrl-C the server process drains the requests first, then stops us.

Warm-up runs ``forward`` on each example as it is (see :mod:`mosec.stage_worker`). A warm-up that
raises is logged as an error naming the worker and the example's type, and the worker serves
anyway, as in mosec (``--dry-run`` is the strict check). An ``__init__`` that raises stops the
process with exit code 1, which the server reports.

Errors: a ``MosecError`` gives its own status and the body ``"<msg>: <text>"``; any other exception
gives 500 with the body ``"inference internal error"`` and its traceback in the log. Decoding and
encoding errors hit only their item; an error from ``forward`` hits every item it was given; a
batched ``forward`` that does not return a list of the same length is a 500 for the whole batch.

``forward`` has its own timeout (the stage's ``timeout`` in seconds; 0 means none), enforced with
``SIGALRM``: a forward still running then is interrupted with ``MosecTimeoutError`` (408). Code
that sits inside a long C call without returning to Python is interrupted when the call returns.
For an ``SSEWorker`` it is an idle timeout: each event sent restarts it (see :mod:`mosec.stream`).

Streaming: an ``SSEWorker`` gets an event channel for each ``forward`` call. When every request of
the call is abandoned, sending an event raises ``StreamCancelled``; its items are answered with
status 499, which the engine discards (the tasks are gone).

Logs: while a batch is in hand, every record carries ``request_id`` (the item's id, or the list of
the batch's ids; see :mod:`mosec.log`).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import struct
import sys
import threading
from collections.abc import Sequence
from typing import Any

from mosec import log, stage_worker
from mosec.errors import (
    INTERNAL_ERROR_BODY,
    ClientError,
    MosecError,
    MosecTimeoutError,
    StreamCancelled,
    ValidationError,
    error_response,
)
from mosec.flow import split_joined
from mosec.protocol import (
    FLAG_EGRESS,
    FLAG_INGRESS,
    FLAG_JOINED,
    FLAG_REFERENCE,
    STATUS_OK,
    Received,
    Reply,
    WorkerLink,
)
from mosec.store import settings as store_settings
from mosec.store.settings import WorkerStores
from mosec.stream import EventChannel
from mosec.worker import SSEWorker, Worker

logger = log.get_logger("coordinator")

#: The status of an item whose clients are gone; the engine has dropped the task and discards it.
CLIENT_GONE = 499


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; it crosses the process boundary by pickle."""

    worker: type[Worker]
    stage_index: int
    stage_name: str
    worker_id: int
    max_batch_size: int
    timeout_s: float
    socket_path: str
    env: dict[str, str] | None
    log_level: str
    log_json: bool
    #: Where the server's stores are (the arena's file, Redis); none without store mixins.
    stores: WorkerStores = WorkerStores()
    #: Whether the stage is a Switch's chooser (its forward answers branch indices).
    chooser: bool = False
    #: Threads of this process serving the stage (ids ``worker_id`` .. ``+ threads - 1``).
    threads: int = 1
    #: CPUs to pin this process to, or None.
    cpus: list[int] | None = None

    @property
    def name(self) -> str:
        """``<stage name|worker id>``, used in log lines (as mosec names workers)."""
        return f"<{self.stage_name}|{self.worker_id}>"


class _Stop:
    """What SIGTERM should do: exit at once while idle, or after the batch in hand."""

    busy = False
    requested = False
    #: Set once the loop has ended: the process is exiting on its own (atexit hooks may run).
    ended = False

    def handle(self, signum: int, frame: Any) -> None:
        if self.ended:
            return
        if self.busy:
            self.requested = True
        else:
            raise SystemExit(0)


def main(spec: WorkerSpec, connected: Any = None) -> None:
    """Run one worker process until the engine closes the link.

    Args:
        spec: the stage, the worker class and the socket to connect to.
        connected: the write end of a pipe to the server; one message on it once HELLO is sent
            (by every thread of a thread stage) tells the supervisor that this worker started.
    """
    log.configure(spec.log_level, spec.log_json)
    stop = _Stop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop.handle)
    if spec.env:
        os.environ.update(spec.env)
    if spec.cpus is not None:
        # Before the worker exists, so everything it starts (threads, BLAS pools) is pinned too.
        os.sched_setaffinity(0, spec.cpus)
    store_settings.configure_worker(spec.stores)
    if spec.threads > 1:
        _serve_threads(spec, stop, connected)
        return
    worker = _build(spec)
    link = _connect(spec)
    try:
        link.send_hello(spec.stage_index, spec.worker_id, os.getpid())
        _tell_connected(connected)
        logger.debug("%s connected", spec.name)
        Loop(worker, spec, stop).run(link)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the engine went away: nothing left to answer
    finally:
        stop.ended = True
        link.close()
    logger.debug("%s stopped", spec.name)


def _connect(spec: WorkerSpec) -> WorkerLink:
    try:
        return WorkerLink.connect(spec.socket_path)
    except OSError as err:
        logger.error("%s cannot connect to the engine at %s: %s", spec.name, spec.socket_path, err)
        sys.exit(1)


def _tell_connected(connected: Any) -> None:
    if connected is not None:
        connected.send_bytes(b"1")
        connected.close()


def _serve_threads(spec: WorkerSpec, stop: _Stop, connected: Any) -> None:
    """A thread stage: ``spec.threads`` workers in this process, each on its own thread and link.

    Workers are built one after the other (their class attributes are set for each build), then
    each thread connects and answers its own batches. SIGTERM ends the process, as for a plain
    worker; a thread stage has no forward timeout (only the main thread gets signals).
    """
    specs = [
        dataclasses.replace(spec, worker_id=spec.worker_id + offset, threads=1, timeout_s=0)
        for offset in range(spec.threads)
    ]
    workers = [_build(each) for each in specs]
    links = [_connect(each) for each in specs]
    for each, link in zip(specs, links):
        link.send_hello(each.stage_index, each.worker_id, os.getpid())
    _tell_connected(connected)
    threads = [
        threading.Thread(
            target=_serve_link, args=(worker, each, stop, link), name=each.name, daemon=True
        )
        for worker, each, link in zip(workers, specs, links)
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        stop.ended = True


def _serve_link(worker: Worker, spec: WorkerSpec, stop: _Stop, link: WorkerLink) -> None:
    try:
        Loop(worker, spec, stop).run(link)
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass  # the engine went away: nothing left to answer
    finally:
        link.close()


def _build(spec: WorkerSpec) -> Worker:
    """Create and warm up the worker; exit the process with 1 if it cannot be created."""
    try:
        worker = stage_worker.build(
            spec.worker, spec.worker_id, spec.stage_name, spec.max_batch_size
        )
    except Exception:
        logger.exception("%s failed to start", spec.name)
        sys.exit(1)
    try:
        stage_worker.warm_up(worker)
    except stage_worker.WarmUpError as err:
        logger.error(
            "%s %s; it serves anyway: check that the example is what forward receives "
            "(a list of items when max_batch_size > 1)",
            spec.name,
            err,
            exc_info=err.__cause__,
        )
    # What the warm-up leased and never handed over (``shm_empty`` arrays) goes back now, as it
    # would after a batch, so an idle server's arena is empty.
    after_batch = getattr(worker, "_mosec_after_batch", None)
    if after_batch is not None:
        after_batch()
    return worker


class Loop:
    """Answers batches for one worker instance."""

    def __init__(self, worker: Worker, spec: WorkerSpec, stop: _Stop) -> None:
        """Prepare the loop.

        Args:
            worker: the warmed-up worker.
            spec: the process's description (batching, timeout, name).
            stop: the SIGTERM state shared with the signal handler.
        """
        self.worker = worker
        self.chooser = spec.chooser
        self.batched = spec.max_batch_size > 1
        self.timeout_s = spec.timeout_s
        self.name = spec.name
        self.stop = stop
        # Set by run(); a streaming worker's events go out on it.
        self.link: WorkerLink | None = None
        self.sse = worker if isinstance(worker, SSEWorker) else None
        #: A mixin's clean-up after each batch (e.g. unused arena leases), when it has one.
        self.after_batch = getattr(worker, "_mosec_after_batch", None)
        #: For a store mixin's worker: its codec's test of whether a payload is a reference.
        self.is_reference = None
        if getattr(worker, "_mosec_store", None) is not None:
            from mosec.store.codec import is_reference

            self.is_reference = is_reference
        if self.timeout_s > 0:
            stage_worker.install_timeout()

    def run(self, link: WorkerLink) -> None:
        """Receive, handle and answer batches until EOF or a requested stop."""
        stop = self.stop
        self.link = link
        while True:
            batch = link.recv_batch()
            if batch is None:
                return
            stop.busy = True
            replies = self.handle(batch, link.request_ids)
            log.set_request_ids(None)
            link.send_result(replies)
            if self.after_batch is not None:
                self.after_batch()
            stop.busy = False
            if stop.requested:
                return

    def handle(self, batch: Sequence[Received], request_ids: list[str]) -> list[Reply]:
        """Turn one BATCH into the items of its RESULT.

        Args:
            batch: the items.
            request_ids: their request ids, by position ("" where the engine sent none); the
                records logged meanwhile carry them.
        """
        if not self.batched:
            # One forward call per item: the engine hands an unbatched stage what is queued
            # (engine/src/batcher.rs), so that many small requests cost one hop.
            answers: list[Reply] = []
            for item, request_id in zip(batch, request_ids):
                log.set_request_ids(request_id or None)
                answers.append(self._handle_one(*item))
            return answers
        log.set_request_ids((request_ids[0] or None) if len(request_ids) == 1 else request_ids)
        replies: list[Reply] = [(task_id, STATUS_OK, b"", 0) for task_id, _, _ in batch]
        positions: list[int] = []
        inputs: list[Any] = []
        for index, (task_id, flags, payload) in enumerate(batch):
            try:
                data = self._decode(flags, payload)
            except (Exception, MosecTimeoutError) as err:
                replies[index] = (task_id, *self._failure(err, "decoding"))
                continue
            positions.append(index)
            inputs.append(data)
        if not inputs:
            return replies
        self._open_stream([batch[index][0] for index in positions])
        outputs = self._forward_batch(inputs, replies, positions)
        for index, output in zip(positions, outputs):
            if output is _FAILED:
                continue
            task_id, flags, _ = batch[index]
            try:
                encoded = self._encode(flags, output)
            except (Exception, MosecTimeoutError) as err:
                replies[index] = (task_id, *self._failure(err, "encoding"))
                continue
            replies[index] = (task_id, STATUS_OK, *encoded)
        return replies

    def _decode(self, flags: int, payload: bytes) -> Any:
        """One item's input: the request body, a joined ensemble output, or an IPC payload."""
        worker = self.worker
        if flags & FLAG_INGRESS:
            return worker.deserialize(payload)
        if flags & FLAG_JOINED:
            slots = [
                worker.deserialize_ipc(data)
                if status == STATUS_OK
                else worker._mosec_member_error(status, data)
                for status, data in split_joined(payload)
            ]
            return worker._mosec_join(slots)
        return worker.deserialize_ipc(payload)

    def _encode(self, flags: int, output: Any) -> tuple[bytes, int]:
        """Encode one output: ``serialize`` on the route's last stage, else ``serialize_ipc``.

        Returns:
            The payload as bytes and the item's flags: REFERENCE when a store mixin's codec says
            the payload names store objects.
        """
        if self.chooser:
            return _branch_index(output), 0
        if flags & FLAG_EGRESS:
            encoded = self.worker.serialize(output)
            return (encoded if type(encoded) is bytes else bytes(encoded)), 0
        encoded = self.worker.serialize_ipc(output)
        payload = encoded if type(encoded) is bytes else bytes(encoded)
        if self.is_reference is not None and self.is_reference(payload):
            return payload, FLAG_REFERENCE
        return payload, 0

    def _handle_one(self, task_id: int, flags: int, payload: bytes) -> Reply:
        """One item of an unbatched stage: decode, ``forward``, encode."""
        step = "decoding"
        try:
            data = self._decode(flags, payload)
            step = "forward"
            if self.sse is not None:
                self._open_stream([task_id])
            output = self._call_forward(data)
            step = "encoding"
            encoded = self._encode(flags, output)
        except (Exception, MosecTimeoutError, StreamCancelled) as err:
            return (task_id, *self._failure(err, step))
        return (task_id, STATUS_OK, *encoded)

    def _open_stream(self, task_ids: list[int]) -> None:
        """Point a streaming worker's events at the requests of the next forward call."""
        if self.sse is not None and self.link is not None:
            self.sse._events = EventChannel(self.link, task_ids, self.timeout_s)

    def _forward_batch(self, inputs: list[Any], replies: list[Reply], positions: list[int]) -> Any:
        failure: tuple[int, bytes, int] | None = None
        try:
            outputs = self._call_forward(inputs)
        except (Exception, MosecTimeoutError, StreamCancelled) as err:
            failure = self._failure(err, "forward")
        else:
            if isinstance(outputs, (list, tuple)) and len(outputs) == len(inputs):
                return outputs
            got = f"{len(outputs)} items" if isinstance(outputs, (list, tuple)) else type(outputs)
            logger.error(
                "%s forward got a batch of %d and must return a list of %d, returned %s",
                self.name,
                len(inputs),
                len(inputs),
                got,
            )
            failure = (500, INTERNAL_ERROR_BODY.encode(), 0)
        for index in positions:
            replies[index] = (replies[index][0], *failure)
        return [_FAILED] * len(inputs)

    def _call_forward(self, data: Any) -> Any:
        return stage_worker.call_forward(self.worker, data, self.timeout_s)

    def _failure(self, err: BaseException, step: str) -> tuple[int, bytes, int]:
        """Log an error from user code; the status, body and flags (0) of its reply."""
        if isinstance(err, StreamCancelled):
            logger.info("%s stopped streaming: %s", self.name, err)
            return CLIENT_GONE, b"client closed the request", 0
        if isinstance(err, (ClientError, ValidationError)):
            logger.debug("%s %s rejected a request: %s", self.name, step, err)
        elif isinstance(err, MosecTimeoutError):
            logger.warning("%s %s timed out after %ss", self.name, step, self.timeout_s)
        elif isinstance(getattr(err, "payload", None), bytes):
            # An error carried to an in-process caller as an object: a result, not a failure.
            logger.debug("%s %s answered an error object: %s", self.name, step, err)
        elif isinstance(err, MosecError):
            logger.error("%s %s failed: %s", self.name, step, err, exc_info=err)
        else:
            logger.error("%s %s raised %s", self.name, step, type(err).__name__, exc_info=err)
        return (*error_response(err), 0)


_FAILED: Any = object()

#: A chooser's answer to the engine: the branch index, ``u32`` little-endian.
_BRANCH = struct.Struct("<I")


def _branch_index(output: Any) -> bytes:
    """Encode a Switch chooser's ``forward`` output, which must be a branch index."""
    if isinstance(output, bool) or not isinstance(output, int):
        raise TypeError(f"a Switch's chooser must return a branch index (int), got {output!r}")
    if not 0 <= output <= 0xFFFF_FFFF:
        raise ValueError(f"a Switch's chooser returned {output}, which is no branch index")
    return _BRANCH.pack(output)
