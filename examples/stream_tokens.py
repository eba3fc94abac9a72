"""Token-by-token text streaming with server-sent events, batched across clients.

Run the server::

    python examples/stream_tokens.py --port 8000

and ask for a stream from another shell (``-N`` shows the events as they come)::

    curl -N -X POST http://127.0.0.1:8000/inference -d '{"prompt": "tell me a story"}'

Each generated token arrives as one ``data:`` event; the stream ends when generation ends. The
stage batches up to 4 clients: one generation step makes the next token of every request in the
batch, and ``send_stream_event(token, index)`` sends each to its own client. Close curl (Ctrl-C)
mid-stream and the server stops generating for that client; when every client of the batch has
gone, ``forward`` is stopped.
"""

import time

from mosec import Server, SSEWorker, get_logger

logger = get_logger("stream_tokens")

#: The "model": it answers every prompt with the same story, a word at a time.
STORY = "once upon a time a tiny server streamed its story one token at a time to everyone"


class Generate(SSEWorker):
    """Generates the tokens of every request of the batch in lock step."""

    example = {"prompt": "warm up", "max_tokens": 2}

    def forward(self, data: list) -> list:
        answers = [self.tokens(item) for item in data]
        logger.info("generating for a batch of %d", len(data))
        for step in range(max(len(tokens) for tokens in answers)):
            time.sleep(0.02)  # one decoding step of the stand-in model
            for index, tokens in enumerate(answers):
                if step < len(tokens):
                    self.send_stream_event(tokens[step], index=index)
        return [{"tokens": len(tokens)} for tokens in answers]

    @staticmethod
    def tokens(item: dict) -> list:
        words = STORY.split()
        return words[: int(item.get("max_tokens", len(words)))]


if __name__ == "__main__":
    server = Server()
    server.append_worker(Generate, max_batch_size=4, max_wait_time=20)
    server.run()
