"""Typed requests: msgpack bodies decoded into a ``msgspec.Struct`` and checked on the way in.

Run the server::

    python examples/typed_validation.py --port 8000

and call it from Python (the bodies are msgpack)::

    import httpx, msgpack
    url = "http://127.0.0.1:8000/inference"
    ok = httpx.post(url, content=msgpack.packb({"text": "hi", "repeat": 3}))
    msgpack.unpackb(ok.content)  # {'text': 'hi hi hi', 'length': 8}
    bad = httpx.post(url, content=msgpack.packb({"text": "hi", "repeat": "3"}))
    bad.status_code, bad.text
    # 422 request validation error: Expected `int`, got `str` - at `$.repeat`
    httpx.post(url, content=msgpack.packb({"text": "hi", "repeat": 0})).text
    # request validation error: Expected `int` >= 1 - at `$.repeat`

The types also describe the route in the OpenAPI document,
http://127.0.0.1:8000/openapi/metadata.json, which http://127.0.0.1:8000/openapi/swagger/ shows.
"""

from typing import Annotated, List

import msgspec

from mosec import Server, Worker
from mosec.mixin import TypedMsgPackMixin


class Request(msgspec.Struct):
    """What the service accepts: a text and how many times to repeat it (1 to 10)."""

    text: str
    repeat: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1


class Answer(msgspec.Struct):
    """What it answers."""

    text: str
    length: int


class Repeat(TypedMsgPackMixin, Worker):
    """Repeats the text; batching, so ``forward`` takes and returns lists."""

    example = Request(text="warm up")

    def forward(self, data: List[Request]) -> List[Answer]:
        answers = []
        for request in data:
            text = " ".join([request.text] * request.repeat)
            answers.append(Answer(text=text, length=len(text)))
        return answers


if __name__ == "__main__":
    server = Server()
    server.append_worker(Repeat, max_batch_size=8, max_wait_time=5)
    server.run()
