"""Upstream-style error bodies: each request asks ``forward`` for one kind of failure.

``{"raise": "client"}`` raises ``ClientError()`` with no message, ``"server"`` a ``ServerError``
whose message has a newline, ``"unencodable"`` returns a set (the JSON ``serialize`` fails); a body
that is not JSON fails in ``deserialize``. Anything else is echoed. Runs unchanged on mosec 0.9.8
and on this package.
"""

from mosec import ClientError, Server, ServerError, Worker


class Fail(Worker):
    """Fails as asked."""

    def forward(self, data: dict):
        kind = data.get("raise")
        if kind == "client":
            raise ClientError()
        if kind == "server":
            raise ServerError("first line\nsecond line")
        if kind == "unencodable":
            return {1, 2}
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Fail)
    server.run()
