"""Who deleted which Redis key: Redis's ``MONITOR`` feed, and which server each client belongs to.

Two servers share one redis-server; each names its keys ``mosec:<server pid>.<worker pid>...``
(``mosec/store/redis.py``). To show that neither ever deletes the other's keys, every command
that deletes (``GETDEL`` by a consumer, ``DEL``/``UNLINK`` by an engine) is recorded with the
client's address from ``MONITOR``, and each address is traced to the process that owns the
socket (its local port, read from the servers' process trees with psutil, sampled while they
run; worker and engine connections to Redis live as long as their process).
"""

import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import psutil

from benchmarks.net import HOST
from benchmarks.processes import ProcessTree

DELETING = {"GETDEL", "DEL", "UNLINK"}
# 1700000000.123456 [0 127.0.0.1:54321] "GETDEL" "mosec:12.34.ab12cd34:5"
_LINE = re.compile(r'^\+?[\d.]+ \[\d+ [\d.]+:(\d+)\] "(\w+)"(.*)$')
_KEY = re.compile(r'"(mosec:(\d+)\.[^"]*)"')


@dataclass(frozen=True)
class Deletion:
    """One key deleted: the client's local port, the command, the key, and its maker's pid."""

    client_port: int
    command: str
    key: str
    owner_pid: int


class RedisMonitor:
    """Records every deleting command that names a ``mosec:`` key, from ``MONITOR``."""

    def __init__(self, port: int):
        self._sock = socket.create_connection((HOST, port), timeout=5.0)
        self._sock.sendall(b"MONITOR\r\n")
        self._stop = threading.Event()
        self.deletions: List[Deletion] = []
        self.lines = 0
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)

    def start(self) -> "RedisMonitor":
        """Start reading the feed."""
        self._sock.settimeout(0.2)
        self._thread.start()
        return self

    def stop(self) -> List[Deletion]:
        """Stop reading; returns every deletion seen."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        self._sock.close()
        return list(self.deletions)

    def _read(self) -> None:
        pending = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\r\n")
            for raw in lines:
                self._parse(raw)

    def _parse(self, raw: bytes) -> None:
        # A SET line carries its whole value: look at the command before decoding anything.
        start = raw.find(b'] "')
        if start < 0:
            return
        self.lines += 1
        command = raw[start + 3 : raw.find(b'"', start + 3)].upper()
        if command.decode(errors="replace") not in DELETING:
            return
        match = _LINE.match(raw.decode(errors="replace"))
        if match is None:
            return
        port, command, rest = int(match.group(1)), match.group(2).upper(), match.group(3)
        if command not in DELETING:
            return
        for key, owner in _KEY.findall(rest):
            self.deletions.append(Deletion(port, command, key, int(owner)))


class ClientPorts:
    """Maps the local port of every Redis connection of the servers' trees to the server's name.

    Sampled every 100 ms from a thread while the servers run (a killed server's sockets vanish
    with it, so they must be seen before).
    """

    def __init__(self, redis_port: int, trees: Dict[str, ProcessTree]):
        self._redis_port = redis_port
        self._trees = dict(trees)
        self._lock = threading.Lock()
        self.owner: Dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redis-clients", daemon=True)

    def start(self) -> "ClientPorts":
        """Start sampling."""
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> Dict[int, str]:
        """Stop sampling; returns port → server name."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        self.sample()
        with self._lock:
            return dict(self.owner)

    def track(self, name: str, tree: ProcessTree) -> None:
        """Also sample ``tree`` (a restarted server) under ``name``."""
        with self._lock:
            self._trees[name] = tree

    def sample(self) -> None:
        """Read the connections of every live process of every tree once."""
        with self._lock:
            trees = list(self._trees.items())
        found: List[Tuple[int, str]] = []
        for name, tree in trees:
            for proc in tree.processes():
                try:
                    connections = proc.net_connections(kind="tcp")
                except psutil.Error:
                    continue
                for conn in connections:
                    if conn.raddr and conn.raddr.port == self._redis_port:
                        found.append((conn.laddr.port, name))
        with self._lock:
            for port, name in found:
                self.owner.setdefault(port, name)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()


def foreign_deletions(
    deletions: Sequence[Deletion], owner_of_port: Dict[int, str], server_of_pid: Dict[int, str]
) -> Tuple[List[Deletion], int]:
    """Deletions of a server's keys by a client not traced to that server, and the traced count.

    Args:
        deletions: what ``MONITOR`` saw.
        owner_of_port: client port → server name (:class:`ClientPorts`).
        server_of_pid: server process id (the first part of its keys) → server name.
    """
    foreign: List[Deletion] = []
    own = 0
    for deletion in deletions:
        owner = server_of_pid.get(deletion.owner_pid)
        if owner is None:
            continue  # a key of no server of this run
        if owner_of_port.get(deletion.client_port) == owner:
            own += 1
        else:
            foreign.append(deletion)
    return foreign, own


def wait_keys_gone(client_keys, prefix: str, timeout_s: float) -> Tuple[int, float]:
    """Poll ``client_keys(prefix)`` until it is empty; returns (keys at first look, seconds).

    Raises:
        TimeoutError: keys are still there after ``timeout_s``.
    """
    start = time.monotonic()
    first = len(client_keys(prefix))
    while True:
        left = len(client_keys(prefix))
        elapsed = time.monotonic() - start
        if left == 0:
            return first, elapsed
        if elapsed > timeout_s:
            raise TimeoutError(f"{left} keys {prefix}* still there after {timeout_s:.1f} s")
        time.sleep(0.1)
