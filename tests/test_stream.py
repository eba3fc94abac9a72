"""Server-sent events: streaming, errors before and after the first event, batches, disconnects."""

from __future__ import annotations

import concurrent.futures
import json
import socket
from pathlib import Path

import httpx
from httpx_sse import connect_sse
from inflight import Hold, Request
from server_util import Server, StartServer, wait_until


def events(server: Server, path: str = "/stream", **body) -> list[tuple[str, str]]:
    """POST ``body`` and read the whole event stream as ``(event, data)`` pairs."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        with connect_sse(client, "POST", path, json=body) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"] == "text/event-stream"
            return [(sse.event, sse.data) for sse in source.iter_sse()]


def test_each_event_is_one_data_message(start_server: StartServer) -> None:
    server = start_server("stream.py")
    assert events(server, text="hello streaming world") == [
        ("message", "hello"),
        ("message", "streaming"),
        ("message", "world"),
    ]
    raw = server.post("/stream", json={"text": "a b"})
    assert raw.text == "data: a\n\ndata: b\n\n"
    assert raw.headers["x-request-id"]


def test_an_error_before_the_first_event_is_one_error_event(start_server: StartServer) -> None:
    # As in mosec: a streaming route answers with a stream, and the error is its one event.
    server = start_server("stream.py")
    assert events(server, fail_before=True, text="never") == [
        (
            "error",
            "SSE inference error: 422: Unprocessable Content: request validation error: "
            "refused before streaming",
        )
    ]


def test_an_error_after_streaming_began_is_an_error_event(start_server: StartServer) -> None:
    server = start_server("stream.py")
    received = events(server, text="one two three", fail_after=2)
    assert received[:2] == [("message", "one"), ("message", "two")]
    assert len(received) == 3
    kind, data = received[2]
    assert kind == "error"
    assert data == (
        "SSE inference error: 500: Internal Server Error: internal error: failed while streaming"
    )
    # The worker is free again.
    assert events(server, text="again") == [("message", "again")]


def test_events_reach_the_right_request_of_a_batch(start_server: StartServer) -> None:
    server = start_server("stream.py", "--timeout", "10000")
    words = [f"w{n}a w{n}b" for n in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        streams = list(pool.map(lambda text: events(server, "/batch", text=text), words))
    sizes = set()
    for text, received in zip(words, streams):
        assert [data.split()[0] for _, data in received] == text.split()
        positions = {data.split()[1] for _, data in received}
        assert len(positions) == 1, "every event of one request names the same position"
        sizes.add(int(positions.pop().split("/")[1]))
    assert sizes and all(1 <= size <= 4 for size in sizes)


def test_a_client_that_leaves_stops_the_work(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("stream.py", "--timeout", "10000")
    progress, stopped = tmp_path / "progress", tmp_path / "stopped"
    ticks = 2000  # 20 s of work at 10 ms a tick; the client leaves after 3 events
    body = {"ticks": ticks, "pace": 0.01, "progress": str(progress), "stopped": str(stopped)}
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        with connect_sse(client, "POST", "/stream", json=body) as source:
            received = []
            for sse in source.iter_sse():
                received.append(sse.data)
                if len(received) == 3:
                    break
    assert received == ["tick 0", "tick 1", "tick 2"]
    wait_until(stopped.exists, 15, "the worker to notice the client left")
    last = int(stopped.read_text())
    assert 2 <= last < ticks - 1
    # It stopped emitting: no tick after the one it stopped at, and the worker serves again.
    assert int(progress.read_text()) <= last
    assert events(server, text="next") == [("message", "next")]
    assert int(progress.read_text()) <= last
    assert "client left at tick" in server.logs()


def test_a_stream_outlasts_the_timeout_while_events_keep_coming(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("stream.py", "--timeout", "1000")
    progress, stopped = tmp_path / "progress", tmp_path / "stopped"
    # 30 ticks 60 ms apart: 1.8 s in all, longer than the 1 s timeout, which is an idle one.
    body = {"ticks": 30, "pace": 0.06, "progress": str(progress), "stopped": str(stopped)}
    received = events(server, **body)
    assert received == [("message", f"tick {n}") for n in range(30)]


def test_a_stream_idle_past_the_timeout_ends_with_a_408_event(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("stream.py", "--timeout", "1000")
    progress, stopped = tmp_path / "progress", tmp_path / "stopped"
    body = {"ticks": 3, "pace": 5, "progress": str(progress), "stopped": str(stopped)}
    received = events(server, **body)
    assert received[0] == ("message", "tick 0")
    kind, data = received[-1]
    assert kind == "error"
    assert data.startswith("SSE inference error: 408: Request Timeout: ")
    # The worker's own (idle) timeout stopped forward, so it serves the next request.
    assert events(server, text="awake") == [("message", "awake")]


def test_in_a_batch_only_the_gone_client_loses_its_events(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("stream.py", "--timeout", "30000")
    # Hold the batching worker so that the two streams below queue up and share the next batch.
    gate = Hold(tmp_path, "gate")
    blocker = Request(server, "/batch", json={**gate.body(), "text": "released"})
    gate.wait_inside()
    ticks = 50
    leaving = {
        "ticks": ticks,
        "pace": 0.01,
        "progress": str(tmp_path / "leaving-progress"),
        "stopped": str(tmp_path / "leaving-stopped"),
    }
    staying = {
        "text": "i stay",
        "progress": str(tmp_path / "staying-progress"),
        "stopped": str(tmp_path / "staying-stopped"),
    }
    with concurrent.futures.ThreadPoolExecutor(2) as pool:

        def leave() -> list[str]:
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                with connect_sse(client, "POST", "/batch", json=leaving) as source:
                    received = []
                    for sse in source.iter_sse():
                        received.append(sse.data)
                        if len(received) == 3:
                            return received
            return received

        left = pool.submit(leave)
        stayed = pool.submit(events, server, "/batch", **staying)
        wait_until(lambda: server.metric("mosec_service_remaining_task") == 3, 30, "3 in flight")
        gate.release()
        assert blocker.result().status_code == 200
        assert left.result() == ["tick 0", "tick 1", "tick 2"]
        stayed_events = [data for _, data in stayed.result()]
    assert [data.split()[0] for data in stayed_events] == ["i", "stay"]
    assert all(data.endswith("/2") for data in stayed_events), "both shared one batch"
    # The other client kept the batch alive: the work went on to the end, nothing was stopped.
    assert int((tmp_path / "leaving-progress").read_text()) == ticks - 1
    assert not (tmp_path / "leaving-stopped").exists()


def test_a_client_that_leaves_before_the_first_event_stops_the_work(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("stream.py", "--timeout", "30000")
    gate = Hold(tmp_path, "gate")
    stopped = tmp_path / "stopped"
    body = json.dumps(
        {
            **gate.body(),
            "ticks": 2000,
            "pace": 0.01,
            "progress": str(tmp_path / "progress"),
            "stopped": str(stopped),
        }
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /stream HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        gate.wait_inside()
    # The connection is closed while forward is held, before it sent anything.
    gate.release()
    wait_until(stopped.exists, 15, "the worker to notice the client left")
    # Long before its 2000th tick (at its first unless the engine saw the close late).
    assert int(stopped.read_text()) < 100
