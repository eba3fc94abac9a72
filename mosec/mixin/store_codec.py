"""Former home of the store codec, kept so that older imports keep working.

Everything here lives in :mod:`mosec.store.codec` now.
"""

from mosec.store.codec import (
    HEAD,
    INLINE_BELOW,
    Store,
    decode,
    encode,
    is_plain_array,
    reference,
)

__all__ = ["HEAD", "INLINE_BELOW", "Store", "decode", "encode", "is_plain_array", "reference"]
