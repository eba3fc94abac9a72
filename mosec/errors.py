"""Errors a worker raises to choose the HTTP status of a request.

Raise one of these from ``deserialize``, ``forward`` or ``serialize``. The client gets the class's
status code and a short text body ``"<msg>: <the exception's text>"``, as in mosec: newlines in the
text become ``" - "``, and an exception with no text repeats ``msg`` (``"bad request: bad
request"``). Any other exception becomes a 500 whose body is exactly ``"inference internal
error"``; its traceback goes to the log only.
"""

from __future__ import annotations


class MosecError(Exception):
    """Base class of the errors that map to an HTTP status.

    Attributes:
        code: the HTTP status code sent to the client.
        msg: the fixed prefix of the response body.
    """

    code: int = 500
    msg: str = "mosec error"


class ClientError(MosecError):
    """The request is wrong (400)."""

    code = 400
    msg = "bad request"


class DecodingError(ClientError):
    """The request body cannot be decoded (400)."""

    code = 400
    msg = "decoding error"


class ServerError(MosecError):
    """The service failed while handling a valid request (500)."""

    code = 500
    msg = "internal error"


class EncodingError(ServerError):
    """The result cannot be encoded into a response body (500)."""

    code = 500
    msg = "encoding error"


# The Rust extension raises the two store errors below by these names (engine/src/py/errors.rs):
# they are the one class of each error, for the Python stores and the arena alike.


class StoreFullError(ServerError):
    """An object store has no room for a stage's output within the wait allowed (503).

    The body names the store, its capacity and what is in use. The engine counts these in
    ``<namespace>_store_full_total``.
    """

    code = 503
    msg = "store full"


class StoreUnavailableError(ServerError):
    """An object store cannot be reached (its daemon died, say): the request gets 503.

    A server whose store daemon is registered drains and exits when the daemon dies; the
    requests caught in that moment are told to retry elsewhere, not that the model failed.
    """

    code = 503
    msg = "store unavailable"


class StoreReferenceError(ServerError):
    """A store reference is stale, forged, does not unpack, or names another store (500)."""

    code = 500
    msg = "invalid store reference"


class ValidationError(MosecError):
    """The request decodes but its content is not acceptable (422)."""

    code = 422
    msg = "request validation error"


class MosecTimeoutError(BaseException):
    """``forward`` ran past the worker's own timeout (408).

    It derives from ``BaseException`` so that a broad ``except Exception`` in user code cannot
    swallow it and keep a stuck forward running.
    """

    code = 408
    msg = "mosec timeout error"


class StreamCancelled(BaseException):
    """Every request a streaming ``forward`` is serving has been abandoned.

    :meth:`mosec.SSEWorker.send_stream_event` raises it when the clients of every request of the
    current ``forward`` call have disconnected (or their requests timed out), so the work stops.
    Like :class:`MosecTimeoutError` it derives from ``BaseException``, so that a broad
    ``except Exception`` in user code does not swallow it; catch it by name (or use
    ``finally``) to clean up.
    """


class MemberError(MosecError):
    """An ensemble member failed; it takes the member's slot when the ensemble does not fail fast.

    Attributes:
        code: the member's error status.
        message: the member's error body, as text.
    """

    msg = "ensemble member error"

    def __init__(self, code: int, message: str) -> None:
        """Describe the member's failure by its status and message."""
        super().__init__(message)
        self.code = code
        self.message = message


#: The body of a 500 caused by an exception that is not a ``MosecError``.
INTERNAL_ERROR_BODY = "inference internal error"


def error_response(err: BaseException) -> tuple[int, bytes]:
    """Map an exception raised by worker code to an HTTP status and a text body.

    Args:
        err: the exception.

    Returns:
        The status code and the UTF-8 body for the client.
    """
    if isinstance(err, (MosecError, MosecTimeoutError)):
        payload = getattr(err, "payload", None)
        if isinstance(payload, bytes):
            # An error that carries an object (an in-process caller rebuilds it), not a text.
            return err.code, payload
        text = str(err).replace("\n", " - ") or err.msg
        return err.code, f"{err.msg}: {text}".encode()
    return 500, INTERNAL_ERROR_BODY.encode()
