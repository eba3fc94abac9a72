"""Former home of the Redis store, kept so that older imports keep working.

Everything here lives in :mod:`mosec.store.redis` now.
"""

from mosec.store.redis import (
    BUFFER_CUTOFF,
    DEFAULT_TTL_MS,
    KEY_PREFIX,
    KIND,
    READ_SIZE,
    RedisStore,
    as_bytes,
    connect,
)

__all__ = [
    "BUFFER_CUTOFF",
    "DEFAULT_TTL_MS",
    "KEY_PREFIX",
    "KIND",
    "READ_SIZE",
    "RedisStore",
    "as_bytes",
    "connect",
]
