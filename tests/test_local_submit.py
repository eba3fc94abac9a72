"""In-process calls submitted without waiting, and stages that take what is queued.

``LocalClient.submit`` starts a call and returns a future; one collector thread hands the
engine's answers to their futures. A stage with ``wait_for_batch=False`` is handed what is
queued when its worker is free (its share, up to ``max_batch_size``) and never waits for a
batch to fill.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from servers import queued

from mosec import Server
from mosec.store.arena import ArenaStore
from mosec.store.codec import encode, is_reference
from mosec.store.mapping import ArenaMapping


def _server() -> Server:
    server = Server()
    server.register_runtime(queued.routes())
    return server


def _body(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def test_submitted_calls_are_answered_through_their_futures_and_queued_items_travel_together():
    with _server().local(timeout=30) as client:
        futures = [client.submit(_body(n), "/burst") for n in range(20)]
        answers = [future.result(timeout=30) for future in futures]
        assert [a.status for a in answers] == [200] * 20
        items = [a.json() for a in answers]
        assert [item["n"] for item in items] == list(range(20))
        # The 20 items left the gathering stage at once: the next stage took them in batches
        # of up to its max_batch_size, not one hop each.
        sizes = [item["batch"] for item in items]
        assert max(sizes) > 1
        assert all(size <= 16 for size in sizes)
        assert futures[0].cancel() is False  # a submitted call always runs to its answer


def test_a_stage_that_does_not_wait_for_batches_answers_a_lone_item_at_once():
    with _server().local(timeout=30) as client:
        # Its max_wait_time is 10 s: a batch that waited would miss this 3 s deadline (408).
        answer = client.call(_body(7), "/lone", timeout=3)
        assert answer.status == 200
        assert answer.json() == {"n": 7, "batch": 1}
        bad = client.submit(b"not json", "/lone").result(timeout=30)
        assert bad.status == 400
        missing = client.submit(_body(1), "/nowhere").result(timeout=30)
        assert missing.status == 404


def test_calls_in_flight_at_the_stop_are_answered_and_later_ones_refused():
    with _server().local(timeout=30) as client:
        # The gathering stage holds these for up to 5 s: they are in flight at the stop.
        futures = [client.submit(_body(n), "/burst") for n in range(3)]
    answers = [future.result(timeout=30) for future in futures]
    assert [a.json()["n"] for a in answers] == [0, 1, 2]  # the drain let them finish
    with pytest.raises(RuntimeError, match="stopped"):
        client.submit(_body(0), "/burst")


def test_a_stored_input_is_released_whether_the_call_runs_or_is_refused():
    server = Server()
    server.register_runtime(queued.stored_routes())
    with server.local(timeout=30) as client:
        store = ArenaStore(ArenaMapping(client.arena_path, 0))

        def used() -> int:
            return store.mapping.stats()[1]

        payload = encode(np.ones(1 << 16), store)
        assert is_reference(payload) and used() > 0
        answer = client.submit(payload, "/stored", stored=True).result(timeout=30)
        assert answer.json() == {"sum": float(1 << 16)}
        # Refused before it ran (no such route): the engine still took the objects and freed them.
        refused = encode(np.ones(1 << 16), store)
        assert client.submit(refused, "/nowhere", stored=True).result(timeout=30).status == 404
        # A reference the stores refuse is a 400, and nothing is left behind.
        forged = client.submit(b"\x01\x01\x00" + bytes(32), "/stored", stored=True)
        assert forged.result(timeout=30).status == 400
        # The worker's link lets go of what it read just after the answer: poll with a deadline.
        deadline = time.monotonic() + 10
        while used() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert used() == 0
