"""Start-up benchmark, single stage: an upstream-style echo script.

``python -m benchmarks.startup`` runs it. Written the way mosec 0.9.8's examples are, so it runs
unchanged on ours and on upstream. Mosec's flags (``--address``, ``--port`` ...) come on the
command line.
"""

from mosec import Server, Worker


class Echo(Worker):
    """Return the request unchanged."""

    example = {"time": 0}

    def forward(self, data):
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Echo)
    server.run()
