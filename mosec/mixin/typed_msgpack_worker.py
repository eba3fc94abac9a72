"""msgpack requests decoded into, and checked against, the type ``forward`` is annotated with."""

from __future__ import annotations

from typing import Any

import msgspec

from mosec.errors import DecodingError, EncodingError, ValidationError
from mosec.signature import forward_types
from mosec.worker import Worker

_ENCODER = msgspec.msgpack.Encoder()


# One decoder per worker class and batching mode, built on the first request.
_DECODERS: dict[tuple[type, bool], msgspec.msgpack.Decoder[Any]] = {}


def _decoder(worker: type, batched: bool) -> msgspec.msgpack.Decoder[Any]:
    decoder = _DECODERS.get((worker, batched))
    if decoder is None:
        request, _ = forward_types(worker, batched)
        decoder = _DECODERS[(worker, batched)] = msgspec.msgpack.Decoder(request)
    return decoder


class TypedMsgPackMixin(Worker):
    """Decode each msgpack request into the type of ``forward``'s data parameter.

    The type is any type msgspec understands, usually a ``msgspec.Struct``. When the stage
    batches, annotate the parameter ``List[T]``: each request is decoded as a ``T``. A request
    that does not match is answered 422 with msgspec's message, which names the field (for
    example ``Expected `int`, got `str` - at `$.age```); one that is not msgpack at all is 400.
    Responses are msgpack too. Put the mixin before :class:`mosec.Worker` in the bases::

        class Request(msgspec.Struct):
            text: str
            repeat: int = 1

        class Echo(TypedMsgPackMixin, Worker):
            def forward(self, data: Request) -> str:
                return data.text * data.repeat

    The OpenAPI document of the server describes the request and response types. As in mosec,
    the mixin is a :class:`mosec.Worker` itself, so ``class Echo(TypedMsgPackMixin)`` works too.
    """

    resp_mime_type = "application/msgpack"
    req_mime_type = "application/msgpack"

    def deserialize(self, data: bytes) -> Any:
        """Decode and validate one msgpack request body.

        Raises:
            ValidationError: when the body does not match the annotated type (422).
            DecodingError: when the body is not valid msgpack (400).
        """
        batched = getattr(self, "max_batch_size", 1) > 1
        try:
            return _decoder(type(self), batched).decode(data)
        except msgspec.ValidationError as err:  # a subclass of DecodeError: checked first
            raise ValidationError(err) from err
        except msgspec.DecodeError as err:
            raise DecodingError(err) from err

    def serialize(self, data: Any) -> bytes:
        """Encode one result (a Struct, or anything msgspec can encode) as msgpack.

        Raises:
            EncodingError: when msgspec cannot encode the result (500).
        """
        try:
            return _ENCODER.encode(data)
        except (TypeError, ValueError, OverflowError) as err:
            raise EncodingError(err) from err
