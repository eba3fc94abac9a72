"""msgpack for the request and the response body, as mosec's ``MsgpackMixin``.

Between stages the data stays pickle (the worker's default), so a stage may hand on anything
pickle carries (tuples, sets, objects) whatever msgpack could encode.
"""

from __future__ import annotations

from typing import Any

from mosec import log
from mosec.errors import DecodingError, EncodingError

logger = log.get_logger("mixin")


class MsgpackMixin:
    """Use msgpack instead of JSON for the request and the response.

    As in mosec, arrays arrive in ``forward`` as tuples (``use_list=False``), and a body that
    does not decode, or a result that does not encode, gets mosec's ``decoding error`` /
    ``encoding error`` body (the reason goes to the log). Put it before :class:`mosec.Worker`
    in the bases::

        class Inference(MsgpackMixin, Worker): ...
    """

    resp_mime_type = "application/msgpack"
    req_mime_type = "application/msgpack"

    def serialize(self, data: Any) -> bytes:
        """Encode one result as a msgpack response body.

        Raises:
            EncodingError: when msgpack cannot encode the result (500).
        """
        import msgpack  # here, as in mosec: msgpack is needed only by the stages using it

        try:
            return msgpack.packb(data)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as err:
            logger.debug("the result cannot be encoded as msgpack: %s", err)
            raise EncodingError from err

    def deserialize(self, data: bytes) -> Any:
        """Decode one msgpack request body (an empty body is ``{}``, as with JSON).

        Raises:
            DecodingError: when the body is not valid msgpack (400).
        """
        import msgpack

        if not data:
            return {}
        try:
            return msgpack.unpackb(data, use_list=False)
        except (ValueError, msgpack.UnpackException, msgpack.ExtraData) as err:
            logger.debug("the request body is not msgpack: %s", err)
            raise DecodingError from err
