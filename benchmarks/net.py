"""Loopback networking helpers: free ports and single HTTP calls, on 127.0.0.1 only."""

import http.client
import socket
import threading
from typing import Optional, Set, Tuple

HOST = "127.0.0.1"


_handed_out: Set[int] = set()  # servers start side by side: never give one port twice
_lock = threading.Lock()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it), new in this process."""
    with _lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def request(
    method: str,
    port: int,
    path: str,
    body: Optional[bytes] = None,
    timeout_s: float = 5.0,
    content_type: str = "application/json",
) -> Tuple[int, bytes]:
    """One HTTP/1.1 request to 127.0.0.1:``port``; returns the status and the body.

    Raises:
        OSError: the connection failed or timed out.
        http.client.HTTPException: the answer was not HTTP.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"content-type": content_type} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def redis_ping(port: int, timeout_s: float = 1.0) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
