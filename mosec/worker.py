"""The base class users subclass to run their model code.

A :class:`Worker` turns one request into one answer in ``forward``. The server runs ``num``
processes of each worker class; each process builds one instance. Around ``forward``:

- ``deserialize`` decodes the HTTP body, one item at a time, on the first stage of a route;
- ``serialize`` encodes the HTTP response body, one item at a time, on the last stage;
- ``serialize_ipc``/``deserialize_ipc`` carry data between stages (pickle by default).

With ``max_batch_size > 1`` the engine batches requests and ``forward`` gets a list and must
return a list of the same length.
"""

from __future__ import annotations

import abc
import json
import pickle
from collections.abc import Sequence
from typing import Any

from mosec import _engine, log
from mosec.errors import DecodingError, EncodingError, MemberError
from mosec.stream import EventSink

logger = log.get_logger("worker")


class Worker(abc.ABC):
    """One stage of a pipeline. Subclass it and implement :meth:`forward`.

    Attributes:
        example: one ``forward`` input used to warm up before the worker takes requests; on a
            batching stage it is a batch (a list), exactly what ``forward`` receives.
        multi_examples: several ``forward`` inputs to warm up with, each passed as it is;
            when both are set, ``multi_examples`` wins (see :mod:`mosec.stage_worker`).
        resp_mime_type: the content type of the response when this worker is the last stage.
        req_mime_type: the content type ``deserialize`` reads when this worker is the first
            stage; the OpenAPI document shows it (the server does not check requests' types).
    """

    example: Any = None
    multi_examples: Sequence[Any] | None = []
    resp_mime_type: str = "application/json"
    req_mime_type: str = "application/json"

    # Set on the class by the worker process before it builds the instance, so that the
    # user's ``__init__`` can already read them (to pick a GPU by worker_id, say), and on the
    # instance after it (see mosec.stage_worker.build).
    _worker_id: int = 0
    _stage: str = ""
    _max_batch_size: int = 1

    @property
    def worker_id(self) -> int:
        """This process's number within its stage, from 1 to ``num``."""
        return self._worker_id

    @worker_id.setter
    def worker_id(self, worker_id: Any) -> None:
        self._worker_id = worker_id

    @property
    def stage(self) -> str:
        """The name of this worker's stage, ``<WorkerClass>_<n>`` (see :class:`mosec.Runtime`)."""
        return self._stage

    @stage.setter
    def stage(self, stage: str) -> None:
        self._stage = stage

    @property
    def max_batch_size(self) -> int:
        """The largest batch ``forward`` receives; 1 means no batching."""
        return self._max_batch_size

    @max_batch_size.setter
    def max_batch_size(self, max_batch_size: int) -> None:
        self._max_batch_size = max_batch_size

    def serialize_ipc(self, data: Any) -> bytes:
        """Encode this stage's output for the next stage (pickle).

        Args:
            data: one item of ``forward``'s output.
        """
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)

    def deserialize_ipc(self, data: bytes) -> Any:
        """Decode the previous stage's output (pickle).

        Args:
            data: the bytes the previous stage's ``serialize_ipc`` returned.
        """
        return pickle.loads(data)

    def serialize(self, data: Any) -> bytes:
        """Encode one result as the HTTP response body (JSON indented by 2, as mosec's).

        The bytes are exactly ``json.dumps(data, indent=2).encode()``: the extension writes them
        for plain values (dicts with str keys, lists, tuples, str, int, float, bool, None), as
        ``json`` would but without its pure-Python indenting encoder; anything else goes to
        ``json`` itself.

        Raises:
            EncodingError: when ``json`` cannot encode the result (500; the body is mosec's
                ``encoding error: encoding error``, the reason goes to the log).
        """
        try:
            encoded = _engine.dumps_indent2(data)  # may raise too: an int too long for str()
            if encoded is not None:
                return encoded
            return json.dumps(data, indent=2).encode()
        # Any exception, as mosec: a circular value's ValueError, a deep one's RecursionError.
        except Exception as err:
            logger.debug("the result cannot be encoded as JSON: %s", err)
            raise EncodingError from err

    def deserialize(self, data: bytes) -> Any:
        """Decode one HTTP request body (JSON; an empty body is ``{}``, as in mosec).

        Over HTTP an empty body never gets here: the engine answers it ``no data provided``.

        Raises:
            DecodingError: when the body is not valid JSON (400; the body is mosec's
                ``decoding error: decoding error``, the reason goes to the log).
        """
        if not data:
            return {}
        try:
            return json.loads(data)
        # Any exception, as mosec: bad JSON or UTF-8, and a too deeply nested RecursionError.
        except Exception as err:
            logger.debug("the request body is not JSON: %s", err)
            raise DecodingError from err

    def _mosec_member_error(self, status: int, body: bytes) -> Any:
        """What a failed ensemble member's slot holds (``fail_fast=False``): a ``MemberError``.

        Args:
            status: the member's error status.
            body: its error body.
        """
        return MemberError(status, body.decode("utf-8", errors="replace"))

    def _mosec_join(self, slots: list[Any]) -> Any:
        """The input ``forward`` gets after an ensemble: the members' outputs, in order.

        Args:
            slots: each member's decoded output, or its error (see ``_mosec_member_error``).
        """
        return slots

    @abc.abstractmethod
    def forward(self, data: Any) -> Any:
        """Run the model.

        Args:
            data: one decoded item, or a list of them when ``max_batch_size > 1``.

        Returns:
            The result, or a list of results of the same length when batching.

        Raises:
            ClientError: 400 for this request (or the whole batch).
            ValidationError: 422.
            ServerError: 500; any other exception is a 500 too.
        """


class SSEWorker(Worker):
    """A worker that streams server-sent events to its clients while ``forward`` runs.

    A route whose last stage is an ``SSEWorker`` answers ``text/event-stream``: each
    :meth:`send_stream_event` call becomes one ``data:`` event for its request, and the stream ends
    when ``forward`` returns (its return value is not sent). An error raised before the first
    event is a plain error response; after it, the client gets ``event: error`` with the status
    and message as JSON data. Example::

        class Generate(SSEWorker):
            def forward(self, data):
                for token in model.generate(data["prompt"]):
                    self.send_stream_event(token)
                return data

    With ``max_batch_size > 1``, ``index`` names the request inside the batch.
    """

    #: As in mosec; the route's responses are ``text/event-stream`` whatever this says.
    resp_mime_type = "text/event-stream"

    # Where events go: the worker loop puts a channel here for each forward call; until then
    # (warm-up) a sink counts them, so the same forward code runs with no client.
    _events: EventSink = EventSink()

    def send_stream_event(self, text: str, index: int = 0) -> None:
        """Send one server-sent event to the client of the ``index``-th request of the batch.

        When clients disconnect (or their requests time out) the work for them stops:

        - an event for a request whose client is gone is dropped silently;
        - when the clients of *every* request of the current ``forward`` call are gone, this
          method raises :class:`mosec.errors.StreamCancelled`. It derives from
          ``BaseException``, so ``except Exception`` does not catch it; use ``finally`` to clean
          up, and let it propagate.

        The stage's ``timeout`` is an idle timeout for a streaming ``forward``: each event sent
        restarts it.

        Args:
            text: the event's data (a str, sent as UTF-8; bytes are sent as they are).
            index: the position of the request in ``forward``'s input (0 when not batching).

        Raises:
            StreamCancelled: every request of this ``forward`` call is abandoned.
            IndexError: ``index`` names no request of the batch.
            TypeError: ``text`` is neither str nor bytes.
        """
        self._events.send(text, index)
