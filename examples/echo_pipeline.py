"""A 3-stage echo pipeline with dynamic batching in the middle stage.

Run the server::

    python examples/echo_pipeline.py --port 8000

and send a request from another shell::

    curl -X POST http://127.0.0.1:8000/inference -d '{"text": "hello"}'

The answer shows the path the request took: ``{"text": "hello", "steps": [...], "batch": n}``,
where ``n`` is the size of the batch the middle stage saw. Stop the server with Ctrl-C.
"""

from mosec import Server, Worker, get_logger

logger = get_logger("echo_pipeline")


class Preprocess(Worker):
    """Stage 1: one request at a time; starts the list of steps."""

    def forward(self, data: dict) -> dict:
        data["steps"] = [f"preprocess {self.worker_id}"]
        return data


class Inference(Worker):
    """Stage 2: a batch of up to 8 requests at once, as a model on a GPU would take them."""

    def forward(self, data: list) -> list:
        logger.debug("batch of %d", len(data))
        for item in data:
            item["steps"].append(f"inference {self.worker_id}")
            item["batch"] = len(data)
        return data


class Postprocess(Worker):
    """Stage 3: one request at a time; finishes the answer."""

    def forward(self, data: dict) -> dict:
        data["steps"].append(f"postprocess {self.worker_id}")
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Preprocess, num=2)
    server.append_worker(Inference, max_batch_size=8, max_wait_time=10)
    server.append_worker(Postprocess, num=2)
    server.run()
