"""Back-pressure, dynamic batching and a worker killed under load."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from inflight import Hold, Request
from server_util import StartServer, wait_until

REMAINING = "mosec_service_remaining_task"


def test_capacity_answers_429(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("behave.py", "--capacity", "2", "--timeout", "30000")
    first, second = Hold(tmp_path, "first"), Hold(tmp_path, "second")
    held = [Request(server, json=first.body())]
    first.wait_inside()
    held.append(Request(server, json=second.body()))
    # The second waits in the engine's queue behind the first; both count as in flight.
    wait_until(lambda: server.metric(REMAINING) == 2, 30, "two tasks in flight")
    response = server.post(json={"one": "too many"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text
    first.release()
    second.release()
    assert [request.result().status_code for request in held] == [200, 200]
    assert server.post(json={"room": "again"}).status_code == 200


def test_batches_form_under_concurrency(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("batching.py", "--timeout", "30000", env={"TEST_OUT_DIR": str(tmp_path)})
    # Warm-up ran forward once on the example, a batch of 8, before the worker connected.
    assert (tmp_path / "warmup-1.json").read_text() == "[8]"
    gate = Hold(tmp_path, "gate")
    blocker = Request(server, json=gate.body())
    gate.wait_inside()
    # While the worker is busy, six more requests queue up in the engine...
    queued = [Request(server, json={"n": n}) for n in range(6)]
    wait_until(lambda: server.metric(REMAINING) == 7, 30, "seven tasks in flight")
    gate.release()
    assert blocker.result().json()["batch"] == 1
    # ...and reach forward together.
    answers = [request.result().json() for request in queued]
    assert sorted(answer["item"]["n"] for answer in answers) == list(range(6))
    assert max(answer["batch"] for answer in answers) > 1
    total = server.metric("mosec_service_batch_size_sum")
    count = server.metric("mosec_service_batch_size_count")
    assert count >= 2 and total == 7 and total > count, (total, count)


def test_killed_worker_fails_its_requests_fast(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("behave.py", "--timeout", "30000")
    hold = Hold(tmp_path, "victim")
    victim = Request(server, json=hold.body())
    pid = hold.wait_inside()
    queued = Request(server, json={"queued": True})
    wait_until(lambda: server.metric(REMAINING) == 2, 30, "two tasks in flight")
    start = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    response = victim.result()
    assert response.status_code == 500
    assert time.monotonic() - start < 5, "the held request failed at once, not at --timeout"
    # The request that was waiting in the queue is served by the restarted worker.
    assert queued.result().status_code == 200
    assert server.post(json={"after": "restart"}).json() == {"after": "restart"}
    assert hold.mark.read_text() == str(pid)
    assert f"was killed by signal {signal.SIGKILL.value}" in server.logs()
