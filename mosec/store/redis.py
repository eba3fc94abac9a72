"""Redis as a :class:`~mosec.store.codec.Store`: the objects of one worker process.

Keys: ``mosec:<server pid>.<worker pid>.<random>:<counter>``. The middle part is made once per
process (the random part keeps two servers in different containers, where process ids repeat,
apart on a shared Redis); the counter is a local ``itertools.count``. So making an id costs no
round trip and no server-wide counter (no ``INCR`` on one hot key).

Round trips: :meth:`RedisStore.put_many` sends every ``SET`` of an output in one pipeline, and
:meth:`RedisStore.fetch` reads every key of an input with ``GETDEL`` in one pipeline, so the
consumer deletes what it read. Keys of tasks that end before their consumer runs (error,
timeout, client gone) are deleted by the engine (``engine/src/refs.rs``).

Expiry: every key is set with ``PX`` (:data:`DEFAULT_TTL_MS`, 10 minutes) as a backstop for the
cases nobody can delete it: the engine could not reach Redis when the task ended, or a consumer
died between reading the reference and the ``GETDEL``. It must outlast the longest a request may
wait between two stages (the server's ``--timeout``): raise it for servers with longer timeouts.

Copies: writing sends the producer's buffers to the socket as they are (see :func:`connect`).
Reading goes through the reply parser into one ``bytes`` object per key (hiredis buffers the
reply on the way), which the consumer's arrays then view, read-only, with no further copy.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mosec import _engine
from mosec.errors import StoreFullError, StoreReferenceError, StoreUnavailableError

if TYPE_CHECKING:
    import redis

#: Store kind byte of Redis in a reference, from its definition in the engine.
KIND = _engine.STORE_REDIS
#: Every key this server makes starts with this.
KEY_PREFIX = "mosec:"
#: The default expiry of a key, in milliseconds.
DEFAULT_TTL_MS = 10 * 60 * 1000

#: Bytes read from the socket at a time.
READ_SIZE = 1 << 20
#: Arguments at least this large are sent by themselves, not joined (redis-py's default).
BUFFER_CUTOFF = 6000

_KEY_LEN = struct.Struct("<H")


def connect(url: str) -> redis.Redis:
    """A client for ``url`` (``redis://host:port/db`` or ``unix:///path.sock?db=N``).

    Replies are parsed by hiredis when it is installed (redis-py picks it by itself), but
    commands are packed by redis-py's Python packer: hiredis's packer copies every argument
    into one new ``bytes`` (a full copy of each tensor, and slow for memoryviews: about 40 ms
    for 12 MiB, against 3 ms here), while the Python packer hands large arguments to the socket
    as they are. Replies are read in 1 MiB chunks, so a large value takes few system calls.

    Raises:
        ImportError: when redis-py is not installed, with the line that installs it.
    """
    try:
        import redis
    except ImportError as err:
        raise ImportError(
            "RedisShmIPCMixin needs redis-py: pip install 'redis[hiredis]>=5'"
        ) from err
    options: dict[str, Any] = {"socket_read_size": READ_SIZE}
    with contextlib.suppress(ImportError, TypeError):  # redis-py's internals, 5.0 and later
        from redis.connection import Encoder, PythonRespSerializer

        encode = Encoder("utf-8", "strict", False).encode
        options["command_packer"] = PythonRespSerializer(BUFFER_CUTOFF, encode)
    return redis.Redis.from_url(url, **options)


def as_bytes(buffer: Any) -> memoryview:
    """A flat byte view of a contiguous buffer (numpy arrays of any dtype included).

    redis-py sizes a ``memoryview`` argument with ``len()``, which counts bytes only for a flat
    byte view; numpy dtypes such as ``datetime64`` cannot be exported as a buffer at all, so
    arrays are viewed as ``uint8`` first.
    """
    if isinstance(buffer, np.ndarray):
        return buffer.reshape(-1).view(np.uint8).data
    view = memoryview(buffer)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class RedisStore:
    """One process's objects in Redis."""

    kind = KIND

    def __init__(self, client: redis.Redis, ttl_ms: int = DEFAULT_TTL_MS) -> None:
        """Use a connected client.

        Args:
            client: the redis-py client (its pool keeps one connection for this process).
            ttl_ms: the expiry of every key set here.
        """
        self.client = client
        self.ttl_ms = ttl_ms
        self._prefix = f"{KEY_PREFIX}{os.getppid()}.{os.getpid()}.{secrets.token_hex(4)}:"
        self._counter = itertools.count()
        # Arrays handed out by new_array, written to Redis when sealed.
        self._drafts: dict[bytes, np.ndarray] = {}

    def new_key(self) -> bytes:
        """A key no other process or earlier call made."""
        return f"{self._prefix}{next(self._counter)}".encode()

    def put_many(self, buffers: Sequence[Any]) -> list[bytes]:
        """Set each buffer under a new key, all in one pipelined round trip.

        Raises:
            StoreFullError: Redis refused a write for lack of memory (``maxmemory``).
            StoreUnavailableError: Redis cannot be reached.
        """
        keys = [self.new_key() for _ in buffers]
        pipe = self.client.pipeline(transaction=False)
        for key, buffer in zip(keys, buffers):
            pipe.set(key, as_bytes(buffer), px=self.ttl_ms)
        try:
            pipe.execute()
        except BaseException as err:
            # Some SETs may have landed before the failure: all or none.
            with contextlib.suppress(Exception):
                self.discard(keys)
            _raise_store_error(err)
            raise
        return keys

    def lend(self, array: np.ndarray) -> tuple[bytes, int] | None:
        """Nothing lives in Redis before it is put there: always a copy."""
        return None

    def new_array(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[bytes, np.ndarray]:
        """A local array to fill; :meth:`seal` sends it. Redis has no memory to write in place."""
        key = self.new_key()
        array = np.empty(shape, dtype=dtype)
        self._drafts[key] = array
        return key, array

    def seal(self, object_id: bytes) -> None:
        """Send an array made by :meth:`new_array` under its key."""
        array = self._drafts.pop(object_id)
        try:
            self.client.set(object_id, as_bytes(array), px=self.ttl_ms)
        except BaseException as err:
            _raise_store_error(err)
            raise

    def discard(self, object_ids: Sequence[bytes]) -> None:
        """Delete keys that will not be handed over (and forget unsent drafts)."""
        for object_id in object_ids:
            self._drafts.pop(object_id, None)
        if object_ids:
            self.client.delete(*object_ids)

    def fetch(self, object_ids: Sequence[bytes]) -> list[memoryview]:
        """Read and delete the keys (``GETDEL``), pipelined; returns read-only views.

        Raises:
            StoreReferenceError: a key is gone (expired, or its task ended and the engine
                deleted it).
        """
        pipe = self.client.pipeline(transaction=False)
        for object_id in object_ids:
            pipe.getdel(object_id)
        try:
            values = pipe.execute()
        except BaseException as err:
            _raise_store_error(err)
            raise
        missing = [key for key, value in zip(object_ids, values) if value is None]
        if missing:
            raise StoreReferenceError(
                f"redis key {missing[0].decode(errors='replace')} is gone (expired, or its task "
                "already ended)"
            )
        return [memoryview(value) for value in values]

    def pack_ids(self, object_ids: Sequence[bytes]) -> bytes:
        """``key_len:u16 | key`` per key."""
        return b"".join(_KEY_LEN.pack(len(key)) + key for key in object_ids)

    def unpack_ids(self, payload: memoryview, count: int) -> tuple[list[bytes], int]:
        """Read ``count`` length-prefixed keys.

        Raises:
            StoreReferenceError: a key or its length is cut short.
        """
        keys: list[bytes] = []
        used = 0
        for _ in range(count):
            if len(payload) < used + _KEY_LEN.size:
                raise StoreReferenceError("redis key length cut short")
            (length,) = _KEY_LEN.unpack_from(payload, used)
            used += _KEY_LEN.size
            if len(payload) < used + length:
                raise StoreReferenceError("redis key cut short")
            keys.append(bytes(payload[used : used + length]))
            used += length
        return keys, used


def _raise_store_error(err: BaseException) -> None:
    """Raise the store error a Redis failure means for the request, if it is one.

    Raises:
        StoreFullError: Redis refused a write because ``maxmemory`` is reached (503).
        StoreUnavailableError: Redis cannot be reached (503): its daemon is gone, say.
    """
    from redis.exceptions import ConnectionError, OutOfMemoryError, TimeoutError

    if isinstance(err, OutOfMemoryError):
        raise StoreFullError(f"redis: {err}") from None
    if isinstance(err, (ConnectionError, TimeoutError)):
        raise StoreUnavailableError(f"redis: {err}") from None
