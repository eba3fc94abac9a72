"""Failure scenarios, each run in its own interpreter by ``test_robustness.py``.

A scenario may hang the server (that is what mpservice 0.16.8 does for most of them),
so the test runs it as ``python -c "from mpserver.scenarios import main; main(NAME)"``
with a wall-clock limit and kills its process group when the limit passes.

Every step prints one JSON line ``{"step", "ok", "detail"}`` as it finishes, so a run
that hangs still shows how far it got. The last line of a finished run is ``DONE``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import workers as w
from ._target import mp

CALL_TIMEOUT = 6.0  # seconds; a detected failure must reach the caller well before this


def report(step: str, ok: bool, detail: str = "") -> None:
    print(json.dumps({"step": step, "ok": bool(ok), "detail": detail}), flush=True)


def expect_value(step, fn, expected):
    t0 = time.monotonic()
    try:
        got = fn()
    except BaseException as e:  # noqa: BLE001 - record whatever reached the caller
        report(step, False, f"raised {type(e).__name__}: {e!r} after {time.monotonic() - t0:.2f}s")
        return
    report(step, got == expected, f"got {got!r} after {time.monotonic() - t0:.2f}s")


def expect_error(step, fn, types=(Exception,), must_mention=None):
    """The call must raise promptly: an exception of ``types`` that is not a timeout."""
    t0 = time.monotonic()
    try:
        got = fn()
    except BaseException as e:  # noqa: BLE001
        dt = time.monotonic() - t0
        ok = isinstance(e, types) and not isinstance(e, TimeoutError)
        if must_mention is not None:
            ok = ok and must_mention in f"{type(e).__name__} {e!r} {e}"
        report(step, ok, f"raised {type(e).__name__}: {e!r} after {dt:.2f}s")
        return
    report(step, False, f"returned {got!r} after {time.monotonic() - t0:.2f}s")


def child_pids() -> list[int]:
    """Live child processes of this one (the resource tracker of multiprocessing aside)."""
    me = str(os.getpid())
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me and fields[0] != "Z" and "resource_tracker" not in cmd:
            out.append(int(d.name))
    return out


def expect_no_children(step, within=10.0):
    deadline = time.monotonic() + within
    while child_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = child_pids()
    report(step, not left, f"children left: {left}")


def timed_exit(server_cm):
    """Leave the server's context, reporting how long it took (a hang never reports)."""
    t0 = time.monotonic()
    server_cm.__exit__(None, None, None)
    report("server exits", True, f"{time.monotonic() - t0:.2f}s")


# --------------------------------------------------------------------------- scenarios


def worker_killed_in_call():
    server = mp.Server(mp.ProcessServlet(w.Killer)).__enter__()
    expect_value("warm-up call", lambda: server.call(1, timeout=CALL_TIMEOUT), 2)
    expect_error(
        "call that kills its worker fails cleanly", lambda: server.call("die", timeout=CALL_TIMEOUT)
    )
    expect_value(
        "next call is served (worker restarted)", lambda: server.call(2, timeout=CALL_TIMEOUT), 4
    )
    timed_exit(server)
    expect_no_children("no worker process left")


def worker_killed_in_stream():
    server = mp.Server(mp.ProcessServlet(w.Killer, cpus=2)).__enter__()
    xs = [1, 2, 3, "die", 4, 5, 6, 7, 8, 9]

    def run():
        return list(server.stream(xs, return_exceptions=True, timeout=CALL_TIMEOUT * 3))

    t0 = time.monotonic()
    try:
        out = run()
    except BaseException as e:  # noqa: BLE001
        report("stream finishes", False, f"raised {e!r} after {time.monotonic() - t0:.2f}s")
    else:
        report(
            "stream finishes",
            len(out) == len(xs),
            f"{len(out)} results in {time.monotonic() - t0:.2f}s",
        )
        die = out[xs.index("die")]
        report(
            "the killer item is an error (not a timeout)",
            isinstance(die, Exception) and not isinstance(die, TimeoutError),
            repr(die),
        )
        others = [(x, y) for x, y in zip(xs, out) if x != "die"]
        bad = [(x, y) for x, y in others if not (y == 2 * x or isinstance(y, Exception))]
        report("every other item is its result or an error", not bad, repr(others))
    expect_value("server keeps serving", lambda: server.call(5, timeout=CALL_TIMEOUT), 10)
    expect_value(
        "both workers serve again",
        lambda: list(server.stream(range(20), timeout=30)),
        [2 * x for x in range(20)],
    )
    timed_exit(server)
    expect_no_children("no worker process left")


def unrebuildable_exception():
    server = mp.Server(mp.ProcessServlet(w.BadException)).__enter__()
    expect_error(
        "exception that cannot be unpickled reaches the caller",
        lambda: server.call("raise", timeout=CALL_TIMEOUT),
        must_mention="UnrebuildableError",
    )
    expect_value("next call is served", lambda: server.call(2, timeout=CALL_TIMEOUT), 4)
    timed_exit(server)


def unpicklable_result():
    server = mp.Server(mp.ProcessServlet(w.BadReturn, cpus=2)).__enter__()
    expect_error(
        "unpicklable result is an error to its caller",
        lambda: server.call("lock", timeout=CALL_TIMEOUT),
    )
    expect_value("next call is served", lambda: server.call(2, timeout=CALL_TIMEOUT), 4)
    expect_value(
        "stream is served",
        lambda: list(server.stream(range(10), timeout=30)),
        [2 * x for x in range(10)],
    )
    timed_exit(server)


def switch_out_of_range():
    server = mp.Server(w.BadSwitch(mp.ProcessServlet(w.Double))).__enter__()
    expect_error(
        "out-of-range branch index is an error", lambda: server.call("oob", timeout=CALL_TIMEOUT)
    )
    expect_value("next call is served", lambda: server.call("ab", timeout=CALL_TIMEOUT), "abab")
    timed_exit(server)


def switch_raises():
    server = mp.Server(w.BadSwitch(mp.ProcessServlet(w.Double))).__enter__()
    expect_error(
        "switch() exception reaches the caller with its type",
        lambda: server.call("raise", timeout=CALL_TIMEOUT),
        types=(w.MyError,),
    )
    expect_value("next call is served", lambda: server.call("ab", timeout=CALL_TIMEOUT), "abab")
    timed_exit(server)


def start_failure_after_others_started():
    servlet = mp.SequentialServlet(mp.ProcessServlet(w.Double), mp.ProcessServlet(w.FailsInit))
    server = mp.Server(servlet)
    expect_error("entering raises the worker's init error", server.__enter__, types=(w.InitError,))
    expect_no_children("the servlets that had started are stopped")


def batch_wrong_count():
    servlet = mp.ProcessServlet(w.WrongCount, batch_size=4, batch_wait_time=0.01)
    server = mp.Server(servlet).__enter__()
    expect_error(
        "too few batch results: the item fails", lambda: server.call("short", timeout=CALL_TIMEOUT)
    )
    expect_error(
        "too many batch results: the item fails", lambda: server.call("long", timeout=CALL_TIMEOUT)
    )
    expect_value("a correct batch is served", lambda: server.call("ok", timeout=CALL_TIMEOUT), "ok")
    timed_exit(server)


def exception_as_input_data():
    server = mp.Server(
        mp.SequentialServlet(mp.ProcessServlet(w.Describe), mp.ThreadServlet(mp.PassThrough))
    ).__enter__()
    expect_value(
        "an exception object sent as input is data",
        lambda: server.call(ValueError("boom"), timeout=CALL_TIMEOUT),
        "ValueError:boom",
    )
    expect_value("next call is served", lambda: server.call(3, timeout=CALL_TIMEOUT), "int:3")
    timed_exit(server)


SCENARIOS = {
    f.__name__: f
    for f in (
        worker_killed_in_call,
        worker_killed_in_stream,
        unrebuildable_exception,
        unpicklable_result,
        switch_out_of_range,
        switch_raises,
        start_failure_after_others_started,
        batch_wrong_count,
        exception_as_input_data,
    )
}


def main(name: str) -> None:
    SCENARIOS[name]()
    print("DONE", flush=True)
    sys.stdout.flush()
