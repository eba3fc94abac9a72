"""One process per GPU: each worker gets its own ``CUDA_VISIBLE_DEVICES``.

``env=[...]`` holds one dict per process; the variables are set before the worker's class is
built, so a framework imported by the worker sees only its own device. No GPU is needed to run
this example: the worker only reports what it sees.

Run the server::

    python examples/gpu_env.py --port 8000

and ask it which device answered::

    curl -X POST http://127.0.0.1:8000/inference -d '{}'

The answer is ``{"worker_id": 1, "device": "0"}`` (or worker 2 on device ``"1"``).
"""

import os

from mosec import Server, Worker, get_logger

logger = get_logger("gpu_env")
NUM_DEVICES = 2


class Inference(Worker):
    """Loads its "model" on the device its environment names."""

    def __init__(self):
        super().__init__()
        # worker_id (1..num) is already set here; so is this process's environment.
        self.device = os.environ["CUDA_VISIBLE_DEVICES"]
        logger.info("worker %d uses device %s", self.worker_id, self.device)

    def forward(self, data: dict) -> dict:
        return {"worker_id": self.worker_id, "device": self.device}


if __name__ == "__main__":
    server = Server()
    server.append_worker(
        Inference,
        num=NUM_DEVICES,
        env=[{"CUDA_VISIBLE_DEVICES": str(device)} for device in range(NUM_DEVICES)],
    )
    server.run()
