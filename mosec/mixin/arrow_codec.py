"""Former home of the Arrow codec, kept so that older imports keep working (needs pyarrow).

Everything here lives in :mod:`mosec.store.arrow` now.
"""

from mosec.store.arrow import BATCH, NOT_ARROW, TABLE, TENSOR, decode, encode

__all__ = ["BATCH", "NOT_ARROW", "TABLE", "TENSOR", "decode", "encode"]
