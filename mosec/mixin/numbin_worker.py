"""numbin for numpy arrays between stages: a small header and the raw array bytes."""

from __future__ import annotations

from typing import Any

import numbin


class NumBinIPCMixin:
    """Pass numpy arrays between stages without pickle.

    Each item a stage hands to the next must be a numpy array. Put the mixin before
    :class:`mosec.Worker` in the bases::

        class Embed(NumBinIPCMixin, Worker): ...
    """

    def serialize_ipc(self, data: Any) -> bytes:
        """Encode a numpy array for the next stage."""
        return numbin.dumps(data)  # type: ignore[no-any-return]

    def deserialize_ipc(self, data: bytes) -> Any:
        """Decode the previous stage's numpy array."""
        return numbin.loads(data)
