"""Upstream-style OpenAPI shapes: an untyped route and a typed msgspec route.

``/untyped`` is one plain ``Worker`` (no annotations); ``/typed`` decodes a msgspec ``Struct`` with
``TypedMsgPackMixin`` and returns ``bytes``. Runs unchanged on mosec 0.9.8 and on this package.
"""

from typing import Any

from msgspec import Struct

from mosec import Runtime, Server, Worker
from mosec.mixin import TypedMsgPackMixin


class Request(Struct):
    """What ``/typed`` expects."""

    name: str
    count: int = 1


class Plain(Worker):
    """Untyped echo."""

    def forward(self, data):
        return data


class Typed(TypedMsgPackMixin, Worker):
    """Typed input, bytes output."""

    def forward(self, data: Request) -> Any:
        return (data.name * data.count).encode()


if __name__ == "__main__":
    server = Server()
    server.register_runtime({"/untyped": [Runtime(Plain)], "/typed": [Runtime(Typed)]})
    server.run()
