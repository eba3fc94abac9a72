"""Upstream-style slow start: a model that takes a while to load, and an example that fails.

``Load`` spends ``SLOW_START_S`` seconds (default 1.5) in ``__init__``, as a model load does; a
client polling the port must not get an answer before it is done. ``Picky``'s ``example`` is of
the wrong type: its warm-up raises, which is logged, and the server serves anyway. Runs unchanged
on mosec 0.9.8 and on this package.
"""

import os
import time

from mosec import Server, Worker


class Load(Worker):
    """Loads slowly, then echoes."""

    def __init__(self):
        super().__init__()
        time.sleep(float(os.environ.get("SLOW_START_S", "1.5")))

    def forward(self, data: dict) -> dict:
        return data


class Picky(Worker):
    """Wants a dict; its warm-up example is a list."""

    example = [1, 2, 3]

    def forward(self, data: dict) -> dict:
        return {**data, "picky": True}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Load)
    server.append_worker(Picky)
    server.run()
