"""Worker-level contract: attributes, batching defaults, init kwargs, preprocess, cleanup."""

from __future__ import annotations

import json
import os

import pytest

from . import workers as w

T = 30  # per-call timeout, seconds


@pytest.mark.parametrize("servlet_kind", ["process", "thread"])
def test_attributes_without_batching(mp, servlet_kind):
    cls = mp.ProcessServlet if servlet_kind == "process" else mp.ThreadServlet
    with mp.Server(cls(w.Info)) as server:
        info = server.call(1, timeout=T)
    assert info["x"] == 1
    assert info["worker_index"] == 0
    assert info["batch_size"] == 0
    assert info["batch_wait_time"] == 0


def test_batch_wait_time_default_is_10ms_when_batching(mp):
    # batch_size > 1 and no batch_wait_time: 0.01 s. The worker sees whole batches,
    # and ``call`` through the server still returns one result per item.
    with mp.Server(mp.ProcessServlet(w.BatchInfo, batch_size=4)) as server:
        assert server.call(5, timeout=T) == (5, 4, 0.01, 1)
    with mp.Server(mp.ProcessServlet(w.BatchInfo, batch_size=4, batch_wait_time=0.5)) as server:
        assert server.call(5, timeout=T) == (5, 4, 0.5, 1)


def test_batch_size_one_is_still_a_list(mp):
    with mp.Server(mp.ThreadServlet(w.BatchRecorder, batch_size=1)) as server:
        assert server.call("a", timeout=T) == ("a", 1)
    with mp.Server(mp.ThreadServlet(w.BatchInfo, batch_size=1)) as server:
        assert server.call("a", timeout=T) == ("a", 1, 0, 1)


def test_extra_servlet_kwargs_reach_init(mp):
    with mp.Server(mp.ProcessServlet(w.AddN, n=100)) as server:
        assert server.call(1, timeout=T) == 101
    with mp.Server(mp.ThreadServlet(w.AddN, n=-1)) as server:
        assert server.call(1, timeout=T) == 0


def test_worker_index_per_process_and_cleanup(mp, tmp_path):
    with mp.Server(mp.ProcessServlet(w.ReportOnInit, cpus=2, report_dir=str(tmp_path))) as server:
        assert server.call(0, timeout=T) == sorted(os.sched_getaffinity(0))
    inits = [json.loads((tmp_path / f"init-{i}.json").read_text()) for i in range(2)]
    assert [r["worker_index"] for r in inits] == [0, 1]
    assert inits[0]["pid"] != inits[1]["pid"]
    assert os.getpid() not in {r["pid"] for r in inits}
    # cleanup() ran in every worker when the server stopped, with no exception.
    for i in range(2):
        rec = json.loads((tmp_path / f"cleanup-{i}.json").read_text())
        assert rec["exc"] == "None"
        assert rec["pid"] == inits[i]["pid"]


def test_thread_worker_cleanup(mp, tmp_path):
    with mp.Server(
        mp.ThreadServlet(w.ReportOnInit, num_threads=2, report_dir=str(tmp_path))
    ) as server:
        server.call(0, timeout=T)
    pids = {json.loads((tmp_path / f"init-{i}.json").read_text())["pid"] for i in range(2)}
    assert len(pids) == 1  # both threads live in one process
    for i in range(2):
        assert (tmp_path / f"cleanup-{i}.json").exists()


def test_make_worker_in_thread_servlet(mp):
    cls = mp.make_worker(w.square)
    assert issubclass(cls, mp.Worker)
    with mp.Server(mp.ThreadServlet(cls)) as server:
        assert server.call(7, timeout=T) == 49


def test_passthrough(mp):
    with mp.Server(mp.ThreadServlet(mp.PassThrough)) as server:
        assert server.call({"a": [1, 2]}, timeout=T) == {"a": [1, 2]}


@pytest.mark.parametrize("cls_name", ["PreprocessBatch", "PreprocessSingle"])
def test_preprocess_failure_short_circuits_one_item(mp, cls_name):
    cls = getattr(w, cls_name)
    kwargs = {"batch_size": 4, "batch_wait_time": 0.05} if cls_name == "PreprocessBatch" else {}
    with mp.Server(mp.ProcessServlet(cls, **kwargs)) as server:
        out = list(server.stream(["1", "bad", "3", "4"], return_exceptions=True, timeout=T))
        assert out[0] == 10 and out[2] == 30 and out[3] == 40
        assert isinstance(out[1], KeyError)
        with pytest.raises(KeyError):
            server.call("bad", timeout=T)
        assert server.call("2", timeout=T) == 20
