"""A two-route server for ``--dry-run``.

- ``/inference``: ``Prepare`` -> ``Infer`` (batching) -> ``Stream``; ``Prepare`` holds a lock, which
  cannot be pickled, and its examples feed the route;
- ``/other``: ``Lonely``, which has no example (the dry run skips the route).

``TEST_FAIL_STAGE`` names a worker class whose forward raises; ``TEST_CRASH_STAGE`` one whose
``__init__`` kills its process.
"""

import os
import threading

from mosec import Server, SSEWorker, Worker


def maybe_fail(worker):
    if os.environ.get("TEST_FAIL_STAGE") == type(worker).__name__:
        raise RuntimeError(f"{type(worker).__name__} was asked to fail")


class Prepare(Worker):
    """Doubles the numbers, under a lock."""

    multi_examples = [{"n": 1}, {"n": 2}, {"n": 3}]

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        if os.environ.get("TEST_CRASH_STAGE") == "Prepare":
            os._exit(3)

    def forward(self, data):
        maybe_fail(self)
        with self.lock:
            return {"n": data["n"] * 2}


class Infer(Worker):
    """Adds one, in batches."""

    def forward(self, data):
        maybe_fail(self)
        return [{"n": item["n"] + 1} for item in data]


class Stream(SSEWorker):
    """Streams the number and returns it."""

    def forward(self, data):
        maybe_fail(self)
        self.send_stream_event(str(data["n"]))
        return data


class Lonely(Worker):
    """Has no example."""

    def forward(self, data):
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Prepare)
    server.append_worker(Infer, max_batch_size=2)
    server.append_worker(Stream)
    server.append_worker(Lonely, route="/other")
    server.run()
