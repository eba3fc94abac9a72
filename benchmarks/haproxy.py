"""HAProxy (Debian's ``haproxy``) in front of several servers, on 127.0.0.1, stopped by PID.

The configuration is the one a rolling restart needs, and each line says why:

- ``option httpchk GET /`` every 100 ms, ``fall 1``, ``rise 2``: the server's readiness probe (200
  when ready, 503 while draining, refused while stopped or starting) takes it out of rotation
  within about 100 ms of a SIGTERM and back two checks after it is ready again.
- ``retry-on conn-failure empty-response 503`` with ``option redispatch 1``: a request sent in
  the ~100 ms before the check notices the drain is refused with 503 by the draining server
  *before* it is admitted (nothing ran), so it is safe to send again, to the other server. A
  request that reached a server that just closed its listener fails to connect and is retried
  the same way. ``option http-buffer-request`` keeps the POST body for that retry;
  ``timeout connect 200ms`` (a connect on loopback takes microseconds) also bounds HAProxy's pause
  before a retry (min(connect timeout, 1 s)).
- no ``on-marked-down shutdown-sessions``: that would cut the requests a draining server is
  still finishing; the drain answers them, and only then does the server exit.
"""

import csv
import io
import shutil
import socket
import time
from pathlib import Path
from typing import Dict, List, Sequence

from benchmarks.net import HOST
from benchmarks.processes import ProcessTree

CHECK_INTERVAL_MS = 100

CONFIG = """# written by benchmarks/haproxy.py
global
    maxconn 1024
    stats socket {stats_socket} mode 600 level admin

defaults
    mode http
    option http-keep-alive
    option http-buffer-request
    timeout connect 200ms
    timeout client 30s
    timeout server 30s
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503

frontend front
    bind {host}:{port}
    default_backend servers

backend servers
    balance roundrobin
    option httpchk GET /
    http-check expect status 200
    default-server inter {inter}ms fastinter {inter}ms downinter {inter}ms fall 1 rise 2
{servers}
"""


class HAProxyError(RuntimeError):
    """haproxy is missing, rejected its configuration, or did not come up."""


def haproxy_binary() -> str:
    """The haproxy executable (``/usr/sbin`` is often not on a user's PATH)."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        raise HAProxyError("haproxy is not installed (run benchmarks/install.sh)")
    return binary


class HAProxy:
    """One haproxy process balancing ``backends`` (name → port) behind ``port``.

    Args:
        port: the front port on 127.0.0.1.
        backends: server name → its port on 127.0.0.1.
        workdir: where the configuration, the stats socket and the log go.
    """

    def __init__(self, port: int, backends: Dict[str, int], workdir: Path):
        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        self.stats_socket = workdir / "haproxy.sock"
        servers = "\n".join(
            f"    server {name} {HOST}:{backend_port} check"
            for name, backend_port in backends.items()
        )
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            CONFIG.format(
                stats_socket=self.stats_socket,
                host=HOST,
                port=port,
                inter=CHECK_INTERVAL_MS,
                servers=servers,
            )
        )
        # -db: stay in the foreground, so the process we start is the one we stop.
        self.tree = ProcessTree(
            [haproxy_binary(), "-db", "-f", str(self.config)], workdir / "haproxy.log"
        )

    def start(self, timeout_s: float = 10.0) -> "HAProxy":
        """Start haproxy and wait until its stats socket answers."""
        self.tree.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.tree.exit_code() is not None:
                raise HAProxyError(f"haproxy exited: {self.tree.log_tail()}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise HAProxyError(f"haproxy did not come up: {self.tree.log_tail()}")

    def stop(self) -> None:
        """Stop haproxy by PID."""
        self.tree.stop(grace_s=5.0)

    def command(self, line: str) -> str:
        """One command on the stats socket (the runtime API); returns its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks: List[bytes] = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def stats(self) -> List[Dict[str, str]]:
        """``show stat`` as rows (frontend, each server, backend), keyed by column name."""
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def server_stats(self) -> Dict[str, Dict[str, str]]:
        """The rows of the backend's servers, by server name."""
        return {
            row["svname"]: row
            for row in self.stats()
            if row.get("pxname") == "servers" and row.get("svname") not in ("BACKEND", "FRONTEND")
        }

    def wait_status(self, names: Sequence[str], status: str, timeout_s: float) -> float:
        """Poll until every server of ``names`` has ``status`` (``UP``/``DOWN``); returns seconds.

        Raises:
            HAProxyError: not reached in time.
        """
        start = time.monotonic()
        deadline = start + timeout_s
        while time.monotonic() < deadline:
            rows = self.server_stats()
            if all(rows.get(name, {}).get("status", "").startswith(status) for name in names):
                return time.monotonic() - start
            time.sleep(0.02)
        raise HAProxyError(f"servers {list(names)} not {status} after {timeout_s:.0f} s")
