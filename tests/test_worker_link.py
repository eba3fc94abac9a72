"""The worker process against a stand-in engine: this test plays the engine's end of the socket.

It checks the frame layout of engine/src/protocol.rs and the worker loop's status mapping
without the Rust engine in between.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import link_workers
import pytest

from mosec.coordinator import WorkerSpec, main
from mosec.protocol import FLAG_EGRESS, FLAG_INGRESS, FRAME_HEAD, ITEM_HEAD

BOTH = FLAG_INGRESS | FLAG_EGRESS
ACCEPT_TIMEOUT_S = 30.0


class FakeEngine:
    """The engine's end of one worker link."""

    def __init__(self, conn: socket.socket, process: Any) -> None:
        self.conn = conn
        self.process = process

    def recv_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise EOFError("worker closed the link")
            data += chunk
        return data

    def recv_frame(self) -> tuple[int, int, bytes]:
        (body_len,) = struct.unpack("<I", self.recv_exact(4))
        body = self.recv_exact(body_len)
        kind, reserved, count = struct.unpack_from("<BBH", body)
        assert reserved == 0
        return kind, count, body[4:]

    def hello(self) -> tuple[int, int, int]:
        kind, count, rest = self.recv_frame()
        assert (kind, count) == (1, 0)
        stage, worker_id, pid = struct.unpack("<III", rest)
        return stage, worker_id, pid

    def send_batch(self, items: list[tuple[int, int, bytes]]) -> None:
        body = b"".join(
            ITEM_HEAD.pack(task_id, flags, 0, len(payload)) + payload
            for task_id, flags, payload in items
        )
        self.conn.sendall(FRAME_HEAD.pack(4 + len(body), 2, 0, len(items)) + body)

    def result(self) -> list[tuple[int, int, bytes]]:
        kind, count, rest = self.recv_frame()
        assert kind == 3
        items, offset = [], 0
        for _ in range(count):
            task_id, flags, status, length = ITEM_HEAD.unpack_from(rest, offset)
            offset += ITEM_HEAD.size
            assert flags == 0
            items.append((task_id, status, rest[offset : offset + length]))
            offset += length
        assert offset == len(rest)
        return items

    def roundtrip(self, items: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
        self.send_batch(items)
        replies = self.result()
        assert [reply[0] for reply in replies] == [item[0] for item in items]
        return replies


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``link(worker_class, max_batch_size=1, timeout_s=0) -> FakeEngine``."""
    started: list[FakeEngine] = []
    listeners: list[socket.socket] = []

    def start(worker: type, max_batch_size: int = 1, timeout_s: float = 0) -> FakeEngine:
        path = str(tmp_path / f"w{len(started)}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listeners.append(listener)
        listener.bind(path)
        listener.listen()
        listener.settimeout(ACCEPT_TIMEOUT_S)
        spec = WorkerSpec(
            worker=worker,
            stage_index=3,
            stage_name="ingress",
            worker_id=2,
            max_batch_size=max_batch_size,
            timeout_s=timeout_s,
            socket_path=path,
            env={"LINK_TEST_VAR": "yes"},
            log_level="info",
            log_json=True,
        )
        process = multiprocessing.get_context("spawn").Process(target=main, args=(spec,))
        process.start()
        conn, _ = listener.accept()
        conn.settimeout(ACCEPT_TIMEOUT_S)
        engine = FakeEngine(conn, process)
        started.append(engine)
        return engine

    try:
        yield start
    finally:
        for engine in started:
            engine.conn.close()
            engine.process.join(10)
            if engine.process.is_alive():
                engine.process.kill()
                engine.process.join(10)
        for listener in listeners:
            listener.close()


def test_hello_then_json_in_and_out(link: Any) -> None:
    engine = link(link_workers.Echo)
    stage, worker_id, pid = engine.hello()
    assert (stage, worker_id, pid) == (3, 2, engine.process.pid)
    [(_, status, payload)] = engine.roundtrip([(7, BOTH, b'{"a": [1, 2]}')])
    assert status == 200 and json.loads(payload) == {"a": [1, 2]}
    # worker_id, stage and max_batch_size were set before __init__ ran.
    [(_, _, payload)] = engine.roundtrip([(8, BOTH, b'{"whoami": true}')])
    assert json.loads(payload) == {"init": [2, "ingress", 1]}


def test_ipc_between_stages_uses_pickle(link: Any) -> None:
    engine = link(link_workers.Echo)
    engine.hello()
    # Ingress only: JSON in, pickle out for the next stage.
    [(_, status, payload)] = engine.roundtrip([(1, FLAG_INGRESS, b"[1, 2]")])
    assert status == 200 and pickle.loads(payload) == [1, 2]
    # A middle stage: pickle both ways.
    [(_, status, payload)] = engine.roundtrip([(2, 0, pickle.dumps({"x": (1, 2)}))])
    assert pickle.loads(payload) == {"x": (1, 2)}
    # Egress only: pickle in, JSON out.
    [(_, status, payload)] = engine.roundtrip([(3, FLAG_EGRESS, pickle.dumps({"y": 1}))])
    assert json.loads(payload) == {"y": 1}


def test_batches_map_errors_per_item(link: Any) -> None:
    engine = link(link_workers.BatchEcho, max_batch_size=8)
    engine.hello()
    replies = engine.roundtrip([(1, BOTH, b"1"), (2, BOTH, b"{bad"), (3, BOTH, b"3")])
    assert [status for _, status, _ in replies] == [200, 400, 200]
    assert json.loads(replies[0][2]) == {"size": 2, "item": 1}
    assert replies[1][2] == b"decoding error: decoding error"
    # An error from forward hits every item it was given.
    replies = engine.roundtrip([(4, BOTH, b'{"reject": 1}'), (5, BOTH, b"5")])
    assert [(s, p) for _, s, p in replies] == [(422, b"request validation error: rejected")] * 2


def test_batch_of_zero_many_and_large(link: Any) -> None:
    engine = link(link_workers.BatchEcho, max_batch_size=300)
    engine.hello()
    assert engine.roundtrip([]) == []
    items = [(n, BOTH, str(n).encode()) for n in range(300)]
    replies = engine.roundtrip(items)
    assert [json.loads(p)["item"] for _, _, p in replies] == list(range(300))
    big = json.dumps("x" * (3 << 20)).encode()  # larger than the receive buffer
    [(_, status, payload)] = engine.roundtrip([(9, BOTH, big)])
    assert status == 200 and json.loads(payload)["item"] == "x" * (3 << 20)


def test_wrong_batch_length_is_500_for_all(link: Any) -> None:
    engine = link(link_workers.ShortBatch, max_batch_size=4)
    engine.hello()
    replies = engine.roundtrip([(1, BOTH, b"1"), (2, BOTH, b"2")])
    assert [(s, p) for _, s, p in replies] == [(500, b"inference internal error")] * 2


def test_forward_timeout_is_408_and_the_worker_goes_on(link: Any) -> None:
    engine = link(link_workers.Sleepy, timeout_s=0.3)
    engine.hello()
    [(_, status, payload)] = engine.roundtrip([(1, BOTH, b'{"sleep": 30}')])
    assert status == 408 and payload.startswith(b"mosec timeout error")
    [(_, status, _)] = engine.roundtrip([(2, BOTH, b'{"sleep": 0}')])
    assert status == 200


def test_eof_and_sigterm_end_the_worker_cleanly(link: Any) -> None:
    engine = link(link_workers.Echo)
    engine.hello()
    engine.conn.close()
    engine.process.join(10)
    assert engine.process.exitcode == 0
    engine = link(link_workers.Echo)
    engine.hello()
    os.kill(engine.process.pid, signal.SIGTERM)
    engine.process.join(10)
    assert engine.process.exitcode == 0


def test_failed_init_exits_1_without_connecting(tmp_path: Path) -> None:
    # (A failed warm-up is only logged: see test_upstream_style.py.)
    spec = WorkerSpec(
        worker=link_workers.InitFails,
        stage_index=0,
        stage_name="",
        worker_id=1,
        max_batch_size=1,
        timeout_s=0,
        socket_path=str(tmp_path / "nobody.sock"),
        env=None,
        log_level="error",
        log_json=True,
    )
    process = multiprocessing.get_context("spawn").Process(target=main, args=(spec,))
    process.start()
    process.join(30)
    assert process.exitcode == 1
