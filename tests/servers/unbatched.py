"""An unbatched stage (``max_batch_size`` 1) behind a batching one, so that it gets bursts.

``Gather`` waits for ``BURST`` requests (up to 10 s) and passes them on at once: they reach
``Solo``'s queue together, and the engine hands ``Solo``'s worker what is queued in one hop.
``Solo.forward`` answers each request with its ``n``, the type of what it was given (one item,
never a list) and its pid, and logs ``item <n>``. A request with ``"exit": true`` kills ``Solo``'s
worker process inside ``forward``, like a crash in native code.
"""

import os

from mosec import Server, Worker, get_logger

logger = get_logger("unbatched")

#: Requests per burst: the tests send exactly this many at once.
BURST = 40


class Gather(Worker):
    """Passes a full batch on."""

    def forward(self, data: list) -> list:
        return data


class Solo(Worker):
    """One request per ``forward`` call."""

    def forward(self, data):
        if data.get("exit"):
            os._exit(3)
        logger.info("item %s", data["n"])
        return {"n": data["n"], "given": type(data).__name__, "pid": os.getpid()}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Gather, max_batch_size=BURST, max_wait_time=10_000)
    server.append_worker(Solo)
    server.run()
