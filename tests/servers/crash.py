"""A server whose only worker cannot stay up: the server must give up with a non-zero exit.

By default the worker fails in ``__init__``. With ``--after-connect`` (the script's own flag) it
starts fine, connects, and then dies a moment later, every time: a crash loop.
"""

import os
import sys
import threading

from mosec import Server, Worker


class Broken(Worker):
    """Cannot start."""

    def __init__(self):
        super().__init__()
        raise RuntimeError("this model cannot be loaded")

    def forward(self, data):
        return data


class Flaky(Worker):
    """Starts, then dies shortly after it has connected."""

    def __init__(self):
        super().__init__()
        threading.Timer(0.3, os._exit, args=(3,)).start()

    def forward(self, data):
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Flaky if "--after-connect" in sys.argv else Broken)
    server.run()
