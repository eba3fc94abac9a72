"""``--dry-run``: push every route's examples through its stages, with no HTTP and no engine.

For each route, the first worker's examples (``example``, or the items of ``multi_examples``)
are the input. Each stage runs in a process of its own, started like a real worker (its start
method, its first ``env`` dict, the class attributes ``worker_id``/``stage``/``max_batch_size``)
that builds the worker itself, so no worker instance is ever pickled and attributes such as
locks or models are fine. A stage receives the previous stage's ``serialize_ipc`` bytes, decodes
them with ``deserialize_ipc``, runs ``forward`` (in batches of at most ``max_batch_size`` when it
batches, under the stage's timeout) and encodes the outputs with ``serialize_ipc``, or with
``serialize`` on the route's last stage, exactly the calls a served request goes through.

The report says, per stage, how long building the worker and ``forward`` took. The dry run
stops at the first failure and names the route, the stage and the step that failed, with the
traceback; the exit code is then 1. A route whose first worker has no example is skipped.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TextIO

from mosec import log
from mosec.errors import MosecTimeoutError
from mosec.plan import plan
from mosec.runtime import Runtime
from mosec.stream import EventSink
from mosec.supervisor import StagePlan, scoped_environment
from mosec.worker import SSEWorker, Worker

logger = log.get_logger("dry_run")

EXIT_OK = 0
EXIT_FAILED = 1


@dataclass(frozen=True)
class StageJob:
    """What a stage's process needs; it crosses the process boundary by pickle.

    The worker class is pickled by reference (its module and name), never an instance.
    """

    worker: type[Worker]
    stage_label: str
    max_batch_size: int
    timeout_s: float
    env: dict[str, str] | None
    first: bool
    last: bool
    log_level: str
    log_json: bool


@dataclass(frozen=True)
class StageReport:
    """How a stage went: its outputs for the next stage and its timings."""

    outputs: list[bytes]
    build_s: float
    forward_s: float
    batches: int
    events: int


@dataclass(frozen=True)
class StageFailure:
    """Where and how a stage failed."""

    step: str
    error: str


def run(routes: dict[str, list[Runtime]], args: Any, out: TextIO = sys.stdout) -> int:
    """Dry-run every route; print the report to ``out``.

    Args:
        routes: ``{path: [runtime, ...]}`` as registered.
        args: the parsed flags (``timeout`` and the log level are used).
        out: where the report goes.

    Returns:
        0 when every route ran through, 1 at the first failing stage.
    """
    stages, _ = plan(routes)
    stage_of = {id(stage.runtime): stage for stage in stages}
    for path, runtimes in routes.items():
        print(f"route {path}: {' -> '.join(runtime.name for runtime in runtimes)}", file=out)
        payloads: list[bytes] | None = None  # the first stage reads its own examples
        for position, runtime in enumerate(runtimes):
            job = _job(stage_of[id(runtime)], args, position == 0, position == len(runtimes) - 1)
            where = f"route {path}, stage {position + 1} of {len(runtimes)} ({runtime.name})"
            result = _run_stage(job, runtime.start_method, payloads)
            if isinstance(result, StageFailure):
                logger.error("dry run failed at %s during %s", where, result.step)
                print(f"dry run FAILED at {where} during {result.step}:\n{result.error}", file=out)
                return EXIT_FAILED
            if result is None:
                print(f"  skipped: {runtime.name} has no example or multi_examples", file=out)
                break
            print(f"  {runtime.name}: {_timings(result, len(result.outputs))}", file=out)
            payloads = result.outputs
        out.flush()
    print("dry run passed", file=out)
    return EXIT_OK


def _job(stage: StagePlan, args: Any, first: bool, last: bool) -> StageJob:
    runtime = stage.runtime
    return StageJob(
        worker=runtime.worker,
        stage_label=stage.label,
        max_batch_size=runtime.max_batch_size,
        timeout_s=stage.timeout_s(args.timeout),
        env=runtime.env[0] if runtime.env else None,
        first=first,
        last=last,
        log_level=args.log_level,
        log_json=args.log_level != "debug",
    )


def _timings(report: StageReport, items: int) -> str:
    per_item = report.forward_s / items * 1e3 if items else 0.0
    text = (
        f"built in {report.build_s * 1e3:.1f} ms; forward {report.forward_s * 1e3:.2f} ms for "
        f"{items} item(s) in {report.batches} call(s), {per_item:.2f} ms per item"
    )
    if report.events:
        text += f"; {report.events} stream event(s)"
    return text


def _run_stage(
    job: StageJob, start_method: str, payloads: list[bytes] | None
) -> StageReport | StageFailure | None:
    """Run one stage in a fresh process; None when a first stage has no example."""
    ctx: Any = multiprocessing.get_context(start_method)
    parent, child = ctx.Pipe()
    process = ctx.Process(target=stage_main, args=(job, child), name="mosec-dry-run")
    with scoped_environment(job.env):
        process.start()
    child.close()
    try:
        parent.send(payloads)
        # Either the answer comes, or the process dies without one (a crash, os._exit): then
        # the pipe reads EOF.
        result: StageReport | StageFailure | None = parent.recv()
        return result
    except (EOFError, OSError):
        process.join()
        return StageFailure(
            "run", f"the stage's process exited with code {process.exitcode} before answering"
        )
    finally:
        parent.close()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def stage_main(job: StageJob, conn: Connection) -> None:
    """The body of a stage's process: build the worker, run it, send the report back."""
    log.configure(job.log_level, job.log_json)
    if job.env:
        os.environ.update(job.env)
    step = "start"
    try:
        payloads = conn.recv()
        started = time.perf_counter()
        worker = _build(job)
        built = time.perf_counter()
        events = EventSink()
        if isinstance(worker, SSEWorker):
            worker._events = events
        if payloads is None:
            inputs = _examples(worker)
            if not inputs:
                conn.send(None)
                return
        else:
            step = "deserialize_ipc"
            inputs = [worker.deserialize_ipc(payload) for payload in payloads]
        step = "forward"
        forwarded = time.perf_counter()
        outputs, batches = _forward(worker, inputs, job)
        forward_s = time.perf_counter() - forwarded
        step = "serialize" if job.last else "serialize_ipc"
        encode = worker.serialize if job.last else worker.serialize_ipc
        encoded = [bytes(encode(output)) for output in outputs]
        conn.send(StageReport(encoded, built - started, forward_s, batches, events.sent))
    except BaseException:  # everything, SystemExit from user code included, is reported
        conn.send(StageFailure(step, traceback.format_exc()))
    finally:
        conn.close()


def _build(job: StageJob) -> Worker:
    cls = job.worker
    # As in a served worker: the user's __init__ may read these.
    cls._worker_id = 1
    cls._stage = job.stage_label
    cls._max_batch_size = job.max_batch_size
    return cls()


def _examples(worker: Worker) -> list[Any]:
    if worker.example is not None:
        return [worker.example]
    return list(worker.multi_examples or [])


def _forward(worker: Worker, inputs: list[Any], job: StageJob) -> tuple[list[Any], int]:
    """Run forward on every input; returns the outputs and the number of calls."""
    if job.max_batch_size <= 1:
        return [_call(worker, item, job.timeout_s) for item in inputs], len(inputs)
    outputs: list[Any] = []
    calls = 0
    for start in range(0, len(inputs), job.max_batch_size):
        chunk = inputs[start : start + job.max_batch_size]
        result = _call(worker, chunk, job.timeout_s)
        if not isinstance(result, (list, tuple)) or len(result) != len(chunk):
            raise TypeError(
                f"forward got a batch of {len(chunk)} and must return a list of {len(chunk)}, "
                f"returned {type(result).__name__}"
            )
        outputs.extend(result)
        calls += 1
    return outputs, calls


def _on_alarm(signum: int, frame: Any) -> None:
    raise MosecTimeoutError("forward exceeded its timeout")


def _call(worker: Worker, data: Any, timeout_s: float) -> Any:
    if timeout_s <= 0:
        return worker.forward(data)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return worker.forward(data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
