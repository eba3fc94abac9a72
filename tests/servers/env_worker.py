"""Two processes of one stage, each with its own environment.

In ``__init__`` each worker writes ``$TEST_OUT_DIR/init-<worker_id>.json`` with the worker_id it
already sees there, its ``TEST_GPU`` variable and its pid. ``forward`` answers the same.
"""

import json
import os

from behaviour import act, write_atomic

from mosec import Server, Worker


class EnvWorker(Worker):
    """Reports its identity and its environment."""

    def __init__(self):
        super().__init__()
        self.seen = {
            "worker_id": self.worker_id,
            "gpu": os.environ.get("TEST_GPU"),
            "pid": os.getpid(),
            "stage": self.stage,
            "max_batch_size": self.max_batch_size,
        }
        path = os.path.join(os.environ["TEST_OUT_DIR"], f"init-{self.worker_id}.json")
        write_atomic(path, json.dumps(self.seen))

    def forward(self, data):
        act(data)
        return self.seen


if __name__ == "__main__":
    server = Server()
    server.append_worker(EnvWorker, num=2, env=[{"TEST_GPU": "0"}, {"TEST_GPU": "1"}])
    server.run()
