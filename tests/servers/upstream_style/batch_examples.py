"""Upstream-style warm-up with ``multi_examples`` of batches, and ``worker_id`` reassigned.

``Scale`` batches up to 4 items; each of its ``multi_examples`` entries is a whole batch (of 1 and
of 3 arrays, the way mosec's Jax example warms up shapes it will compile for). It records the
batch sizes its warm-up saw and reports them with each answer. ``Label`` reassigns
``self.worker_id`` in ``__init__``, as mosec's Python-side metrics example does. Runs unchanged on
mosec 0.9.8 and on this package.
"""

import numpy as np

from mosec import Server, Worker


class Scale(Worker):
    """Doubles the numbers, in batches."""

    multi_examples = [
        [{"values": [1.0]}],
        [{"values": [1.0, 2.0]}, {"values": [3.0]}, {"values": [4.0, 5.0, 6.0]}],
    ]

    def __init__(self):
        super().__init__()
        self.warmed = []
        self.serving = False

    def forward(self, data: list) -> list:
        if not self.serving:
            self.warmed.append(len(data))
        answers = []
        for item in data:
            doubled = np.asarray(item["values"], dtype=np.float64) * 2
            answers.append({"values": doubled.tolist(), "warmed": list(self.warmed)})
        return answers

    def deserialize(self, data: bytes):
        # The first real request ends the warm-up record.
        self.serving = True
        return super().deserialize(data)


class Label(Worker):
    """Adds the worker's id, reassigned as a string in ``__init__``."""

    def __init__(self):
        super().__init__()
        self.worker_id = str(self.worker_id)

    def forward(self, data: dict) -> dict:
        return {**data, "worker": self.worker_id}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Scale, max_batch_size=4, max_wait_time=5)
    server.append_worker(Label)
    server.run()
