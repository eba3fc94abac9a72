"""Encoding stage outputs as store references, shared by the store-backed IPC mixins.

A stage output either travels inline or by reference:

- small outputs (every buffer under :data:`INLINE_BELOW` bytes) travel inline as a pickle
  (protocol 5): the payload starts with pickle's ``0x80`` byte;
- larger ones go into a store, and the payload is a reference (:func:`is_reference` says which
  a payload is, and the worker loop flags references REFERENCE for the engine)::

      reference := store:u8 | count:u16 | object id * count | meta
      meta      := b"a" | dtype_len:u8 | dtype | ndim:u8 | shape:i64 * ndim    one numpy array
                 | b"v" | dtype_len:u8 | dtype | ndim:u8 | shape:i64 * ndim
                        | strides:i64 * ndim | first:i64       an array lent in place (below)
                 | b"r"                                                      one bytes object (raw)
                 | b"p" | pickle (protocol 5, large buffers out of band)      anything else

  The meta kinds ``t``, ``s`` and ``b`` belong to the Arrow codec (:mod:`mosec.store.arrow`).
  The engine reads the object ids (their layout depends on the store, see
  ``engine/src/refs.rs``) to release the objects when the task no longer needs them.

A plain numpy array is one object holding its bytes (in C order); anything else (dicts and lists
of arrays, framework tensors exposing the buffer protocol) is pickled with its large buffers out
of band, one object each. Readers get read-only, zero-copy arrays over the store's memory.

An array that already lies in a store object is *lent* instead of copied, when the store can
(:meth:`Store.lend`: the arena, for arrays NumPy made there and for inputs passed through): the
reference names the object the array lies in, and the ``v`` meta says where in it the first
element is and how the array steps through it (a slice or a transposed view travels as it is).
A lent buffer of a pickle must be the whole object.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from mosec.errors import StoreReferenceError

#: Buffers smaller than this travel inside the pickle; an output with none larger is inline.
INLINE_BELOW = 64 * 1024

#: The head of a reference: the store's kind byte and the number of object ids.
HEAD = struct.Struct("<BH")
_ARRAY = ord("a")
_VIEW = ord("v")
_BYTES = ord("r")
_PICKLE = ord("p")


class Store(Protocol):
    """What the codec needs from a store."""

    #: The store's kind byte in a reference (1 arena, 2 Redis).
    kind: int

    def put_many(self, buffers: Sequence[memoryview]) -> list[bytes]:
        """Store each buffer as a new object; returns their ids (all or none are stored)."""

    def new_array(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[bytes, np.ndarray]:
        """A fresh object viewed as a writable array, and its id (sealed by :meth:`seal`)."""

    def seal(self, object_id: bytes) -> None:
        """Make an object written through :meth:`new_array` readable."""

    def discard(self, object_ids: Sequence[bytes]) -> None:
        """Delete objects that will not be handed over (or give back a :meth:`lend`)."""

    def lend(self, array: np.ndarray) -> tuple[bytes, int] | None:
        """Hand over the object ``array`` already lies in, without a copy.

        Returns its id and the byte offset of the array's first element in it; None when it
        lies in none (then it is copied). What is lent is given back by :meth:`discard`.
        """

    def fetch(self, object_ids: Sequence[bytes]) -> list[memoryview]:
        """Read-only views (or copies, for remote stores) of the objects."""

    def pack_ids(self, object_ids: Sequence[bytes]) -> bytes:
        """The ids as written in a reference."""

    def unpack_ids(self, payload: memoryview, count: int) -> tuple[list[bytes], int]:
        """Read ``count`` ids at the start of ``payload``; returns them and the bytes used.

        Raises:
            StoreReferenceError: the ids are cut short.
        """


def _array_meta(array: np.ndarray) -> bytes:
    dtype = array.dtype.str.encode()
    shape = array.shape
    return (
        bytes([_ARRAY, len(dtype)])
        + dtype
        + bytes([len(shape)])
        + struct.pack(f"<{len(shape)}q", *shape)
    )


def _view_meta(array: np.ndarray, first: int) -> bytes:
    dtype = array.dtype.str.encode()
    ndim = array.ndim
    return (
        bytes([_VIEW, len(dtype)])
        + dtype
        + bytes([ndim])
        + struct.pack(f"<{2 * ndim + 1}q", *array.shape, *array.strides, first)
    )


def is_plain_array(data: Any) -> bool:
    """A numpy array whose bytes and dtype string say everything (no objects, no fields)."""
    return type(data) is np.ndarray and not data.dtype.hasobject and data.dtype.names is None


#: The first byte of an inline payload (pickle's protocol opcode); a reference starts with the
#: kind of its store (``mosec._engine.STORE_ARENA``, ``STORE_REDIS``) instead.
_PICKLE_START = 0x80


def is_reference(payload: bytes) -> bool:
    """Whether an encoded stage output names store objects rather than carrying its bytes.

    Anything this codec makes that is not an inline pickle is a reference, so a payload naming
    a store this server does not run is flagged too, for the engine to refuse.
    """
    return bool(payload) and payload[0] != _PICKLE_START


def reference(store: Store, ids: Sequence[bytes], meta: bytes) -> bytes:
    """The reference payload to objects ``ids`` of ``store``, followed by ``meta``."""
    return HEAD.pack(store.kind, len(ids)) + store.pack_ids(ids) + meta


def parse_reference(payload: bytes, store: Store) -> tuple[list[bytes], memoryview]:
    """Split a reference to objects of ``store`` into its object ids and its meta.

    Raises:
        StoreReferenceError: the reference names another store, or does not unpack.
    """
    if len(payload) < HEAD.size:
        raise StoreReferenceError(f"store reference cut short: {len(payload)} bytes")
    kind, count = HEAD.unpack_from(payload)
    if kind != store.kind:
        raise StoreReferenceError(
            f"reference to store {kind}, but this stage reads store {store.kind}"
        )
    view = memoryview(payload)[HEAD.size :]
    ids, used = store.unpack_ids(view, count)
    return ids, view[used:]


def encode(data: Any, store: Store, sealed_id: bytes | None = None) -> bytes:
    """Encode a stage output.

    Args:
        data: the output.
        store: where large buffers go.
        sealed_id: the id of an object ``data`` already lives in (an array the producer wrote
            in place), which is handed over without a copy.

    Returns:
        An inline pickle, or a reference (see :func:`is_reference`).
    """
    if sealed_id is not None:
        return reference(store, [sealed_id], _array_meta(data))
    if is_plain_array(data) and data.nbytes >= INLINE_BELOW:
        lent = store.lend(data)
        if lent is not None:
            return reference(store, [lent[0]], _view_meta(data, lent[1]))
        object_id, target = store.new_array(data.shape, data.dtype)
        try:
            np.copyto(target, data, casting="no")
            store.seal(object_id)
        except BaseException:
            store.discard([object_id])
            raise
        return reference(store, [object_id], _array_meta(data))
    if type(data) is bytes and len(data) >= INLINE_BELOW:
        # pickle keeps bytes in band; one raw object avoids carrying them through the engine.
        return reference(store, store.put_many([memoryview(data)]), bytes([_BYTES]))
    return _encode_pickle(data, store)


def _encode_pickle(data: Any, store: Store) -> bytes:
    """A pickle with its large buffers out of band.

    A buffer that is a whole store object (an array NumPy made in the arena) is lent; the
    others are copied into new objects.
    """
    slots: list[bytes | memoryview] = []  # per out-of-band buffer: a lent id, or one to copy
    lent: list[bytes] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        # True keeps the buffer inside the pickle; False sends it out of band.
        view = buffer.raw()
        if view.nbytes < INLINE_BELOW:
            return True
        owner = view.obj
        borrowed = None
        if type(owner) is np.ndarray and owner.base is None:  # the whole of its allocation
            borrowed = store.lend(owner)
        if borrowed is not None and borrowed[1] == 0:
            lent.append(borrowed[0])
            slots.append(borrowed[0])
        else:
            if borrowed is not None:
                store.discard([borrowed[0]])
            slots.append(view)
        return False

    try:
        pickled = pickle.dumps(data, protocol=5, buffer_callback=out_of_band)
        if not slots:
            return pickled
        copies = iter(store.put_many([slot for slot in slots if type(slot) is memoryview]))
        ids = [slot if type(slot) is bytes else next(copies) for slot in slots]
    except BaseException:
        store.discard(lent)
        raise
    return reference(store, ids, bytes([_PICKLE]) + pickled)


def decode(payload: bytes, store: Store, private: bool = False) -> Any:
    """Decode what :func:`encode` made (inline pickles need no store).

    Store objects are read in place (read-only views, valid while the reader's task holds
    them) unless ``private``: then the reader gets its own writable copy, valid for ever, as
    a plain pickle would have given it.

    Raises:
        StoreReferenceError: when a reference names another store, does not unpack, or its
            meta is malformed (a 500 that says so, rather than a bare internal error).
    """
    if not is_reference(payload):
        return pickle.loads(payload)
    ids, meta = parse_reference(payload, store)
    buffers = store.fetch(ids)  # first: a Redis consumer deletes what it was handed over
    if not meta:
        raise StoreReferenceError("store reference has no meta")
    if meta[0] == _ARRAY:
        dtype_len = meta[1]
        dtype = np.dtype(bytes(meta[2 : 2 + dtype_len]).decode())
        ndim = meta[2 + dtype_len]
        shape = struct.unpack_from(f"<{ndim}q", meta, 3 + dtype_len)
        array = np.ndarray(shape, dtype=dtype, buffer=buffers[0])
        return array.copy() if private else array
    if meta[0] == _VIEW:
        return _lent_array(meta, buffers[0], private)
    if meta[0] == _BYTES:
        return bytes(buffers[0])
    if meta[0] == _PICKLE:
        owned: Sequence[Any] = [bytearray(b) for b in buffers] if private else buffers
        return pickle.loads(meta[1:], buffers=owned)
    raise StoreReferenceError(f"unknown reference meta kind {meta[0]}")


def _lent_array(meta: memoryview, buffer: memoryview, private: bool) -> np.ndarray:
    """The array a ``v`` meta describes, over the object it was lent in."""
    dtype_len = meta[1]
    dtype = np.dtype(bytes(meta[2 : 2 + dtype_len]).decode())
    ndim = meta[2 + dtype_len]
    numbers = struct.unpack_from(f"<{2 * ndim + 1}q", meta, 3 + dtype_len)
    shape, strides, first = numbers[:ndim], numbers[ndim : 2 * ndim], numbers[-1]
    try:
        array = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=first, strides=strides)
    except (TypeError, ValueError) as err:  # steps outside the object: a damaged reference
        raise StoreReferenceError(f"lent array does not fit its object: {err}") from None
    return array.copy() if private else array
