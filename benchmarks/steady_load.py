"""A steady closed-loop load that records every request: when it started, how long, what came back.

``wrk`` counts failures but cannot say when each one happened; a rolling restart needs exactly
that (which phase failed, and how), so this load is a few Python threads, each on one keep-alive
connection, sending the next request as soon as the previous answer arrived. It is not meant to
saturate the servers, only to keep requests in flight through every restart.
"""

import http.client
import threading
import time
from dataclasses import dataclass
from typing import List, Optional

from benchmarks.net import HOST


@dataclass(frozen=True)
class Sample:
    """One request: ``start`` (monotonic seconds), ``latency_s``, ``status`` (0 when none came)."""

    start: float
    latency_s: float
    status: int
    error: str = ""

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


class SteadyLoad:
    """``connections`` threads POSTing ``body`` to ``path`` on 127.0.0.1:``port`` until stopped.

    Args:
        port: where to send.
        path: the route.
        body: the request body (JSON).
        connections: threads, one keep-alive connection each.
        timeout_s: a request's socket timeout; one that passes counts as a failure.
    """

    def __init__(self, port: int, path: str, body: bytes, connections: int, timeout_s: float):
        self._target = (port, path, body, timeout_s)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.samples: List[Sample] = []
        self._threads = [
            threading.Thread(target=self._loop, name=f"load-{i}", daemon=True)
            for i in range(connections)
        ]

    def start(self) -> "SteadyLoad":
        """Start every connection's thread."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> List[Sample]:
        """Stop after each thread's current request; returns every sample, oldest first."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60.0)
        with self._lock:
            return sorted(self.samples, key=lambda s: s.start)

    def count(self) -> int:
        """Requests answered so far."""
        with self._lock:
            return len(self.samples)

    def _loop(self) -> None:
        port, path, body, timeout_s = self._target
        conn: Optional[http.client.HTTPConnection] = None
        headers = {"content-type": "application/json"}
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
            start = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                sample = Sample(start, time.monotonic() - start, response.status)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as err:
                sample = Sample(start, time.monotonic() - start, 0, f"{type(err).__name__}: {err}")
                conn.close()
                conn = None
            with self._lock:
                self.samples.append(sample)
        if conn is not None:
            conn.close()
