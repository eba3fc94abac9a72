"""numbin for numpy arrays between stages: a small header and the raw array bytes."""

from __future__ import annotations

from typing import Any

from mosec.errors import DecodingError, EncodingError


class NumBinIPCMixin:
    """Pass numpy arrays between stages without pickle.

    Each item a stage hands to the next must be a numpy array (anything else is mosec's 500
    ``encoding error``). Put the mixin before :class:`mosec.Worker` in the bases::

        class Embed(NumBinIPCMixin, Worker): ...
    """

    def serialize_ipc(self, data: Any) -> bytes:
        """Encode a numpy array for the next stage.

        Raises:
            EncodingError: when ``data`` is not an array numbin encodes.
        """
        import numbin  # here, as in mosec: numbin is needed only by the stages using it

        try:
            return numbin.dumps(data)  # type: ignore[no-any-return]
        except Exception as err:
            raise EncodingError(err) from err

    def deserialize_ipc(self, data: bytes) -> Any:
        """Decode the previous stage's numpy array.

        Raises:
            DecodingError: when the bytes are not numbin's.
        """
        import numbin

        try:
            return numbin.loads(data)
        except Exception as err:
            raise DecodingError(err) from err
