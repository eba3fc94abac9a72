"""A server that makes every metric of the Grafana dashboard report a sample.

Stage 1 (arena) answers ``{"big": true}`` with a 128 KiB array, passed by reference, and anything
else with a small one, passed inline; stage 2 batches (so batch size and batching wait have
samples) and answers the array's length.
"""

import numpy as np

from mosec import Server, Worker
from mosec.mixin import ShmIPCMixin


class Make(ShmIPCMixin, Worker):
    """A large or small array, as the request asks."""

    def forward(self, data):
        return np.ones(32 * 1024 if data.get("big") else 4, dtype=np.float32)


class Count(ShmIPCMixin, Worker):
    """The length of each array of the batch."""

    def forward(self, data):
        return [{"length": int(item.size)} for item in data]


if __name__ == "__main__":
    server = Server()
    server.append_worker(Make)
    server.append_worker(Count, max_batch_size=4, max_wait_time=20)
    server.run()
