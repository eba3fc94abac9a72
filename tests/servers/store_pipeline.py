"""Two stages handing objects over through a store mixin.

Environment (the workers inherit it, so every process builds the same classes):

- ``TEST_MIXIN``: ``redis``, ``arrow``, ``plasma`` or ``shm``;
- ``TEST_REDIS_URL``: the Redis to use (``redis``);
- ``TEST_OWN_REDIS_PORT``: start redis-server on this port as a registered daemon named
  ``redis`` and write its pid to ``$TEST_OUT_DIR/redis.pid`` (``redis``, instead of the URL);
- ``TEST_SECOND_REDIS_URL``: set the second stage to this other Redis URL (``redis``), which
  the server must refuse at start;
- ``TEST_SECOND_TIMEOUT_S``: the second stage's own forward timeout (default: ``--timeout``).

A request is a JSON object: :func:`store_objects.build` makes the object from it in the first
stage (``in_place``: an array is copied into ``shm_empty`` memory and handed over from there);
``first`` and ``second`` hold :func:`behaviour.act` keys for each stage. The answer describes
what the second stage received: its digest, its type (and whether an array was read from an
Arrow tensor), whether arrays in it are read-only and whether their memory lies in the arena.
"""

import os
import subprocess
import sys

import numpy as np
from behaviour import act, write_atomic
from store_objects import build, digest

from mosec import Server, Worker
from mosec.mixin import (
    ArrowShmIPCMixin,
    PlasmaShmIPCMixin,
    RedisShmIPCMixin,
    ShmIPCMixin,
)
from mosec.store.codec import INLINE_BELOW

MIXIN = {
    "redis": RedisShmIPCMixin,
    "arrow": ArrowShmIPCMixin,
    "plasma": PlasmaShmIPCMixin,
    "shm": ShmIPCMixin,
}[os.environ["TEST_MIXIN"]]


class Produce(MIXIN, Worker):
    """Builds the requested object."""

    def forward(self, data):
        act(data.get("first", {}))
        built = build(data)
        if data.get("in_place"):  # hand over an array written straight into the arena
            out = self.shm_empty(built.shape, built.dtype)
            out[...] = built
            built = out
        return {"object": built, "second": data["second"]} if "second" in data else built


class Consume(MIXIN, Worker):
    """Describes what arrived."""

    def forward(self, data):
        if isinstance(data, dict) and "second" in data:
            act(data["second"])
            data = data["object"]
        arrays = _arrays(data)
        return {
            "digest": digest(data),
            "type": type(data).__name__,
            # Arrays read from an Arrow tensor keep the tensor as their base.
            "arrow_tensor": type(getattr(data, "base", None)).__name__ == "Tensor",
            "readonly": all(not array.flags.writeable for array in arrays),
            "in_arena": [_in_arena(address) for address in _addresses(data)],
        }


def _arrays(data):
    if isinstance(data, np.ndarray):
        return [data]
    if isinstance(data, dict):
        return [array for value in data.values() for array in _arrays(value)]
    if isinstance(data, list):
        return [array for value in data for array in _arrays(value)]
    return []


def _addresses(data):
    """Data addresses of the large arrays and Arrow buffers in an object."""
    if hasattr(data, "schema"):
        return [
            buffer.address
            for column in data.columns
            for chunk in getattr(column, "chunks", [column])
            for buffer in chunk.buffers()
            if buffer is not None and buffer.size >= 4096
        ]
    return [a.__array_interface__["data"][0] for a in _arrays(data) if a.nbytes >= INLINE_BELOW]


def _in_arena(address):
    if MIXIN is RedisShmIPCMixin:
        return False
    from mosec.store.mapping import arena_mapping

    mapping = arena_mapping()
    return 0 <= address - mapping.base < len(mapping.view)


def start_redis(port):
    """redis-server as this server's daemon; its pid goes to $TEST_OUT_DIR/redis.pid."""
    command = ["redis-server", "--port", port, "--bind", "127.0.0.1"]
    proc = subprocess.Popen([*command, "--save", "", "--appendonly", "no"], stdout=sys.stderr)
    write_atomic(os.path.join(os.environ["TEST_OUT_DIR"], "redis.pid"), str(proc.pid))
    return proc


if __name__ == "__main__":
    server = Server()
    if MIXIN is RedisShmIPCMixin:
        own_port = os.environ.get("TEST_OWN_REDIS_PORT")
        if own_port:
            server.register_daemon("redis", start_redis(own_port))
            RedisShmIPCMixin.set_redis_url(f"redis://127.0.0.1:{own_port}/0")
        else:
            RedisShmIPCMixin.set_redis_url(os.environ["TEST_REDIS_URL"])
        if "TEST_SECOND_REDIS_URL" in os.environ:
            Consume.set_redis_url(os.environ["TEST_SECOND_REDIS_URL"])
    if MIXIN is PlasmaShmIPCMixin:
        PlasmaShmIPCMixin.set_plasma_path("/tmp/plasma.sock")
        PlasmaShmIPCMixin.set_plasma_path("/tmp/plasma.sock")  # explained once
    server.append_worker(Produce)
    server.append_worker(Consume, timeout=int(os.environ.get("TEST_SECOND_TIMEOUT_S", "0")))
    server.run()
