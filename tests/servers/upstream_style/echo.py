"""Upstream-style three-stage echo: a batching middle stage whose ``example`` is a batch.

Written for this project in the shape of mosec's first example: ``Parse`` checks the request,
``Nap`` sleeps for the longest delay of its batch (its warm-up example is already a batch, as a
mosec user writes it for ``max_batch_size=8``), ``Reply`` words the answer. Runs unchanged on
mosec 0.9.8 and on this package.
"""

import time

from mosec import Server, ValidationError, Worker


class Parse(Worker):
    """Reads the delay in seconds."""

    example = {"delay": 0}

    def forward(self, data: dict) -> float:
        try:
            return float(data["delay"])
        except KeyError as err:
            raise ValidationError(f"missing key {err}") from err


class Nap(Worker):
    """Sleeps for the longest delay of the batch."""

    example = [0, 1e-5, 2e-4]

    def forward(self, data: list) -> list:
        time.sleep(max(data))
        return data


class Reply(Worker):
    """Words the answer."""

    def forward(self, data: float) -> dict:
        return {"slept": data}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Parse)
    server.append_worker(Nap, max_batch_size=8)
    server.append_worker(Reply)
    server.run()
