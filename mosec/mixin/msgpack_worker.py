"""msgpack for the request, the response and the data between stages."""

from __future__ import annotations

from typing import Any

import msgpack

from mosec.errors import DecodingError, EncodingError


class MsgpackMixin:
    """Use msgpack instead of JSON and pickle.

    Put it before :class:`mosec.Worker` in the bases::

        class Inference(MsgpackMixin, Worker): ...
    """

    resp_mime_type = "application/msgpack"
    req_mime_type = "application/msgpack"

    def serialize(self, data: Any) -> bytes:
        """Encode one result as a msgpack response body.

        Raises:
            EncodingError: when msgpack cannot encode the result (500).
        """
        try:
            return msgpack.packb(data)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as err:
            raise EncodingError(err) from err

    def deserialize(self, data: bytes) -> Any:
        """Decode one msgpack request body (an empty body is ``{}``, as with JSON).

        Raises:
            DecodingError: when the body is not valid msgpack (400).
        """
        if not data:
            return {}
        try:
            return msgpack.unpackb(data)
        except (ValueError, msgpack.UnpackException, msgpack.ExtraData) as err:
            raise DecodingError(err) from err

    def serialize_ipc(self, data: Any) -> bytes:
        """Encode this stage's output for the next stage."""
        return msgpack.packb(data)  # type: ignore[no-any-return]

    def deserialize_ipc(self, data: bytes) -> Any:
        """Decode the previous stage's output."""
        return msgpack.unpackb(data)
