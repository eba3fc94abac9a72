"""Start-up benchmark, three stages: upstream's ``examples/echo.py`` shape, without its sleeps.

A preprocessing stage, a batching middle stage (``max_batch_size=32``) and a postprocessing stage,
each with a warm-up example the way mosec 0.9.8's examples have them, so the script runs unchanged
on ours and on upstream (``python -m benchmarks.startup`` runs it). Mosec's flags (``--address``,
``--port`` ...) come on the command line.
"""

from mosec import Server, Worker


class Preprocess(Worker):
    """Take the request's ``time`` (a number)."""

    example = {"time": 0}

    def forward(self, data):
        return float(data["time"])


class Inference(Worker):
    """The batching stage: gets a list of numbers and returns them unchanged."""

    # A batch already, as upstream's example writes it: forward(example) gets it as it is.
    example = [0, 1e-5, 2e-4]

    def forward(self, data):
        return list(data)


class Postprocess(Worker):
    """Answer ``{"time": ...}``."""

    example = 0.0

    def forward(self, data):
        return {"time": data}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Preprocess)
    server.append_worker(Inference, max_batch_size=32)
    server.append_worker(Postprocess)
    server.run()
