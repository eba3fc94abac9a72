"""HTTP hardening: request smuggling, slow clients, the connection cap, the drain's last instant.

Raw sockets (``socket``) send what HTTP clients will not: both ``Content-Length`` and
``Transfer-Encoding``, or a request head one line at a time.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from server_util import StartServer

#: Short enough for a quick test, long enough for a loaded 2-core machine to serve a request.
HEADER_TIMEOUT_MS = 1500
#: The cap of the slow-client test: above its slow clients, so a normal client gets a slot.
MAX_CONNECTIONS = 64
SLOW_CLIENTS = 50
BODY = b'{"echo": 1}'


def _connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one response (status and everything after it) until the server closes."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 "), data
    return int(data[9:12]), data


def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send a raw request and read the answer; the server must close the connection after it."""
    with _connect(port) as sock:
        sock.sendall(request)
        return _read_response(sock)


def _head(*lines: str) -> bytes:
    head = ["POST /inference HTTP/1.1", "Host: 127.0.0.1", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


CHUNKED_BODY = f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "lines",
    [
        ["Content-Length: 5", "Transfer-Encoding: chunked"],
        ["Transfer-Encoding: chunked", "Content-Length: 5"],
        ["Transfer-Encoding: chunked", f"Content-Length: {len(CHUNKED_BODY)}"],
    ],
    ids=["cl-then-te", "te-then-cl", "te-then-matching-cl"],
)
def test_content_length_with_transfer_encoding_is_refused(
    start_server: StartServer, lines: list[str]
) -> None:
    server = start_server("behave.py")
    # A well-framed request first on the same connection: only the bad one is refused.
    good = _head(f"Content-Length: {len(BODY)}") + BODY
    status, answer = _exchange(server.port, good + _head(*lines) + CHUNKED_BODY)
    assert status == 200, answer
    second = answer[answer.index(b"HTTP/1.1 ", 9) :]
    assert second.startswith(b"HTTP/1.1 400 "), answer
    assert b"connection: close" in second.lower(), answer
    assert b"Content-Length and Transfer-Encoding" in second, answer
    # Nothing reached the worker from the bad request, and the server still serves.
    assert server.post(json={"after": True}).json() == {"after": True}


@pytest.mark.parametrize(
    "lines",
    [["Content-Length: 5", "Content-Length: 6"], ["Content-Length: 5, 6"]],
    ids=["two-headers", "one-list"],
)
def test_conflicting_content_lengths_are_refused(
    start_server: StartServer, lines: list[str]
) -> None:
    server = start_server("behave.py")
    status, answer = _exchange(server.port, _head(*lines) + b"hello!")
    assert status == 400, answer


def test_chunked_bodies_and_pipelining_still_work(start_server: StartServer) -> None:
    """The framing watch follows chunked bodies (extensions, trailers) across pipelined requests."""
    server = start_server("behave.py")
    chunked = (
        _head("Transfer-Encoding: chunked")
        + b"3;ext=1\r\n"
        + BODY[:3]
        + b"\r\n"
        + f"{len(BODY) - 3:x}\r\n".encode()
        + BODY[3:]
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    last = _head(f"Content-Length: {len(BODY)}", "Connection: close") + BODY
    status, answer = _exchange(server.port, chunked + chunked + last)
    assert status == 200, answer
    assert answer.count(b"HTTP/1.1 200 OK") == 3, answer


def _slow_client(port: int, lines: int, stop: threading.Event) -> str:
    """Send a head one line at a time, never finishing it; how the connection ended."""
    try:
        sock = _connect(port, timeout=30)
    except OSError as err:
        return f"connect failed: {err}"
    with sock:
        try:
            sock.sendall(b"POST /inference HTTP/1.1\r\n")
            for n in range(lines):
                sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                if stop.wait(0.2):
                    return "stopped"
                # A cut-off connection shows as EOF or a reset on a non-blocking peek.
                sock.setblocking(False)
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return "closed"
                    return "answered"
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
    return "still open"


def test_slow_clients_are_cut_off_and_others_served(start_server: StartServer) -> None:
    server = start_server(
        "behave.py",
        "--header-timeout",
        str(HEADER_TIMEOUT_MS),
        "--max-connections",
        str(MAX_CONNECTIONS),
    )
    stop = threading.Event()
    # Enough lines to outlast the header timeout many times over.
    lines = int(20 * HEADER_TIMEOUT_MS / 200)
    with concurrent.futures.ThreadPoolExecutor(SLOW_CLIENTS) as pool:
        started = time.monotonic()
        slow = [pool.submit(_slow_client, server.port, lines, stop) for _ in range(SLOW_CLIENTS)]
        try:
            # While the slow clients are connected (under the cap), a normal client is served.
            with httpx.Client(base_url=server.url, timeout=30) as client:
                assert client.post("/inference", json={"during": True}).status_code == 200
            served_after = time.monotonic() - started
            ends = [future.result(timeout=60) for future in slow]
        finally:
            stop.set()
        elapsed = time.monotonic() - started
    assert served_after < HEADER_TIMEOUT_MS / 1000, served_after
    assert ends == ["closed"] * SLOW_CLIENTS, ends
    # Cut off after the header timeout, not kept forever.
    assert elapsed < HEADER_TIMEOUT_MS / 1000 + 10, elapsed
    assert server.post(json={"after": True}).json() == {"after": True}


def test_a_silent_connection_is_cut_off(start_server: StartServer) -> None:
    """A client that connects and sends nothing is closed after the header timeout too."""
    server = start_server("behave.py", "--header-timeout", str(HEADER_TIMEOUT_MS))
    with _connect(server.port, timeout=30) as sock:
        started = time.monotonic()
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_MS / 1000 - 0.2 < elapsed < HEADER_TIMEOUT_MS / 1000 + 5, elapsed


def test_past_the_cap_a_client_waits_for_a_free_slot(start_server: StartServer) -> None:
    """At the cap, the next connection is held in the backlog (not refused) and served later."""
    server = start_server("behave.py", "--max-connections", "2", "--header-timeout", "30000")
    # The fixture's keep-alive connection (from its readiness check) would take a slot.
    server.client.close()
    held = [_connect(server.port) for _ in range(2)]
    try:
        # Both slots are taken by idle connections: a request waits (the kernel completed its
        # handshake) rather than being reset.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            request = _head("Content-Length: 2", "Connection: close") + b"{}"
            future = pool.submit(_exchange, server.port, request)
            with pytest.raises(concurrent.futures.TimeoutError):
                future.result(timeout=1.0)
            held.pop().close()
            status, _ = future.result(timeout=20)
        assert status == 200
    finally:
        for sock in held:
            sock.close()


def test_requests_while_a_daemon_dies_get_200_or_503(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Every request sent around a daemon's death is answered 200 or 503; none is reset."""
    server = start_server("daemon.py", env={"TEST_OUT_DIR": str(tmp_path)})
    daemon_pid = int((tmp_path / "daemon.pid").read_text())
    stop = threading.Event()
    answered = threading.Semaphore(0)

    def hammer(keep_alive: bool) -> list[str]:
        outcomes = []
        limits = httpx.Limits(max_keepalive_connections=1 if keep_alive else 0)
        with httpx.Client(base_url=server.url, timeout=30, limits=limits) as client:
            while not stop.is_set():
                try:
                    response = client.post("/inference", json={"n": 1})
                except httpx.ConnectError:
                    # Refused: the listener is closed, the server is gone.
                    break
                except httpx.TransportError as err:
                    outcomes.append(f"{type(err).__name__}: {err}")
                    break
                outcomes.append(str(response.status_code))
                answered.release()
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer, keep_alive) for keep_alive in (True, False, True, False)]
        for _ in range(20):
            assert answered.acquire(timeout=20)
        os.kill(daemon_pid, signal.SIGKILL)
        code = server.wait_exit()
        stop.set()
        outcomes = [outcome for future in futures for outcome in future.result(timeout=30)]
    assert code != 0
    assert set(outcomes) <= {"200", "503"}, [o for o in outcomes if o not in {"200", "503"}]
