"""The two-stage tensor pipeline of ``arena_pipeline.py``, with tensors travelling through Redis.

Needs ``redis-server`` on the PATH and redis-py (``pip install 'redis[hiredis]'``). Run it from
the repository root::

    python examples/shm_ipc/redis_pipeline.py --port 8000

and send a request from another shell::

    curl -X POST http://127.0.0.1:8000/inference -d '{"size": 1024, "seed": 7}'

The answer is the same as ``arena_pipeline.py``'s. The script starts its own redis-server on a
free port of 127.0.0.1 (no persistence) and registers it as a daemon of the server: the server
stops it on the way out, and if it dies first, requests in flight get 503 and the server exits
non-zero. Each tensor is one Redis key, written in one round trip by the first stage and read
and deleted (``GETDEL``) by the second; only the key crosses the engine. A Unix-socket URL
(``unix:///path/redis.sock?db=0``) works as well as TCP. Stop the server with Ctrl-C.
"""

import socket
import subprocess
import time

import numpy as np
import redis
from tensor_stages import normalise_into, parse, summarize, tensor_shape

from mosec import Server, Worker, get_logger
from mosec.mixin import RedisShmIPCMixin

logger = get_logger("redis_pipeline")

#: How long redis-server may take to answer PING.
REDIS_START_S = 10.0


class Preprocess(RedisShmIPCMixin, Worker):
    """Stage 1: normalise the image; the mixin puts the tensor in Redis."""

    def forward(self, data: dict) -> np.ndarray:
        size, seed = parse(data)
        return normalise_into(np.empty(tensor_shape(size), np.float32), size, seed)


class Inference(RedisShmIPCMixin, Worker):
    """Stage 2: gets the tensor (read-only) from Redis and summarises it."""

    def forward(self, data: np.ndarray) -> dict:
        return summarize(data)


def start_redis() -> tuple[subprocess.Popen, str]:
    """Start redis-server on a free loopback port; returns it and its URL once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen([*command, "--save", "", "--appendonly", "no", "--loglevel", "warning"])
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + REDIS_START_S
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)
    client.close()
    logger.info("redis-server (pid %d) on %s", proc.pid, url, extra={"redis_pid": proc.pid})
    return proc, url


if __name__ == "__main__":
    redis_proc, redis_url = start_redis()
    RedisShmIPCMixin.set_redis_url(redis_url)
    server = Server()
    server.register_daemon("redis", redis_proc)
    server.append_worker(Preprocess)
    server.append_worker(Inference)
    try:
        server.run()
    finally:
        # The server stops its daemons once it has started; this covers a failed start.
        if redis_proc.poll() is None:
            redis_proc.terminate()
            redis_proc.wait()
