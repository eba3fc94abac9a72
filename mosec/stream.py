"""Where an :class:`~mosec.SSEWorker`'s events go while ``forward`` runs.

The worker loop gives the worker an :class:`EventChannel` for each ``forward`` call; the channel
knows the task id behind every position of ``forward``'s input and writes EVENT frames on the
worker link. Outside a served ``forward`` (warm-up, dry run) the worker holds a sink that only
counts the events, so the same ``forward`` code runs everywhere.

Cancellation rule: the engine sends a CANCEL frame when a task's client disconnects or the task
times out. Before each event the channel reads the cancels that have arrived (without blocking).
An event for a cancelled request is dropped; when every request of the ``forward`` call is
cancelled, sending raises :class:`~mosec.errors.StreamCancelled`, which stops ``forward``.

Timeout rule: a streaming ``forward`` may run for as long as it keeps sending, so its own timeout
(the stage's ``timeout``) is an idle timeout: each event sent re-arms it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from mosec import forward_timeout
from mosec.errors import StreamCancelled
from mosec.protocol import STATUS_OK, WorkerLink

#: What an event may carry: text (sent as UTF-8) or bytes that already are UTF-8.
EventData = Union[str, bytes]


def _encode(data: EventData) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a stream event must be str or bytes, got {type(data).__name__}")


class EventSink:
    """Accepts events without a client: counts them (warm-up and dry runs)."""

    def __init__(self) -> None:
        """Start with no event counted."""
        self.sent = 0

    def send(self, data: EventData, index: int) -> None:
        """Count one event after checking that it could be sent.

        Args:
            data: the event's text.
            index: the position of the request in ``forward``'s input.

        Raises:
            TypeError: when ``data`` is neither str nor bytes.
        """
        _encode(data)
        self.sent += 1


class EventChannel(EventSink):
    """Sends the events of one ``forward`` call to the engine."""

    def __init__(self, link: WorkerLink, task_ids: Sequence[int], timeout_s: float) -> None:
        """Bind the call's requests to the link.

        Args:
            link: the worker's link, with the batch in hand.
            task_ids: the task id of each position of ``forward``'s input.
            timeout_s: ``forward``'s idle timeout to re-arm after each event (0: none).
        """
        super().__init__()
        self._link = link
        self._task_ids = task_ids
        self._timeout_s = timeout_s

    def send(self, data: EventData, index: int) -> None:
        """Send one event to the client of the request at ``index`` (see the module's rules).

        Raises:
            IndexError: when ``index`` names no request of the call.
            TypeError: when ``data`` is neither str nor bytes.
            StreamCancelled: when every request of the call is cancelled.
        """
        if not 0 <= index < len(self._task_ids):
            raise IndexError(
                f"stream event index {index} is out of range for a batch of {len(self._task_ids)}"
            )
        payload = _encode(data)
        task_id = self._task_ids[index]
        cancelled = self._link.poll_cancelled()
        if cancelled and task_id in cancelled:
            if all(other in cancelled for other in self._task_ids):
                raise StreamCancelled("every client of this forward call is gone")
            return
        self._link.send_event([(task_id, STATUS_OK, payload, 0)])
        self.sent += 1
        if self._timeout_s > 0:
            forward_timeout.restart(self._timeout_s)
