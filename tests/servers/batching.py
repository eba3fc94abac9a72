"""A batching server: forward reports the size of every batch it gets.

The worker is warmed up with ``example``, a whole batch of 8 as mosec users write it for a
batching stage; the sizes of the warm-up batches are written to
``$TEST_OUT_DIR/warmup-<worker_id>.json``.
"""

import json
import os

from behaviour import act, write_atomic

from mosec import Server, Worker


class Batched(Worker):
    """Echoes each item with the size of the batch it came in."""

    example = [{"warm": True}] * 8

    def __init__(self):
        super().__init__()
        self.warmup_sizes = []

    def forward(self, data):
        if data and data[0].get("warm"):
            self.warmup_sizes.append(len(data))
            out = os.path.join(os.environ["TEST_OUT_DIR"], f"warmup-{self.worker_id}.json")
            write_atomic(out, json.dumps(self.warmup_sizes))
        for item in data:
            act(item)
        return [{"batch": len(data), "item": item} for item in data]


if __name__ == "__main__":
    server = Server()
    server.append_worker(Batched, max_batch_size=8, max_wait_time=100)
    server.run()
