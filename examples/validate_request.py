"""Request validation: a request that decodes but makes no sense is answered 422.

Run the server::

    python examples/validate_request.py --port 8000

A good request::

    curl -X POST http://127.0.0.1:8000/inference -d '{"text": "hi", "repeat": 3}'
    # 200 {"text": "hi hi hi"}

A bad one::

    curl -X POST http://127.0.0.1:8000/inference -d '{"text": "hi", "repeat": 0}'
    # 422 request validation error: repeat must be an integer from 1 to 10, got 0

Malformed JSON is a 400 (``DecodingError``) before validation runs.
"""

from dataclasses import dataclass

from mosec import Server, ValidationError, Worker


@dataclass
class Request:
    """What the service accepts."""

    text: str
    repeat: int = 1


def validate(data: object) -> Request:
    """Check a decoded request; raise ValidationError naming the first problem."""
    if not isinstance(data, dict):
        raise ValidationError("the request must be a JSON object")
    unknown = set(data) - {"text", "repeat"}
    if unknown:
        raise ValidationError(f"unknown fields: {sorted(unknown)}")
    text, repeat = data.get("text"), data.get("repeat", 1)
    if not isinstance(text, str) or not text:
        raise ValidationError("text must be a non-empty string")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 10:
        raise ValidationError(f"repeat must be an integer from 1 to 10, got {repeat!r}")
    return Request(text, repeat)


class Repeat(Worker):
    """Validates in ``deserialize``, so ``forward`` only sees good requests."""

    def deserialize(self, data: bytes) -> Request:
        return validate(super().deserialize(data))

    def forward(self, data: Request) -> dict:
        return {"text": " ".join([data.text] * data.repeat)}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Repeat)
    server.run()
