"""The public surface: names, exception types and documented defaults."""

from __future__ import annotations

import builtins
import inspect

import pytest

from . import workers as w

PUBLIC = [
    "Worker",
    "make_worker",
    "PassThrough",
    "Servlet",
    "ProcessServlet",
    "ThreadServlet",
    "SequentialServlet",
    "EnsembleServlet",
    "SwitchServlet",
    "Server",
    "AsyncServer",
    "EnsembleError",
    "ServerBacklogFull",
    "TimeoutError",
]


def test_public_names(mp):
    for name in PUBLIC:
        assert hasattr(mp, name), name


def test_exception_hierarchy(mp):
    assert issubclass(mp.ServerBacklogFull, RuntimeError)
    assert issubclass(mp.EnsembleError, RuntimeError)
    assert issubclass(mp.TimeoutError, builtins.TimeoutError)


def _defaults(func):
    return {
        k: p.default
        for k, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _kinds(func):
    return {k: p.kind for k, p in inspect.signature(func).parameters.items()}


def test_server_defaults(mp):
    for cls in (mp.Server, mp.AsyncServer):
        assert _defaults(cls.__init__)["capacity"] == 256
        assert _defaults(cls.call) == {"timeout": 60, "backpressure": True}
        d = _defaults(cls.stream)
        assert d["return_x"] is False
        assert d["return_exceptions"] is False
        assert d["timeout"] == 3600
        assert d["preprocessor"] is None
        k = _kinds(cls.call)
        assert k["x"] == inspect.Parameter.POSITIONAL_ONLY
        assert k["timeout"] == k["backpressure"] == inspect.Parameter.KEYWORD_ONLY


def test_servlet_defaults(mp):
    assert _defaults(mp.ProcessServlet.__init__)["cpus"] is None
    assert _defaults(mp.ProcessServlet.__init__)["worker_name"] is None
    assert _defaults(mp.ThreadServlet.__init__)["num_threads"] is None
    assert _defaults(mp.EnsembleServlet.__init__)["fail_fast"] is True


def test_capacity_property(mp):
    s = mp.Server(mp.ThreadServlet(w.Double), capacity=7)
    assert s.capacity == 7
    assert mp.Server(mp.ThreadServlet(w.Double)).capacity == 256


def test_server_is_not_picklable(mp):
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(mp.Server(mp.ThreadServlet(w.Double)))


@pytest.mark.parametrize("cpus", [0, []])
def test_process_servlet_refuses_zero_processes(mp, cpus):
    # mpservice 0.16.8 FAILS this: it accepts cpus=0 / cpus=[] and starts no process,
    # so every call times out and leaving the server hangs (see the contract, section 9).
    with pytest.raises(ValueError):
        mp.ProcessServlet(w.Double, cpus=cpus)


def test_compound_servlets_need_members(mp):
    # mpservice asserts these (AssertionError); ValueError/TypeError are fine too.
    with pytest.raises((AssertionError, ValueError, TypeError)):
        mp.SequentialServlet()
    with pytest.raises((AssertionError, ValueError, TypeError)):
        mp.EnsembleServlet(mp.ThreadServlet(w.Double))
