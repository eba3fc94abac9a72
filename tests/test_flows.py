"""Flows beyond a line over HTTP and in process: ensembles, switches, thread stages, pinning.

One server (``servers/flows.py``) serves the module's HTTP tests; the in-process test builds a
server from the same routes in this process and calls it with ``Server.local()``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from arena_util import EMPTY, arena_usage, wait_at_rest
from inflight import Hold, Request
from server_util import Server, run_server
from servers import flows

from mosec import Ensemble, Runtime, Switch
from mosec import Server as MosecServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The module's server; a 3 s deadline, for the timeout test."""
    with run_server(
        "flows.py", "--timeout", "3000", log_dir=tmp_path_factory.mktemp("flows")
    ) as running:
        yield running


def test_an_ensemble_joins_its_members_outputs_in_member_order(server: Server) -> None:
    assert server.post("/ensemble", json={"n": 1}).json() == {"slots": [2, 11, 202]}
    # Concurrent requests meet in the members' batches; each gets its own slots back.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: server.post("/ensemble", json={"n": n}), range(8)))
    assert [a.json()["slots"] for a in answers] == [
        [n + 1, n + 10, 2 * (n + 100)] for n in range(8)
    ]


def test_fail_fast_fails_the_item_and_soft_ensembles_keep_the_error_in_its_slot(
    server: Server,
) -> None:
    refused = server.post("/ensemble", json={"n": 1, "fail": 2})
    assert (refused.status_code, refused.text) == (
        422,
        "request validation error: member 2 refuses",
    )
    soft = server.post("/ensemble-soft", json={"n": 1, "fail": 2})
    assert soft.status_code == 200
    assert soft.json() == {
        "slots": [2, "error 422: request validation error: member 2 refuses", 202]
    }


def test_a_switch_sends_each_item_down_the_branch_its_chooser_picks(server: Server) -> None:
    assert server.post("/switch", json={"n": 2}).json() == {"n": 2, "branch": "even"}
    assert server.post("/switch", json={"n": 3}).json() == {"n": 3, "branch": "odd"}
    # Branch 2 adds one, then says even: the branch got the chooser's input.
    assert server.post("/switch", json={"n": 3, "branch": 2}).json() == {"n": 4, "branch": "even"}
    wrong = server.post("/switch", json={"n": 1, "branch": 7})
    assert wrong.status_code == 500
    assert "switch chose branch 7 of 3" in wrong.text
    # Concurrent items of one chooser batch go their own ways.
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda n: server.post("/switch", json={"n": n}).json(), range(6)))
    assert [a["branch"] for a in answers] == ["even", "odd"] * 3


def test_a_thread_stage_serves_from_threads_of_one_process(server: Server, tmp_path: Path) -> None:
    holds = [Hold(tmp_path, f"thread{n}") for n in range(3)]
    requests = [Request(server, "/threads", json=hold.body()) for hold in holds]
    pids = {hold.wait_inside() for hold in holds}  # all three busy at once
    for hold in holds:
        hold.release()
    answers = [request.result().json() for request in requests]
    assert len(pids) == 1 and {a["pid"] for a in answers} == pids
    assert len({a["thread"] for a in answers}) == 3
    assert sorted(a["worker_id"] for a in answers) == [1, 2, 3]


def test_pinned_processes_run_on_their_cpus(server: Server, tmp_path: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs CPUs 0 and 1")
    holds = [Hold(tmp_path, f"pin{n}") for n in range(2)]
    requests = [Request(server, "/pinned", json=hold.body()) for hold in holds]
    for hold in holds:
        hold.wait_inside()  # both processes busy at once: one request each
    for hold in holds:
        hold.release()
    answers = sorted((r.result().json() for r in requests), key=lambda a: a["worker_id"])
    assert [(a["worker_id"], a["cpus"]) for a in answers] == [(1, [0]), (2, [1])]


def _expected_digest(seed: int) -> str:
    data = np.random.default_rng(seed).integers(0, 256, flows.TENSOR_BYTES, np.uint8)
    return hashlib.sha256(data).hexdigest()


def test_a_tensor_fanned_out_to_three_members_is_read_in_place_and_released(
    server: Server, tmp_path: Path
) -> None:
    wait_at_rest(server)
    answer = server.post("/tensor", json={"seed": 5})
    assert answer.status_code == 200, answer.text
    assert answer.json()["digests"] == [_expected_digest(5)] * 3
    wait_at_rest(server, EMPTY)
    # A member error, fail fast: every object of the request is released.
    refused = server.post("/tensor", json={"seed": 6, "raise_member": 2})
    assert refused.status_code == 422
    wait_at_rest(server, EMPTY)
    # The deadline passes while member 3 still reads: 408, and the input stays until it answers.
    held = Hold(tmp_path, "late")
    late = Request(
        server, "/tensor", json={"seed": 7, **{f"{k}2": v for k, v in held.body().items()}}
    )
    held.wait_inside()
    assert late.result().status_code == 408
    assert arena_usage(server)[1] >= 1  # member 3 may still read the tensor
    held.release()
    wait_at_rest(server, EMPTY)
    # A member killed while it holds the tensor: 500 at once, released, and served again.
    doomed = Hold(tmp_path, "doomed")
    killed = Request(
        server, "/tensor", json={"seed": 8, **{f"{k}2": v for k, v in doomed.body().items()}}
    )
    os.kill(doomed.wait_inside(), signal.SIGKILL)
    assert killed.result().status_code == 500
    wait_at_rest(server, EMPTY)
    again = server.post("/tensor", json={"seed": 9})
    assert again.json()["digests"] == [_expected_digest(9)] * 3
    wait_at_rest(server, EMPTY)


def test_in_process_calls_share_the_engine_without_a_port() -> None:
    server = MosecServer()
    server.register_runtime(
        {path: steps for path, steps in flows.routes().items() if path in ("/ensemble", "/switch")}
    )
    with server.local(timeout=10) as client:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda n: client.call(json.dumps({"n": n}).encode(), "/ensemble"), range(6)
                )
            )
        assert [a.json()["slots"] for a in answers] == [
            [n + 1, n + 10, 2 * (n + 100)] for n in range(6)
        ]
        assert client.call(b'{"n": 5}', "/switch").json() == {"n": 5, "branch": "odd"}
        missing = client.call(b"{}", "/nowhere")
        assert missing.status == 404


def test_flows_are_checked_when_registered() -> None:
    server = MosecServer()
    with pytest.raises(ValueError, match="ends with an Ensemble"):
        server.register_runtime({"/x": [Runtime(flows.Prepare), Ensemble([Runtime(flows.Even)])]})
    chooser = Runtime(flows.Parity)
    with pytest.raises(ValueError, match="chooser cannot also be a plain stage"):
        server.register_runtime({"/y": [chooser, Switch(chooser, [Runtime(flows.Even)])]})
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
    with pytest.raises(ValueError, match="one per process"):
        Runtime(flows.WhoAmI, num=3, cpus=[0, 1])
