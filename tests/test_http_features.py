"""HTTP features: compression both ways, HTTP/2 with prior knowledge, keep-alive, request ids."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
import zstandard
from server_util import Server, StartServer, run_server, wait_until

BODY = {"text": "compress me " * 200}
RAW = json.dumps(BODY).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One behave.py server with --compression, shared by the tests of this module."""
    with run_server(
        "behave.py", "--compression", log_dir=tmp_path_factory.mktemp("features")
    ) as running:
        yield running


@pytest.mark.parametrize(
    ("coding", "pack"),
    [("gzip", gzip.compress), ("zstd", zstandard.ZstdCompressor().compress)],
)
def test_compressed_request_bodies_are_accepted(server: Server, coding: str, pack) -> None:
    response = server.post(content=pack(RAW), headers={"content-encoding": coding})
    assert response.status_code == 200, response.text
    assert response.json() == BODY


@pytest.mark.parametrize(
    ("accept", "coding", "unpack"),
    [
        ("gzip", "gzip", gzip.decompress),
        (
            "zstd",
            "zstd",
            lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
        ),
        (
            "gzip, zstd",
            "zstd",
            lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
        ),
    ],
)
def test_responses_are_compressed_by_accept_encoding(
    server: Server, accept: str, coding: str, unpack
) -> None:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        # stream(): read the raw bytes, so httpx does not decode them for us.
        with client.stream(
            "POST", "/inference", json=BODY, headers={"accept-encoding": accept}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-encoding"] == coding
            raw = b"".join(response.iter_raw())
    assert len(raw) < len(RAW)
    assert json.loads(unpack(raw)) == BODY


def test_an_unknown_coding_is_415(server: Server) -> None:
    response = server.post(content=RAW, headers={"content-encoding": "br"})
    assert response.status_code == 415


def test_compression_is_off_by_default(start_server: StartServer) -> None:
    plain = start_server("behave.py")
    response = plain.post(content=gzip.compress(RAW), headers={"content-encoding": "gzip"})
    assert response.status_code == 415
    assert "--compression" in response.text
    answer = plain.post(json=BODY, headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in answer.headers
    assert answer.json() == BODY


def test_http2_with_prior_knowledge(server: Server) -> None:
    with httpx.Client(base_url=server.url, http1=False, http2=True, timeout=30.0) as client:
        for n in range(3):
            response = client.post("/inference", json={"n": n})
            assert response.http_version == "HTTP/2"
            assert response.json() == {"n": n}
        assert client.get("/").http_version == "HTTP/2"


def test_http1_keep_alive_serves_many_requests_on_one_connection(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        stream = sock.makefile("rwb")
        for n in range(3):
            body = json.dumps({"n": n}).encode()
            stream.write(
                b"POST /inference HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            stream.flush()
            status = stream.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            assert headers.get("connection", "keep-alive") != "close"
            assert json.loads(stream.read(int(headers["content-length"]))) == {"n": n}


def test_a_sent_request_id_comes_back_and_reaches_the_worker_log(server: Server) -> None:
    response = server.post(json={"log": "hello from forward"}, headers={"x-request-id": "req-42"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"

    def worker_record():
        return [
            record for record in server.json_logs() if record.get("message") == "hello from forward"
        ]

    records = wait_until(worker_record, 10, "the worker's log line")
    assert records[0]["request_id"] == "req-42"
    assert records[0]["target"] == "mosec.behaviour"


def test_a_request_id_is_made_when_absent(server: Server) -> None:
    first = server.post(json={"log": "made id"})
    second = server.post(json={})
    made = first.headers["x-request-id"]
    assert made and made != second.headers["x-request-id"]
    records = wait_until(
        lambda: [r for r in server.json_logs() if r.get("message") == "made id"],
        10,
        "the worker's log line",
    )
    assert records[0]["request_id"] == made
    # Errors carry it too, in the response and in the worker's error line.
    failed = server.post(json={"raise": "other"}, headers={"x-request-id": "broken-1"})
    assert failed.status_code == 500 and failed.headers["x-request-id"] == "broken-1"
    records = wait_until(
        lambda: [r for r in server.json_logs() if "RuntimeError" in r.get("exception", "")],
        10,
        "the traceback line",
    )
    assert records[-1]["request_id"] == "broken-1"
    engine = [
        r
        for r in server.json_logs()
        if r["target"].startswith("mosec_engine") and r.get("request_id") == "broken-1"
    ]
    assert engine and engine[0]["status"] == 500
