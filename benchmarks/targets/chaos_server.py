"""The chaos harness's server: two stages, run unchanged by ours and by upstream mosec 0.9.8.

Stage 1 (``Front``, ``CHAOS_FRONT_WORKERS`` processes, default 2) checks the request and makes a
``size``-byte array filled with ``n % 251``; stage 2 (``Back``, one process) checks every byte of
it and answers ``{"n": n, "size": size, "pids": [front pid, back pid]}``, so a 200 with a wrong
body is caught by the client. A request is a JSON object:

- ``n`` (int, required): anything else is a ``ValidationError`` (422); a body that is not JSON
  fails in mosec's own ``deserialize`` (400);
- ``size`` (int, default ``CHAOS_SIZE``): bytes handed from stage 1 to stage 2, through the
  store of ``CHAOS_STORE`` (``shm``: the arena, ``redis``: Redis, ``pickle``: inline);
- ``sleep`` (seconds): a slow ``forward`` in stage 1;
- ``stuck`` (a path): stage 1 writes its pid there and then never returns, swallowing the
  timeout alarm's exception (a worker stuck in code that ignores the timeout), for at most
  ``STUCK_LIMIT_S`` so that nothing outlives a forgotten run.

``CHAOS_STORE=redis`` also starts ``redis-server`` on ``CHAOS_REDIS_PORT`` and registers it as the
server's daemon ``redis``; its pid goes to ``CHAOS_REDIS_PID`` (a file path).
"""

import os
import subprocess
import sys
import time

import numpy as np

from mosec import Server, ValidationError, Worker

STORE = os.environ.get("CHAOS_STORE", "pickle")
SIZE = int(os.environ.get("CHAOS_SIZE", str(128 << 10)))
FRONT_WORKERS = int(os.environ.get("CHAOS_FRONT_WORKERS", "2"))
STUCK_LIMIT_S = 300.0


def _bases():
    """The store mixin (if any) in front of ``Worker``."""
    if STORE == "pickle":
        return (Worker,)
    from mosec import mixin

    if STORE == "shm":
        return (mixin.ShmIPCMixin, Worker)
    if STORE == "redis":
        mixin.RedisShmIPCMixin.set_redis_url(
            f"redis://127.0.0.1:{os.environ['CHAOS_REDIS_PORT']}/0"
        )
        return (mixin.RedisShmIPCMixin, Worker)
    raise SystemExit(f"chaos_server.py: unknown CHAOS_STORE {STORE!r}")


BASES = _bases()


def stuck(mark: str) -> None:
    """Never return: the alarm's ``MosecTimeoutError`` (any exception) is swallowed."""
    with open(mark, "w") as out:
        out.write(str(os.getpid()))
    deadline = time.monotonic() + STUCK_LIMIT_S
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except BaseException:  # noqa: BLE001, S110 (ignoring the timeout is the point)
            pass


class Front(*BASES):
    """Check the request, then make its array."""

    def forward(self, data):
        if not isinstance(data, dict) or type(data.get("n")) is not int:
            raise ValidationError('expected {"n": <int>, ...}')
        if "stuck" in data:
            stuck(str(data["stuck"]))
        if "sleep" in data:
            time.sleep(float(data["sleep"]))
        size = int(data.get("size", SIZE))
        blob = np.full(size, data["n"] % 251, dtype=np.uint8)
        return {"n": data["n"], "blob": blob, "pid": os.getpid()}


class Back(*BASES):
    """Check the array byte by byte and answer a small summary."""

    def forward(self, data):
        blob = data["blob"]
        if blob.size and not bool((blob == data["n"] % 251).all()):
            raise ValueError("the array arrived corrupted")
        return {"n": data["n"], "size": int(blob.size), "pids": [data["pid"], os.getpid()]}


def start_redis() -> subprocess.Popen:
    """redis-server on 127.0.0.1, nothing on disk; its pid written for the harness."""
    command = ["redis-server", "--port", os.environ["CHAOS_REDIS_PORT"], "--bind", "127.0.0.1"]
    proc = subprocess.Popen([*command, "--save", "", "--appendonly", "no"], stdout=sys.stderr)
    with open(os.environ["CHAOS_REDIS_PID"], "w") as out:
        out.write(str(proc.pid))
    return proc


if __name__ == "__main__":
    server = Server()
    if STORE == "redis":
        server.register_daemon("redis", start_redis())
    server.append_worker(Front, num=FRONT_WORKERS)
    server.append_worker(Back)
    server.run()
