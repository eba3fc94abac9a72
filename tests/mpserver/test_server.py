"""Server: call, stream, ordering, exceptions, batching, backpressure, timeouts."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from . import workers as w

T = 30


def wait_until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def test_call_and_backlog(mp):
    server = mp.Server(mp.ProcessServlet(w.Double, cpus=2), capacity=8)
    with server:
        assert server.backlog == 0
        assert server.call(21, timeout=T) == 42
        assert server.call("ab", timeout=T) == "abab"
        assert server.backlog == 0


def test_call_is_thread_safe(mp):
    with mp.Server(mp.ProcessServlet(w.Double, cpus=2)) as server:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futs = {x: pool.submit(server.call, x, timeout=T) for x in range(64)}
            assert {x: f.result(timeout=T) for x, f in futs.items()} == {
                x: 2 * x for x in range(64)
            }


@pytest.mark.parametrize("servlet_kind", ["process", "thread"])
def test_worker_exception_reaches_caller_with_its_type(mp, servlet_kind):
    cls = mp.ProcessServlet if servlet_kind == "process" else mp.ThreadServlet
    with mp.Server(cls(w.Failing)) as server:
        with pytest.raises(w.MyError, match="negative input -4"):
            server.call(-4, timeout=T)
        assert server.call(4, timeout=T) == 40  # the worker survives its exception


def test_process_worker_exception_carries_remote_traceback(mp):
    # mpservice: the caller's exception has ``__cause__`` = RemoteTraceback whose str()
    # is the worker-side formatted traceback.
    with mp.Server(mp.ProcessServlet(w.Failing)) as server:
        with pytest.raises(w.MyError) as info:
            server.call(-1, timeout=T)
    cause = info.value.__cause__
    assert cause is not None
    text = str(cause)
    assert "Traceback" in text and "in call" in text and "MyError" in text


def test_exception_through_later_stages(mp):
    # An error in stage 1 skips stage 2 and reaches the caller with its type.
    s = mp.SequentialServlet(mp.ProcessServlet(w.Failing), mp.ThreadServlet(w.Double))
    with mp.Server(s) as server:
        with pytest.raises(w.MyError):
            server.call(-1, timeout=T)
        assert server.call(1, timeout=T) == 20


def test_stream_keeps_input_order(mp):
    # Later items finish first; output order is still input order.
    items = [(i, 0.002 * (20 - i)) for i in range(20)]
    with mp.Server(mp.ProcessServlet(w.Sleepy, cpus=2)) as server:
        assert list(server.stream(items, timeout=T)) == list(range(20))
        assert list(server.stream(items, return_x=True, timeout=T)) == [(x, x[0]) for x in items]


def test_stream_return_exceptions(mp):
    xs = [3, -1, 4, -2, 5] * 4
    with mp.Server(mp.ProcessServlet(w.Failing, cpus=2)) as server:
        out = list(server.stream(xs, return_exceptions=True, timeout=T))
        for x, y in zip(xs, out):
            if x < 0:
                assert isinstance(y, w.MyError) and str(y) == f"negative input {x}"
            else:
                assert y == 10 * x
        pairs = list(server.stream(xs, return_x=True, return_exceptions=True, timeout=T))
        assert [p[0] for p in pairs] == xs
        assert isinstance(pairs[1][1], w.MyError)


def test_stream_without_return_exceptions_raises_at_the_failed_item(mp):
    got = []
    with mp.Server(mp.ProcessServlet(w.Failing)) as server:
        with pytest.raises(w.MyError):
            for y in server.stream([1, 2, -3, 4, 5], timeout=T):
                got.append(y)
        assert got == [10, 20]
        assert server.call(6, timeout=T) == 60  # still serving


def test_stream_preprocessor(mp):
    def pre(x):
        if x == "bad":
            raise KeyError(x)
        return int(x)

    with mp.Server(mp.ThreadServlet(w.Double)) as server:
        out = list(
            server.stream(["1", "bad", "3"], preprocessor=pre, return_exceptions=True, timeout=T)
        )
        assert out[0] == 2 and out[2] == 6 and isinstance(out[1], KeyError)
        # return_x gives the original element, not the preprocessed one.
        pairs = list(server.stream(["4"], preprocessor=pre, return_x=True, timeout=T))
        assert pairs == [("4", 8)]


def test_batching_visible_under_stream(mp):
    servlet = mp.ProcessServlet(w.BatchRecorder, batch_size=8, batch_wait_time=0.2)
    with mp.Server(servlet) as server:
        out = list(server.stream(range(64), timeout=T))
    assert [x for x, _ in out] == list(range(64))
    sizes = [n for _, n in out]
    assert max(sizes) > 1, sizes
    assert max(sizes) <= 8, sizes


def test_batching_across_two_processes(mp):
    servlet = mp.ProcessServlet(w.BatchRecorder, cpus=2, batch_size=4, batch_wait_time=0.1)
    with mp.Server(servlet) as server:
        out = list(server.stream(range(100), timeout=T))
    assert [x for x, _ in out] == list(range(100))
    assert max(n for _, n in out) > 1


def test_backpressure(mp, tmp_path):
    gate = str(tmp_path / "gate")
    server = mp.Server(mp.ThreadServlet(w.Gate, num_threads=2), capacity=2)
    with server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        try:
            futs = [pool.submit(server.call, (n, gate, 20.0), timeout=T) for n in ("a", "b")]
            assert wait_until(lambda: server.backlog == 2, 20)
            t0 = time.monotonic()
            with pytest.raises(mp.ServerBacklogFull):
                server.call(("c", gate, 20.0), timeout=T)  # backpressure=True is the default
            with pytest.raises(mp.ServerBacklogFull):
                server.call(("c", gate, 20.0), timeout=T, backpressure=True)
            assert time.monotonic() - t0 < 5  # rejected at once, not after waiting
            # backpressure=False waits for room up to the timeout, then ServerBacklogFull.
            t0 = time.monotonic()
            with pytest.raises(mp.ServerBacklogFull):
                server.call(("c", gate, 20.0), timeout=0.5, backpressure=False)
            assert 0.3 < time.monotonic() - t0 < 10
        finally:
            w.touch(gate)
        assert sorted(f.result(timeout=T)[0] for f in futs) == ["a", "b"]
        assert wait_until(lambda: server.backlog == 0, 20)
        assert server.call(("d", gate, 20.0), timeout=T)[:2] == ("d", True)


def test_backpressure_false_waits_for_room(mp, tmp_path):
    gate = str(tmp_path / "gate")
    server = mp.Server(mp.ThreadServlet(w.Gate), capacity=1)
    with server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        try:
            first = pool.submit(server.call, ("a", gate, 20.0), timeout=T)
            assert wait_until(lambda: server.backlog == 1, 20)
            second = pool.submit(server.call, ("b", gate, 20.0), timeout=T, backpressure=False)
            assert w.wait_for_file(f"{gate}.started-a", 20)
        finally:
            w.touch(gate)
        assert first.result(timeout=T)[0] == "a"
        assert second.result(timeout=T)[0] == "b"


def test_call_timeout(mp, tmp_path):
    gate = str(tmp_path / "gate")
    with mp.Server(mp.ProcessServlet(w.Gate)) as server:
        t0 = time.monotonic()
        try:
            with pytest.raises(mp.TimeoutError):
                server.call(("slow", gate, 20.0), timeout=0.5)
            assert time.monotonic() - t0 < 5
        finally:
            w.touch(gate)
        # builtins.TimeoutError catches it too.
        assert issubclass(mp.TimeoutError, TimeoutError)
        assert server.call(("next", gate, 20.0), timeout=T)[:2] == ("next", True)


def test_stream_timeout_bounds_each_result(mp):
    # mpservice 0.16.8 FAILS this: ``stream(timeout=...)`` only bounds the wait for room
    # in the backlog; each result is awaited without a limit (fifo_stream calls
    # ``fut.result()`` with no timeout), so a slow item is returned after 4 s.
    with mp.Server(mp.ProcessServlet(w.Sleepy)) as server:
        t0 = time.monotonic()
        out = list(server.stream([(1, 0.0), (2, 4.0)], timeout=0.5, return_exceptions=True))
        elapsed = time.monotonic() - t0
    assert out[0] == 1
    assert isinstance(out[1], mp.TimeoutError), repr(out[1])
    assert elapsed < 3.0
