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
from typing import Any

from mosec.errors import DecodingError, EncodingError

#: ``stage`` of a worker on the first stage of a route.
STAGE_INGRESS = "ingress"
#: ``stage`` of a worker on the last stage of a route.
STAGE_EGRESS = "egress"


class Worker(abc.ABC):
    """One stage of a pipeline. Subclass it and implement :meth:`forward`.

    Attributes:
        example: one input used to warm ``forward`` up before the worker takes requests.
        multi_examples: several inputs used to warm up; see :mod:`mosec.coordinator` for how
            each is fed to ``forward``.
        resp_mime_type: the content type of the response when this worker is the last stage.
    """

    example: Any = None
    multi_examples: list[Any] | None = None
    resp_mime_type: str = "application/json"

    # Set on the class by the worker process before it builds the instance, so that the
    # user's ``__init__`` can already read them (to pick a GPU by worker_id, say).
    _worker_id: int = 0
    _stage: str = ""
    _max_batch_size: int = 1

    @property
    def worker_id(self) -> int:
        """This process's number within its stage, from 1 to ``num``."""
        return self._worker_id

    @property
    def stage(self) -> str:
        """Where this worker sits: ``"ingress"``, ``"egress"``, both joined by ``/``, or ``""``."""
        return self._stage

    @property
    def max_batch_size(self) -> int:
        """The largest batch ``forward`` receives; 1 means no batching."""
        return self._max_batch_size

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
        """Encode one result as the HTTP response body (JSON).

        Raises:
            EncodingError: when the result is not JSON serializable (500).
        """
        try:
            return json.dumps(data).encode()
        except (TypeError, ValueError) as err:
            raise EncodingError(err) from err

    def deserialize(self, data: bytes) -> Any:
        """Decode one HTTP request body (JSON; an empty body is ``{}``).

        Raises:
            DecodingError: when the body is not valid JSON (400).
        """
        if not data:
            return {}
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DecodingError(err) from err

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
    """A worker that streams server-sent events to the client while ``forward`` runs.

    The class exists so that mosec scripts import unchanged; the streaming itself arrives with
    the streaming issue, and until then :meth:`send_stream_event` raises.
    """

    def send_stream_event(self, text: str, index: int = 0) -> None:
        """Send one server-sent event to the client of the ``index``-th item of the batch.

        Args:
            text: the event's data.
            index: the item in the current batch whose client receives the event.

        Raises:
            NotImplementedError: always, until the streaming issue lands.
        """
        raise NotImplementedError("SSE streaming arrives with the streaming issue")
