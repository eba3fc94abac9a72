"""An unbatched stage given bursts: the engine hands its worker what is queued in one hop
(``engine/src/batcher.rs``), and that must change nothing a mosec user can see.

Each request still gets its own ``forward`` call, its own answer and its own request id in the
worker's log lines, and a request that kills the worker fails alone: the others it was handed
with go to a worker again, each on its own. The bursts come from a batching stage before the
unbatched one (``servers/unbatched.py``), so they reach its queue at once; how many share a hop
depends on what the engine measured an item to cost, and the engine's own tests
(``engine/tests/engine_http.rs``, ``stuck_worker.rs``) pin the hops down exactly.
"""

from __future__ import annotations

import sys

from inflight import Request
from server_util import SERVERS, Server, StartServer, wait_until

sys.path.insert(0, str(SERVERS))
from unbatched import BURST  # noqa: E402


def _burst(server: Server, bodies: list[dict]) -> list:
    """Send ``BURST`` requests at once (``x-request-id`` ``r<n>``); their responses."""
    assert len(bodies) == BURST
    requests = [
        Request(server, json=body, headers={"x-request-id": f"r{body['n']}"}) for body in bodies
    ]
    return [request.result() for request in requests]


def _warmed(start_server: StartServer) -> Server:
    """A server whose engine has measured what an item costs the unbatched worker."""
    server = start_server("unbatched.py")
    warm_up = _burst(server, [{"n": -1 - n} for n in range(BURST)])
    assert {answer.status_code for answer in warm_up} == {200}
    return server


def test_each_request_gets_its_own_forward_answer_and_request_id(
    start_server: StartServer,
) -> None:
    server = _warmed(start_server)
    answers = _burst(server, [{"n": n} for n in range(BURST)])
    assert [a.status_code for a in answers] == [200] * BURST, [a.text for a in answers]
    assert [a.json()["n"] for a in answers] == list(range(BURST))
    assert {a.json()["given"] for a in answers} == {"dict"}  # one item, never a list
    assert [a.headers["x-request-id"] for a in answers] == [f"r{n}" for n in range(BURST)]

    def item_records():
        records = [r for r in server.json_logs() if r.get("message", "").startswith("item ")]
        return records if len(records) >= 2 * BURST else None

    records = wait_until(item_records, 10, "every forward's log line")
    logged = {r["message"]: r.get("request_id") for r in records}
    assert all(logged[f"item {n}"] == f"r{n}" for n in range(BURST)), logged


def test_a_request_that_kills_its_worker_fails_alone(start_server: StartServer) -> None:
    server = _warmed(start_server)
    poison = BURST // 2
    answers = _burst(server, [{"n": n, "exit": n == poison} for n in range(BURST)])
    statuses = {n: answer.status_code for n, answer in enumerate(answers)}
    assert statuses.pop(poison) == 500
    assert "exited" in answers[poison].text
    assert set(statuses.values()) == {200}, {n: a.text for n, a in enumerate(answers)}
    assert [answers[n].json()["n"] for n in statuses] == list(statuses)
    # It killed a worker twice: once with the requests it came with, once alone.
    restarts = [r for r in server.json_logs() if "each goes to a worker again" in r["message"]]
    assert len(restarts) == 1, restarts
