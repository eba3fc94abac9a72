"""The worker link: frames between the engine and one worker process over a Unix socket.

Every integer is little-endian. A worker connects after its warm-up and sends HELLO; then the engine
sends one BATCH at a time and waits for that batch's RESULT before it sends the next one.

::

    frame := body_len:u32 | body                      (body_len counts the body only)
    body  := kind:u8 | reserved:u8 (=0) | count:u16 | rest

    kind 1 HELLO   worker -> engine  count = 0, rest = stage:u32 | worker_id:u32 | pid:u32
    kind 2 BATCH   engine -> worker  count = n, rest = n items
    kind 3 RESULT  worker -> engine  count = n, rest = n items, same order and task ids as the BATCH
    kind 4 EVENT   worker -> engine  count = n stream events sent before the RESULT (SSE)
    kind 5 CANCEL  engine -> worker  count = n items with empty payloads: these tasks' clients
                                     are gone; may arrive while a batch is in hand or between
                                     batches

    item  := task_id:u32 | flags:u16 | status:u16 | len:u32 | [rid_len:u8 | rid] | payload[len]

    flags  0x0001 INGRESS    first stage of the task's route: the payload is the HTTP body
           0x0002 EGRESS     last stage of the task's route: the result is the HTTP body
           0x0004 REQUEST_ID the item carries its request id (rid_len, then that many ASCII
                             bytes) between its header and its payload; len counts the payload
                             only. The engine sets it on BATCH items.
           0x8000 REFERENCE  the payload is a store reference, not inline bytes (data-plane
                             issue; reserved, never set yet)
    status 0 in a BATCH. In a RESULT the HTTP status of the item: 200 means the payload is the
           output (the next stage's input or the response body); anything else is an error and
           the payload is the UTF-8 message sent to the client as text/plain.

A RESULT item carries flags 0 (only REFERENCE will mean something there). The socket reaching EOF
means the engine is gone and the worker should exit.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

KIND_HELLO = 1
KIND_BATCH = 2
KIND_RESULT = 3
KIND_EVENT = 4
KIND_CANCEL = 5

FLAG_INGRESS = 0x0001
FLAG_EGRESS = 0x0002
FLAG_REQUEST_ID = 0x0004
FLAG_REFERENCE = 0x8000

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
#: One item of a reply: ``(task_id, status, payload)``.
Reply = tuple[int, int, bytes]


class StoreReference(bytes):
    """A payload that names store objects instead of carrying the bytes (the REFERENCE flag).

    IPC mixins return it from ``serialize_ipc``; the link then flags the item so the engine can
    track and release the objects it names (layout in ``engine/src/refs.rs``).
    """

    __slots__ = ()


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
            items: ``(task_id, status, payload)`` per item, in the batch's order.
        """
        self._send(KIND_RESULT, items)

    def send_event(self, items: Sequence[Reply]) -> None:
        """Send stream events (used by the streaming issue)."""
        self._send(KIND_EVENT, items)

    def _send(self, kind: int, items: Sequence[Reply]) -> None:
        if len(items) > _MAX_COUNT:
            raise ProtocolError(f"{len(items)} items do not fit in one frame")
        parts: list[bytes] = [b""]
        body_len = _BODY_HEAD_SIZE
        pack = ITEM_HEAD.pack
        for task_id, status, payload in items:
            flags = FLAG_REFERENCE if type(payload) is StoreReference else 0
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
