"""A stage whose ``forward`` swallows its timeout alarm on request, for the stuck-worker tests.

Two arena stages (``ShmIPCMixin``), one process each. ``Produce`` puts the request's ``size``
bytes (default 256 KiB, large enough to travel through the arena) into the arena. ``Model``, with
a forward timeout of ``FORWARD_TIMEOUT_S``, reads that array in place and answers
``{"pid": <its pid>, "size": <bytes received>}``. With ``"spin": true`` it first writes its pid to
the request's ``mark``, leases an arena array of its own (never handed over), and then spins,
catching the ``MosecTimeoutError`` of its alarm (and touching ``swallowed``), until the process is
killed or ``SPIN_LIMIT_S`` has passed: a worker stuck for good, as far as the server can tell.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from mosec import Server, Worker
from mosec.errors import MosecTimeoutError
from mosec.mixin import ShmIPCMixin

FORWARD_TIMEOUT_S = 1
#: A bound on the spin, so that a broken server leaves no process spinning for long.
SPIN_LIMIT_S = 60.0


class Produce(ShmIPCMixin, Worker):
    """The request's bytes, as an arena array."""

    def forward(self, data):
        self.request = data
        return np.full(int(data.get("size", 256 * 1024)), 7, np.uint8)

    def serialize_ipc(self, data):
        # The request's options ride along inline, in front of the array's reference.
        return super().serialize_ipc({"request": self.request, "array": data})


class Model(ShmIPCMixin, Worker):
    """Reads the array in place; spins past its timeout when asked to."""

    def forward(self, data):
        request, array = data["request"], data["array"]
        if request.get("spin"):
            Path(request["mark"]).write_text(str(os.getpid()))
            self.lease = self.shm_empty(64 * 1024, np.uint8)
            deadline = time.monotonic() + SPIN_LIMIT_S
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.01)
                except MosecTimeoutError:
                    Path(request["swallowed"]).touch()
        return {"pid": os.getpid(), "size": int(array.size)}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Produce)
    server.append_worker(Model, timeout=FORWARD_TIMEOUT_S)
    server.run()
