"""The worker's end of the worker link: frames between the engine and one worker process.

The layout is defined once, in ``engine/src/protocol.rs`` (its module documentation); the kind,
flag, and store numbers are imported from there through ``mosec._engine``. In short: a worker
connects after its warm-up and sends HELLO; the engine sends one BATCH at a time and waits for
its RESULT (after any EVENT frames of a streaming worker); CANCEL frames name tasks whose clients
left. The socket reaching EOF means the engine is gone and the worker should exit.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

from mosec._engine import (
    FLAG_EGRESS,
    FLAG_INGRESS,
    FLAG_JOINED,
    FLAG_REFERENCE,
    FLAG_REQUEST_ID,
    KIND_BATCH,
    KIND_CANCEL,
    KIND_EVENT,
    KIND_HELLO,
    KIND_RESULT,
)

__all__ = [
    "FLAG_EGRESS",
    "FLAG_INGRESS",
    "FLAG_JOINED",
    "FLAG_REFERENCE",
    "FLAG_REQUEST_ID",
    "KIND_BATCH",
    "KIND_CANCEL",
    "KIND_EVENT",
    "KIND_HELLO",
    "KIND_RESULT",
    "STATUS_OK",
    "ProtocolError",
    "Received",
    "Reply",
    "WorkerLink",
]

STATUS_OK = 200

#: ``body_len:u32 | kind:u8 | reserved:u8 | count:u16``: a frame's fixed start.
FRAME_HEAD = struct.Struct("<IBBH")
#: ``task_id:u32 | flags:u16 | status:u16 | len:u32``: an item's fixed start.
ITEM_HEAD = struct.Struct("<IHHI")
HELLO_REST = struct.Struct("<III")

_BODY_HEAD_SIZE = FRAME_HEAD.size - 4
_MAX_COUNT = 0xFFFF

#: One item as the worker sees it: ``(task_id, flags, payload)``.
Received = tuple[int, int, bytes]
#: One item of a reply: ``(task_id, status, payload, flags)``; flags is FLAG_REFERENCE for a
#: payload naming store objects, 0 otherwise.
Reply = tuple[int, int, bytes, int]


class ProtocolError(Exception):
    """The peer sent a frame that does not follow the layout above."""


class WorkerLink:
    """The worker's end of the link: reads BATCH frames and writes HELLO and RESULT frames.

    Reads go into one reusable buffer with ``recv_into``; each outgoing frame leaves with a single
    ``sendall``. The link is not thread-safe; the worker loop is its only user.
    """

    def __init__(self, sock: socket.socket, buffer_size: int = 64 * 1024) -> None:
        """Wrap a connected Unix stream socket.

        Args:
            sock: the connected socket.
            buffer_size: the first size of the receive buffer; it grows for larger frames.
        """
        self._sock = sock
        self._buf = bytearray(buffer_size)
        self._view = memoryview(self._buf)
        self._start = 0  # first unread byte in _buf
        self._end = 0  # one past the last received byte
        #: Request ids of the last batch, by position (empty strings where the engine sent none).
        self.request_ids: list[str] = []
        #: Tasks the engine reported abandoned (client gone, timed out) and not yet consumed.
        self.cancelled: set[int] = set()

    @classmethod
    def connect(cls, path: str) -> WorkerLink:
        """Connect to the engine's worker socket.

        Raises:
            OSError: when the socket cannot be reached.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        """Close the socket."""
        self._view.release()
        self._sock.close()

    def send_hello(self, stage: int, worker_id: int, pid: int) -> None:
        """Introduce this worker: its stage index, its id within the stage and its pid."""
        body_len = _BODY_HEAD_SIZE + HELLO_REST.size
        self._sock.sendall(
            FRAME_HEAD.pack(body_len, KIND_HELLO, 0, 0) + HELLO_REST.pack(stage, worker_id, pid)
        )

    def send_result(self, items: Sequence[Reply]) -> None:
        """Send the RESULT of the current batch.

        Args:
            items: ``(task_id, status, payload, flags)`` per item, in the batch's order.
        """
        self._send(KIND_RESULT, items)

    def send_event(self, items: Sequence[Reply]) -> None:
        """Send stream events for items of the batch in hand."""
        self._send(KIND_EVENT, items)

    def _send(self, kind: int, items: Sequence[Reply]) -> None:
        if len(items) > _MAX_COUNT:
            raise ProtocolError(f"{len(items)} items do not fit in one frame")
        parts: list[bytes] = [b""]
        body_len = _BODY_HEAD_SIZE
        pack = ITEM_HEAD.pack
        for task_id, status, payload, flags in items:
            parts.append(pack(task_id, flags, status, len(payload)))
            parts.append(payload)
            body_len += ITEM_HEAD.size + len(payload)
        parts[0] = FRAME_HEAD.pack(body_len, kind, 0, len(items))
        # One write per frame: joining copies the payloads once, which is cheaper than a
        # system call per part for the small payloads this link carries inline.
        self._sock.sendall(b"".join(parts))

    def recv_batch(self) -> list[Received] | None:
        """Wait for the next BATCH, absorbing CANCEL frames that arrive before it.

        Returns:
            ``(task_id, flags, payload)`` per item, or None when the engine closed the link.
            The items' request ids are left in :attr:`request_ids`.

        Raises:
            ProtocolError: when the frame is not a well-formed BATCH or CANCEL.
        """
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            kind, count, start, end = frame
            if kind == KIND_CANCEL:
                self._read_cancel(count, start, end)
                continue
            if kind != KIND_BATCH:
                raise ProtocolError(f"expected a BATCH frame (kind 2), got kind {kind}")
            return self._read_batch(count, start, end)

    def poll_cancelled(self) -> set[int]:
        """Absorb any CANCEL frames already on the socket without blocking.

        Only valid while a batch is in hand (the engine sends nothing else then).

        Returns:
            Every task id reported abandoned so far (see :attr:`cancelled`).
        """
        try:
            self._sock.setblocking(False)
            while True:
                frame = self._next_frame()
                if frame is None:
                    break
                kind, count, start, end = frame
                if kind != KIND_CANCEL:
                    raise ProtocolError(f"expected a CANCEL frame (kind 5), got kind {kind}")
                self._read_cancel(count, start, end)
        except BlockingIOError:
            pass
        finally:
            self._sock.setblocking(True)
        return self.cancelled

    def _next_frame(self) -> tuple[int, int, int, int] | None:
        """Buffer the next whole frame; ``(kind, count, items_start, end)`` or None on EOF."""
        if not self._fill(4):
            return None
        (body_len,) = struct.unpack_from("<I", self._buf, self._start)
        if body_len < _BODY_HEAD_SIZE:
            raise ProtocolError(f"frame body of {body_len} bytes is too short")
        if not self._fill(4 + body_len):
            return None
        start = self._start
        end = start + 4 + body_len
        _, kind, _, count = FRAME_HEAD.unpack_from(self._buf, start)
        return kind, count, start + FRAME_HEAD.size, end

    def _consumed(self, end: int) -> None:
        # The engine sends one batch at a time, so the buffer is usually empty now: start over
        # at its front so the next frame never needs compacting.
        self._start = end
        if self._start == self._end:
            self._start = self._end = 0

    def _read_cancel(self, count: int, offset: int, end: int) -> None:
        for _ in range(count):
            if offset + ITEM_HEAD.size > end:
                raise ProtocolError("CANCEL frame ends inside an item header")
            task_id, _flags, _status, length = ITEM_HEAD.unpack_from(self._buf, offset)
            self.cancelled.add(task_id)
            offset += ITEM_HEAD.size + length
        self._consumed(end)

    def _read_batch(self, count: int, offset: int, end: int) -> list[Received]:
        items: list[Received] = []
        request_ids: list[str] = []
        unpack = ITEM_HEAD.unpack_from
        buf = self._buf
        view = self._view
        for _ in range(count):
            if offset + ITEM_HEAD.size > end:
                raise ProtocolError("BATCH frame ends inside an item header")
            task_id, flags, _status, length = unpack(buf, offset)
            offset += ITEM_HEAD.size
            request_id = ""
            if flags & FLAG_REQUEST_ID:
                rid_len = buf[offset]
                request_id = bytes(view[offset + 1 : offset + 1 + rid_len]).decode("ascii")
                offset += 1 + rid_len
            if offset + length > end:
                raise ProtocolError("BATCH frame ends inside an item payload")
            items.append((task_id, flags, bytes(view[offset : offset + length])))
            request_ids.append(request_id)
            offset += length
        if offset != end:
            raise ProtocolError(f"BATCH frame has {end - offset} bytes after its last item")
        self._consumed(end)
        self.request_ids = request_ids
        # Cancels of tasks from earlier batches mean nothing now.
        self.cancelled.clear()
        return items

    def _fill(self, size: int) -> bool:
        """Make sure ``size`` unread bytes are buffered; False on EOF."""
        if self._end - self._start >= size:
            return True
        if self._start + size > len(self._buf):
            self._make_room(size)
        while self._end - self._start < size:
            received = self._sock.recv_into(self._view[self._end :])
            if received == 0:
                return False
            self._end += received
        return True

    def _make_room(self, size: int) -> None:
        """Move the unread bytes to the front, growing the buffer when ``size`` needs it."""
        unread = self._end - self._start
        if size > len(self._buf):
            grown = bytearray(max(size, 2 * len(self._buf)))
            grown[:unread] = self._view[self._start : self._end]
            self._view.release()
            self._buf = grown
            self._view = memoryview(grown)
        else:
            # bytes(): source and target overlap inside the same buffer.
            self._buf[:unread] = bytes(self._view[self._start : self._end])
        self._start = 0
        self._end = unread
