"""Steady load with upstream mosec's chaos client mix: valid, invalid and slow requests.

``concurrency`` threads each send one request after another, over keep-alive connections, each
request drawn at random:

- ``valid``: ``{"n": k}``; the answer must be 200 with ``n == k`` (anything else counts as
  ``wrong``);
- ``slow-forward``: a valid request whose ``forward`` sleeps 50-300 ms;
- ``bad-json``: a body that is not JSON (400 expected);
- ``wrong-type``: ``{"n": "seven"}`` (422 expected);
- ``trickle``: a valid body sent in 3-5 pieces 50-200 ms apart (a slow client).

Every request has a random client timeout: one in five is short (50 ms - 1 s: the client gives
up and closes the connection mid-request, counted ``gave-up``); the rest allow the server's
request deadline plus ``HANG_MARGIN_S``, so one of those that gets no answer is a **hang**. A
connection closed without an answer is ``conn``. The tally is by status code and these words.
"""

import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from benchmarks.net import HOST

#: What a request waits beyond the server's own deadline before it counts as a hang.
HANG_MARGIN_S = 3.0
SHORT_TIMEOUT_SHARE = 0.2
SHORT_TIMEOUT_S = (0.05, 1.0)
CONN_BACKOFF_S = 0.05
KINDS: Tuple[Tuple[str, float], ...] = (
    ("valid", 0.55),
    ("slow-forward", 0.1),
    ("bad-json", 0.1),
    ("wrong-type", 0.1),
    ("trickle", 0.15),
)
#: The statuses each kind gets from a healthy server.
EXPECTED = {"200", "400", "422", "gave-up"}
_CLOSED = (OSError, http.client.HTTPException)  # a refused, reset or cut connection


@dataclass
class Tally:
    """Outcomes of requests, counted by status code or by what happened instead.

    Attributes:
        counts: ``"200"``, ``"422"`` ... or ``gave-up``, ``conn``, ``wrong``.
        hangs: requests that got no answer within the server's deadline plus the margin.
    """

    counts: Counter = field(default_factory=Counter)
    hangs: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        """Requests sent."""
        return sum(self.counts.values()) + self.hangs

    def add(self, outcome: str) -> None:
        """Count one request's outcome (``hang`` goes to ``hangs``)."""
        with self._lock:
            if outcome == "hang":
                self.hangs += 1
            else:
                self.counts[outcome] += 1

    def merge(self, other: "Tally") -> None:
        """Add another tally's counts to this one."""
        with self._lock:
            self.counts.update(other.counts)
            self.hangs += other.hangs

    def statuses(self) -> str:
        """``200:951 408:3 gave-up:12``: codes in order, then the words."""
        keys = sorted(self.counts, key=lambda k: (not k.isdigit(), k))
        return " ".join(f"{key}:{self.counts[key]}" for key in keys if self.counts[key])

    def unexpected(self, allowed: set) -> Dict[str, int]:
        """The outcomes outside ``EXPECTED | allowed``, with their counts."""
        return {k: n for k, n in self.counts.items() if n and k not in EXPECTED | allowed}


class Client:
    """One keep-alive connection that sends requests with a deadline each.

    Args:
        port: the server's port on 127.0.0.1.
        route: the path requests go to.
        server_timeout_s: the server's request deadline (long client timeouts exceed it).
        rng: this client's random numbers.
    """

    def __init__(self, port: int, route: str, server_timeout_s: float, rng: random.Random):
        self.port = port
        self.route = route
        self.long_timeout_s = server_timeout_s + HANG_MARGIN_S
        self.rng = rng
        self._conn: Optional[http.client.HTTPConnection] = None
        self._reused = False

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def one(self) -> str:
        """Send one request of a random kind; returns its outcome."""
        kind = self.rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        short = self.rng.random() < SHORT_TIMEOUT_SHARE
        timeout_s = self.rng.uniform(*SHORT_TIMEOUT_S) if short else self.long_timeout_s
        n = self.rng.randrange(1 << 30)
        body, pieces = _body(kind, n, self.rng)
        check: Optional[Callable[[bytes], bool]] = None
        if kind in ("valid", "slow-forward", "trickle"):
            check = lambda answer: json.loads(answer).get("n") == n  # noqa: E731
        return self.send(body, pieces, timeout_s, short, check)

    def send(
        self,
        body: bytes,
        pieces: int,
        timeout_s: float,
        short: bool,
        check: Optional[Callable[[bytes], bool]] = None,
    ) -> str:
        """POST ``body`` (in ``pieces``, trickled) within ``timeout_s``; returns the outcome.

        A reused connection that the server had closed is retried once on a fresh one, as HTTP
        clients do; any other failure is the outcome.
        """
        deadline = time.monotonic() + timeout_s
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                status, answer = self._exchange(body, pieces, deadline)
            except (socket.timeout, TimeoutError):
                self.close()
                return "gave-up" if short else "hang"
            except _CLOSED:
                self.close()
                if reused and attempt == 1 and time.monotonic() < deadline:
                    continue
                return "conn"
            if status == 200 and check is not None and not _holds(check, answer):
                return "wrong"
            return str(status)
        return "conn"

    def _exchange(self, body: bytes, pieces: int, deadline: float) -> Tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(HOST, self.port, timeout=_left(deadline))
            self._conn.connect()
        conn = self._conn
        assert conn.sock is not None
        conn.putrequest("POST", self.route)
        conn.putheader("content-type", "application/json")
        conn.putheader("content-length", str(len(body)))
        conn.endheaders()
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            if start:
                time.sleep(min(self.rng.uniform(0.05, 0.2), _left(deadline)))
            conn.sock.settimeout(_left(deadline))
            conn.sock.sendall(body[start : start + step])
        conn.sock.settimeout(_left(deadline))
        response = conn.getresponse()
        answer = response.read()
        if response.will_close:
            self.close()
        return response.status, answer


def _left(deadline: float) -> float:
    """Seconds until ``deadline`` (a tiny positive number once it passed, so the call times out)."""
    return max(deadline - time.monotonic(), 0.001)


def _holds(check: Callable[[bytes], bool], answer: bytes) -> bool:
    try:
        return check(answer)
    except (ValueError, AttributeError):
        return False


def _body(kind: str, n: int, rng: random.Random) -> Tuple[bytes, int]:
    """The body of a request of ``kind`` and how many pieces it is sent in."""
    if kind == "bad-json":
        return b'{"n": ' + str(n).encode(), 1
    if kind == "wrong-type":
        return b'{"n": "seven"}', 1
    document: Dict[str, object] = {"n": n}
    if kind == "slow-forward":
        document["sleep"] = round(rng.uniform(0.05, 0.3), 3)
    body = json.dumps(document).encode()
    return body, (rng.randint(3, 5) if kind == "trickle" else 1)


class Load:
    """``concurrency`` clients sending the mix until stopped.

    Args:
        port: the server's port on 127.0.0.1.
        route: the path requests go to.
        server_timeout_s: the server's request deadline.
        concurrency: clients (threads) at once.
        seed: makes the mix repeatable.
    """

    def __init__(
        self, port: int, route: str, server_timeout_s: float, concurrency: int = 8, seed: int = 0
    ):
        self.tally = Tally()
        self._stop = threading.Event()
        self._clients = [
            Client(port, route, server_timeout_s, random.Random(seed * 1000 + i))
            for i in range(concurrency)
        ]
        self._threads: List[threading.Thread] = []
        self._join_s = server_timeout_s + HANG_MARGIN_S + 2.0

    def start(self) -> "Load":
        """Start the clients."""
        for client in self._clients:
            thread = threading.Thread(target=self._loop, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Tally:
        """Stop after each client's current request (each bounded by its timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self._join_s)
        return self.tally

    def _loop(self, client: Client) -> None:
        while not self._stop.is_set():
            outcome = client.one()
            self.tally.add(outcome)
            if outcome == "conn":  # refused or cut: back off a little, as a real client does
                self._stop.wait(CONN_BACKOFF_S)
        client.close()
