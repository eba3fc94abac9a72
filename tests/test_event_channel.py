"""The stream event channel against a stand-in engine: events out, cancels in, the stop rule."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mosec.errors import StreamCancelled
from mosec.protocol import FRAME_HEAD, ITEM_HEAD, KIND_CANCEL, KIND_EVENT, WorkerLink
from mosec.stream import EventChannel, EventSink


@pytest.fixture
def pair() -> Iterator[tuple[WorkerLink, socket.socket]]:
    """A worker link and the engine's end of its socket."""
    worker_end, engine_end = socket.socketpair()
    engine_end.settimeout(10)
    link = WorkerLink(worker_end)
    try:
        yield link, engine_end
    finally:
        link.close()
        engine_end.close()


def read_event(engine: socket.socket) -> list[tuple[int, int, bytes]]:
    head = engine.recv(FRAME_HEAD.size, socket.MSG_WAITALL)
    body_len, kind, _, count = FRAME_HEAD.unpack(head)
    assert kind == KIND_EVENT
    rest = engine.recv(body_len - 4, socket.MSG_WAITALL)
    items, offset = [], 0
    for _ in range(count):
        task_id, _flags, status, length = ITEM_HEAD.unpack_from(rest, offset)
        offset += ITEM_HEAD.size
        items.append((task_id, status, rest[offset : offset + length]))
        offset += length
    return items


def cancel(engine: socket.socket, *task_ids: int) -> None:
    body = b"".join(ITEM_HEAD.pack(task_id, 0, 0, 0) for task_id in task_ids)
    engine.sendall(FRAME_HEAD.pack(4 + len(body), KIND_CANCEL, 0, len(task_ids)) + body)


def test_events_go_to_the_task_at_their_index(pair) -> None:
    link, engine = pair
    channel = EventChannel(link, [7, 8], timeout_s=0)
    channel.send("héllo", 0)
    channel.send(b"raw", 1)
    assert read_event(engine) == [(7, 200, "héllo".encode())]
    assert read_event(engine) == [(8, 200, b"raw")]
    assert channel.sent == 2


def test_a_cancelled_request_loses_its_events_and_the_last_one_stops_forward(pair) -> None:
    link, engine = pair
    channel = EventChannel(link, [7, 8], timeout_s=0)
    cancel(engine, 7)
    channel.send("dropped", 0)  # its client is gone, the other one is not: no error
    channel.send("kept", 1)
    # The next frame on the wire is the kept one: the dropped event was never sent.
    assert read_event(engine) == [(8, 200, b"kept")]
    cancel(engine, 8)
    with pytest.raises(StreamCancelled):
        channel.send("nobody left", 1)
    with pytest.raises(StreamCancelled):
        channel.send("nobody left", 0)
    assert channel.sent == 1


def test_stream_cancelled_is_not_an_exception() -> None:
    # So that ``except Exception`` in user code does not swallow it.
    assert not issubclass(StreamCancelled, Exception)


def test_bad_arguments_are_clear_errors(pair) -> None:
    link, _ = pair
    channel = EventChannel(link, [7], timeout_s=0)
    with pytest.raises(IndexError, match="out of range for a batch of 1"):
        channel.send("x", 1)
    with pytest.raises(TypeError, match="str or bytes"):
        channel.send(3, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        EventSink().send(None, 0)  # type: ignore[arg-type]


def test_the_sink_counts_events_without_a_client() -> None:
    sink = EventSink()
    sink.send("a", 0)
    sink.send("b", 3)
    assert sink.sent == 2
