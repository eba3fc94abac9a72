"""``--dry-run``: push every route's examples through its stages, with no HTTP and no engine.

Each stage runs in a process of its own, started like a real worker (its start method, its first
``env`` dict) that builds and warms up the worker with the very code a served worker runs
(:mod:`mosec.stage_worker`), so no worker instance is ever pickled and attributes such as locks or
models are fine; unlike the server, which logs a failed warm-up and serves anyway, the dry run
fails on it. The route's first stage's warm-up is the route's input: ``forward`` runs on each
example as it is (a batch already on a batching stage) and its outputs flow on. A later stage
receives the previous stage's ``serialize_ipc`` bytes, decodes them with ``deserialize_ipc``, runs
``forward`` (in batches of at most ``max_batch_size`` when it batches, as the engine would form
them, under the stage's timeout) and encodes the outputs with ``serialize_ipc``, or with
``serialize`` on the route's last stage, exactly the calls a served request goes through.

The report says, per stage, how long building the worker and ``forward`` took. The dry run
stops at the first failure and names the route, the stage and the step that failed, with the
traceback; the exit code is then 1. A route whose first worker has no example carries no data,
but each of its later stages is still built and warmed up.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TextIO

from mosec import flow, log, stage_worker
from mosec.config import ServerConfig
from mosec.flow import Step
from mosec.plan import StagePlan, plan, scoped_environment
from mosec.stream import EventSink
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
    stage_name: str
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


def run(routes: dict[str, list[Step]], config: ServerConfig, out: TextIO = sys.stdout) -> int:
    """Dry-run every route; print the report to ``out``.

    A route with an ensemble or a switch carries no data in the dry run: each of its stages is
    built and warmed up on its own examples.

    Args:
        routes: ``{path: [step, ...]}`` as registered.
        config: the server's settings (the timeout and the log level are used).
        out: where the report goes.

    Returns:
        0 when every route ran through, 1 at the first failing stage.
    """
    stages, _ = plan(routes)
    stage_of = {id(stage.runtime): stage for stage in stages}
    for path, steps in routes.items():
        linear = flow.is_linear(steps)
        runtimes = list(dict.fromkeys(flow.runtimes(steps)))
        print(f"route {path}: {' -> '.join(runtime.name for runtime in runtimes)}", file=out)
        if not linear:
            print("  a flow with an ensemble or a switch: each stage only warms up", file=out)
        # The first stage reads its own examples; [] means "warm up only".
        payloads: list[bytes] | None = None if linear else []
        for position, runtime in enumerate(runtimes):
            job = _job(stage_of[id(runtime)], config, position == 0, position == len(runtimes) - 1)
            where = f"route {path}, stage {position + 1} of {len(runtimes)} ({runtime.name})"
            result = _run_stage(job, runtime.start_method, payloads)
            if isinstance(result, StageFailure):
                logger.error("dry run failed at %s during %s", where, result.step)
                print(f"dry run FAILED at {where} during {result.step}:\n{result.error}", file=out)
                return EXIT_FAILED
            if result is None:
                # Nothing flows down this route, but every later stage still warms up on its
                # own examples, as the server's workers do.
                print(
                    f"  skipped: {runtime.name} has no example or multi_examples; the later "
                    "stages only warm up",
                    file=out,
                )
                payloads = []
                continue
            print(f"  {runtime.name}: {_timings(result, len(result.outputs))}", file=out)
            payloads = result.outputs
        out.flush()
    print("dry run passed", file=out)
    return EXIT_OK


def _job(stage: StagePlan, config: ServerConfig, first: bool, last: bool) -> StageJob:
    runtime = stage.runtime
    return StageJob(
        worker=runtime.worker,
        stage_name=runtime.name,
        max_batch_size=runtime.max_batch_size,
        timeout_s=config.forward_timeout_s(runtime.timeout),
        env=runtime.env[0] if runtime.env else None,
        first=first,
        last=last,
        log_level=config.log_level,
        log_json=config.log_json,
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
        worker = stage_worker.build(job.worker, 1, job.stage_name, job.max_batch_size)
        built = time.perf_counter()
        events = EventSink()
        if isinstance(worker, SSEWorker):
            worker._events = events
        if job.timeout_s > 0:
            stage_worker.install_timeout()
        if payloads is None:
            # The route's first stage: its warm-up, run as a served worker runs it, produces
            # the route's data.
            if not stage_worker.examples(worker):
                conn.send(None)
                return
            step = "forward"
            forwarded = time.perf_counter()
            results = stage_worker.warm_up(worker)
            outputs = _warm_up_items(worker, results, job)
            batches = len(results)
        else:
            step = "warm-up"
            stage_worker.warm_up(worker)
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


def _warm_up_items(worker: Worker, results: list[Any], job: StageJob) -> list[Any]:
    """The items the warm-up produced: one per example, or each batch's items when batching."""
    if job.max_batch_size <= 1:
        return results
    items: list[Any] = []
    for example, result in zip(stage_worker.examples(worker), results):
        _check_batch(len(example) if isinstance(example, (list, tuple)) else None, result)
        items.extend(result)
    return items


def _check_batch(size: int | None, result: Any) -> None:
    """A batched forward returns a list, of the batch's length when it is known."""
    if isinstance(result, (list, tuple)) and (size is None or len(result) == size):
        return
    wanted = f"a list of {size}" if size is not None else "a list"
    got = f"{len(result)} items" if isinstance(result, (list, tuple)) else type(result).__name__
    raise TypeError(f"forward got a batch and must return {wanted}, returned {got}")


def _forward(worker: Worker, inputs: list[Any], job: StageJob) -> tuple[list[Any], int]:
    """Run forward on every input as the engine would batch them; outputs and call count."""
    if job.max_batch_size <= 1:
        each = [stage_worker.call_forward(worker, item, job.timeout_s) for item in inputs]
        return each, len(inputs)
    outputs: list[Any] = []
    calls = 0
    for start in range(0, len(inputs), job.max_batch_size):
        chunk = inputs[start : start + job.max_batch_size]
        result = stage_worker.call_forward(worker, chunk, job.timeout_s)
        _check_batch(len(chunk), result)
        outputs.extend(result)
        calls += 1
    return outputs, calls
