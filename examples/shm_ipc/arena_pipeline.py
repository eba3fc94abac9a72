"""A two-stage tensor pipeline on the server's shared-memory arena: no daemon, no copies.

Run it from the repository root::

    python examples/shm_ipc/arena_pipeline.py --port 8000

and send a request from another shell::

    curl -X POST http://127.0.0.1:8000/inference -d '{"size": 1024, "seed": 7}'

The answer describes the 12 MiB float32 tensor the second stage received: its shape, dtype,
per-channel means and SHA-256. The first stage writes the tensor straight into the arena
(``shm_empty``), and the second stage reads it where it lies: only a 32-byte reference crosses
the engine. The server creates the arena itself (``--shm-size``, default 1 GiB), so nothing else
has to run. ``redis_pipeline.py`` beside this file is the same pipeline over Redis. Stop the
server with Ctrl-C.
"""

import numpy as np
from tensor_stages import normalise_into, parse, summarize, tensor_shape

from mosec import Server, Worker
from mosec.mixin import ShmIPCMixin


class Preprocess(ShmIPCMixin, Worker):
    """Stage 1: normalise the image straight into arena memory."""

    def forward(self, data: dict) -> np.ndarray:
        size, seed = parse(data)
        return normalise_into(self.shm_empty(tensor_shape(size), np.float32), size, seed)


class Inference(ShmIPCMixin, Worker):
    """Stage 2: reads the tensor in place (read-only) and summarises it."""

    def forward(self, data: np.ndarray) -> dict:
        return summarize(data)


if __name__ == "__main__":
    server = Server()
    server.append_worker(Preprocess)
    server.append_worker(Inference)
    server.run()
