"""A one-stage server whose worker acts on each request (see behaviour.py).

Routes:

- ``/inference``: forward's own timeout is the server's ``--timeout``;
- ``/fwd-timeout``: forward's own timeout is 1 second, shorter than the ``--timeout`` the tests use;
- ``/slow``: forward's own timeout is 60 seconds, so only the engine's ``--timeout`` applies.
"""

from behaviour import act

from mosec import Server, Worker


class Behave(Worker):
    """Acts on each request."""

    def forward(self, data):
        return act(data)


class ShortTimeout(Behave):
    """The same, on the route with a 1 second forward timeout."""


class LongTimeout(Behave):
    """The same, on the route where only the engine's timeout applies."""


if __name__ == "__main__":
    server = Server()
    server.append_worker(Behave)
    server.append_worker(ShortTimeout, timeout=1, route="/fwd-timeout")
    server.append_worker(LongTimeout, timeout=60, route="/slow")
    server.run()
