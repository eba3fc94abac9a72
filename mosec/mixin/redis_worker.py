"""``RedisShmIPCMixin``: stage outputs through Redis, with mosec 0.9's ``set_redis_url``.

Large outputs go to Redis and only their keys cross the engine; small ones travel inline. The
encoding is :mod:`mosec.store.codec`'s; keys, round trips and expiry are described in
:mod:`mosec.store.redis`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mosec.store.codec import INLINE_BELOW, decode, encode, is_plain_array
from mosec.store.redis import DEFAULT_TTL_MS, RedisStore, connect
from mosec.store.settings import REDIS_URL_ENV, redis_url_of
from mosec.worker import Worker

__all__ = ["RedisShmIPCMixin"]

# This process's store, and the pid that made it (a forked child must not share the socket).
_store: RedisStore | None = None
_store_pid = 0


class RedisShmIPCMixin(Worker):
    """Pass stage outputs through Redis.

    Set the URL once in the server script, then put the mixin before :class:`mosec.Worker` in
    the bases of the stages that hand data on (and of those that receive it)::

        RedisShmIPCMixin.set_redis_url("redis://127.0.0.1:6379/0")

        class Preprocess(RedisShmIPCMixin, Worker): ...

    A server uses one Redis URL: stages set to different URLs stop the server at start. TCP
    (``redis://host:port/db``) and Unix-socket (``unix:///path/redis.sock?db=0``) URLs both
    work. Each worker process opens one connection on first use; hiredis parses replies when
    it is installed.

    Numpy arrays go as one key holding their bytes; other objects as a pickle with each large
    buffer under its own key. The next stage reads and deletes the keys in one round trip and
    gets read-only arrays over the bytes it received. Keys expire after ``_redis_ttl_ms``
    (10 minutes) should nobody delete them: raise it if a request may wait longer than that
    between two stages.
    """

    #: Tells the server that this worker uses Redis (the engine deletes keys of failed tasks).
    _mosec_store = "redis"
    #: Where Redis is; read by the server to give the engine the same URL.
    _redis_url: str | None = None
    #: Expiry of every key, in milliseconds (a backstop; see :mod:`mosec.store.redis`).
    _redis_ttl_ms: int = DEFAULT_TTL_MS

    @classmethod
    def set_redis_url(cls, url: str) -> None:
        """Set the Redis URL for this class and its subclasses, and for the worker processes.

        Args:
            url: ``redis://host:port/db`` or ``unix:///path/redis.sock?db=N``.
        """
        cls._redis_url = url
        os.environ[REDIS_URL_ENV] = url

    def _mosec_redis(self) -> RedisStore:
        """This process's store, connected on first use."""
        global _store, _store_pid
        if _store is None or _store_pid != os.getpid():
            url = redis_url_of(type(self))
            if not url:
                raise RuntimeError(
                    "RedisShmIPCMixin has no Redis URL: call RedisShmIPCMixin.set_redis_url(url) "
                    "in the server script before Server.run()"
                )
            _store = RedisStore(connect(url), type(self)._redis_ttl_ms)
            _store_pid = os.getpid()
        return _store

    def serialize_ipc(self, data: Any) -> bytes:
        """Put an output in Redis (or inline when small); returns the payload."""
        store = self._mosec_redis()
        if is_plain_array(data) and data.nbytes >= INLINE_BELOW:
            # Sent straight from the array (C order), not copied into a staging array first.
            (key,) = store.put_many([np.ascontiguousarray(data)])
            return encode(data, store, sealed_id=key)
        return encode(data, store)

    def deserialize_ipc(self, data: bytes) -> Any:
        """Read (and delete) the previous stage's output: read-only arrays."""
        return decode(data, self._mosec_redis())
