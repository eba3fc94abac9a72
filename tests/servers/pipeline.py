"""A 3-stage pipeline with batching in the middle stage.

Each stage adds ``[name, stage, worker_id, batch size]`` to the item's ``trace``. The middle stage
answers 422 to an item with ``reject``; the last stage writes to the ``reject`` path if such an
item ever reaches it (it must not).
"""

from behaviour import write_atomic

from mosec import Runtime, Server, ValidationError, Worker


class Preprocess(Worker):
    """Starts the trace."""

    def forward(self, data):
        data.setdefault("trace", []).append(["pre", self.stage, self.worker_id, 1])
        return data


class Inference(Worker):
    """Batched; rejects items that ask for it."""

    def forward(self, data):
        for item in data:
            if item.get("reject"):
                raise ValidationError("rejected by the middle stage")
            item["trace"].append(["infer", self.stage, self.worker_id, len(data)])
        return data


class Postprocess(Worker):
    """Ends the trace."""

    def forward(self, data):
        if data.get("reject"):
            write_atomic(data["reject"], "reached the last stage")
        data["trace"].append(["post", self.stage, self.worker_id, 1])
        return data


if __name__ == "__main__":
    server = Server()
    pipeline = [
        Runtime(Preprocess, num=2),
        Runtime(Inference, max_batch_size=4, max_wait_time=20),
        Runtime(Postprocess, num=2),
    ]
    server.register_runtime({"/inference": pipeline})
    server.run()
