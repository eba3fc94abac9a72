"""Plain (JSON and msgpack) workers with annotations, for the OpenAPI contract test.

Plain workers are not validated by the server (only the typed mixin's are): their annotations
document what they expect, and these check it by hand, raising ValidationError (422), as a
plain worker that holds to its document does. An empty body is read as ``{}``, as in mosec.

- ``/echo``: a JSON object in, the same object out;
- ``/count``: a JSON object in, the number of its keys out, through a batching second stage;
- ``/packed``: msgpack in and out (``MsgpackMixin``), unannotated.
"""

from typing import Any, Dict, List

from mosec import Runtime, Server, ValidationError, Worker
from mosec.mixin import MsgpackMixin


def _an_object(data: Any) -> Dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}")
    return data


class Echo(Worker):
    """Echoes a JSON object."""

    def forward(self, data: Dict[str, Any]) -> Dict[str, Any]:
        return _an_object(data)


class Keys(Worker):
    """Checks the object and passes it on."""

    def forward(self, data: Dict[str, Any]) -> Any:
        return _an_object(data)


class Count(Worker):
    """Counts the keys of each object of a batch."""

    def forward(self, data: List[Dict[str, Any]]) -> List[int]:
        return [len(item) for item in data]


class Packed(MsgpackMixin, Worker):
    """Echoes msgpack."""

    def forward(self, data):
        return data


if __name__ == "__main__":
    server = Server()
    server.register_runtime(
        {
            "/echo": [Runtime(Echo)],
            "/count": [Runtime(Keys), Runtime(Count, max_batch_size=4, max_wait_time=5)],
            "/packed": [Runtime(Packed)],
        }
    )
    server.run()
