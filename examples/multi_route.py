"""Two routes sharing one batched stage.

Run the server::

    python examples/multi_route.py --port 8000

then call either route::

    curl -X POST http://127.0.0.1:8000/inference -d '{"text": "Hello World"}'
    # {"embedding": [...]}
    curl -X POST http://127.0.0.1:8000/v1/inference -d '{"text": "Hello World"}'
    # {"model": "toy-embed", "version": 1, "dimensions": 4, "embedding": [...]}

Both routes run the same ``Embed`` stage: one pool of processes whose batches mix requests of
both routes. ``Embed`` is the last stage of ``/inference`` (its output is the response) and the
middle stage of ``/v1/inference`` (its output goes on to ``Envelope``); the server decides that
per request.
"""

from mosec import Runtime, Server, Worker, get_logger

logger = get_logger("multi_route")
DIMENSIONS = 4


class Normalize(Worker):
    """``/v1/inference``'s first stage: lower-cases the text."""

    def forward(self, data: dict) -> str:
        return str(data["text"]).lower()


class Tokenize(Worker):
    """``/inference``'s first stage: the raw text."""

    def forward(self, data: dict) -> str:
        return str(data["text"])


class Embed(Worker):
    """The shared stage: a toy embedding, a batch at a time."""

    def forward(self, data: list) -> list:
        logger.info("embedding a batch of %d", len(data))
        return [{"embedding": self.embed(text)} for text in data]

    @staticmethod
    def embed(text: str) -> list:
        vector = [0.0] * DIMENSIONS
        for position, char in enumerate(text):
            vector[position % DIMENSIONS] += ord(char) / 1000
        return vector


class Envelope(Worker):
    """``/v1/inference``'s last stage: wraps the embedding with metadata."""

    def forward(self, data: dict) -> dict:
        return {"model": "toy-embed", "version": 1, "dimensions": DIMENSIONS, **data}


if __name__ == "__main__":
    server = Server()
    embed = Runtime(Embed, max_batch_size=8, max_wait_time=10)
    server.register_runtime(
        {
            "/v1/inference": [Runtime(Normalize), embed, Runtime(Envelope)],
            "/inference": [Runtime(Tokenize), embed],
        }
    )
    server.run()
