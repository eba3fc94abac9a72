"""The exceptions of ``mosec.mpserver`` and how an exception crosses from a worker to the caller.

A worker's exception travels as the body of an error answer with status :data:`OBJECT_STATUS`:
a pickle of its type name, text, formatted traceback and (separately pickled) the exception
itself. The caller rebuilds the exception with its own type and sets ``__cause__`` to a
:class:`RemoteTraceback` holding the worker's traceback, as mpservice does. The inner pickle is
separate so that an exception that pickles but cannot be unpickled (its ``__init__`` does not
match its ``args``) still reaches the caller, as a :class:`RemoteError` naming its type.
"""

from __future__ import annotations

import builtins
import multiprocessing
import pickle
import traceback
from typing import Any

from mosec.errors import MosecError

#: The status of an answer whose body is a packed exception (see :func:`pack_exception`).
OBJECT_STATUS = 590
#: The pickle protocol of every payload of this package (out-of-band buffers possible).
PROTOCOL = 5


class ServerBacklogFull(RuntimeError):
    """The server holds ``capacity`` requests already; ``args == (n, waited_seconds_or_None)``."""

    def __init__(self, n: int, x: float | None = None) -> None:
        """Record the backlog ``n`` and how long the request waited (None: not at all)."""
        super().__init__(n, x)

    def __str__(self) -> str:
        """The message mpservice gives (its "in proces" typo too: callers may match on it)."""
        n, x = self.args
        head = f"Server is at capacity with {n} items in proces; new request is rejected"
        if x is None:
            return f"{head} immediately due to back-pressure"
        return f"{head} after waiting for {x:.3f} seconds"


class TimeoutError(builtins.TimeoutError):  # noqa: A001 - the contract's name
    """A call's result was not ready by its deadline."""


class EnsembleError(RuntimeError):
    """An ensemble failed: a member failed under ``fail_fast``, or every member failed.

    Built from ``{'y': [slot results], 'n': finished count}``; ``args == (msg, results)``.
    """

    def __init__(self, results: dict[str, Any]) -> None:
        """Describe the failure from the slots (exceptions are the failed members)."""
        errors = [v for v in results["y"] if isinstance(v, BaseException)]
        first = repr(errors[0]) if errors else None
        nerr = len(errors)
        msg = (
            f"{results['n']}/{len(results['y'])} ensemble members finished, with {nerr} "
            f"error{'s' if nerr > 1 else ''}; first error: {first}"
        )
        super().__init__(msg, results)

    def __repr__(self) -> str:
        """The message, as mpservice prints it."""
        return str(self.args[0])

    def __str__(self) -> str:
        """The message."""
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuild from the results (the message is derived from them)."""
        return type(self), (self.args[1],)


class RemoteTraceback(Exception):
    """The ``__cause__`` of a rebuilt exception: the worker-side traceback, as text."""

    def __init__(self, tb: str) -> None:
        """Keep the formatted traceback."""
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        """The traceback text."""
        return self.tb


class RemoteError(RuntimeError):
    """A failure that reached the caller without an exception object it could rebuild.

    For example a worker process that died with the item, or an exception whose class cannot
    be rebuilt here; the message says which.

    Attributes:
        status: the engine's status for the item (``OBJECT_STATUS`` for a packed exception).
    """

    def __init__(self, message: str, status: int = 500) -> None:
        """Describe the failure."""
        super().__init__(message)
        self.status = status


class ObjectError(MosecError):
    """Carries a packed exception through the engine as an error answer (``payload``)."""

    code = OBJECT_STATUS
    msg = "mpserver exception"

    def __init__(self, payload: bytes) -> None:
        """Wrap the packed exception (see :func:`pack_exception`)."""
        super().__init__("a packed exception")
        self.payload = payload


def is_remote_exception(e: Any) -> bool:
    """Whether ``e`` was rebuilt from a worker's exception (its cause is a RemoteTraceback)."""
    return isinstance(e, BaseException) and isinstance(e.__cause__, RemoteTraceback)


def get_remote_traceback(e: BaseException) -> str:
    """The worker-side traceback text of a rebuilt exception."""
    assert isinstance(e.__cause__, RemoteTraceback)
    return e.__cause__.tb


def _traceback_text(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, RemoteTraceback) and exc.__traceback__ is None:
        return cause.tb  # rebuilt here and passed on: keep where it really happened
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"[{multiprocessing.current_process().name}] {text}"


def pack_exception(exc: BaseException) -> bytes:
    """The bytes that carry ``exc`` to the caller; never raises."""
    try:
        inner: bytes | None = pickle.dumps(exc, protocol=PROTOCOL)
        why = ""
    except Exception as err:  # an attribute that does not pickle, say
        inner = None
        why = f"it cannot be pickled: {type(err).__name__}: {err}"
    head = (_type_name(exc), _text(exc), _traceback_text(exc), inner, why)
    return pickle.dumps(head, protocol=PROTOCOL)


def unpack_exception(payload: bytes) -> BaseException:
    """Rebuild the exception :func:`pack_exception` packed, or a :class:`RemoteError` for it."""
    try:
        type_name, text, tb, inner, why = pickle.loads(payload)
    except Exception as err:
        return RemoteError(f"an error answer that cannot be read ({err!r})", OBJECT_STATUS)
    exc: BaseException | None = None
    if inner is not None:
        try:
            rebuilt = pickle.loads(inner)
        except Exception as err:
            why = f"it cannot be rebuilt here: {type(err).__name__}: {err}"
        else:
            if isinstance(rebuilt, BaseException):
                exc = rebuilt
            else:
                why = f"it unpickled as {type(rebuilt).__name__}"
    if exc is None:
        exc = RemoteError(f"{type_name}: {text} ({why})", OBJECT_STATUS)
    exc.__cause__ = RemoteTraceback(tb)
    return exc


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<str() failed>"


def error_from_answer(status: int, body: bytes) -> BaseException:
    """The exception an error answer stands for: rebuilt when packed, else a RemoteError."""
    if status == OBJECT_STATUS:
        return unpack_exception(body)
    text = body.decode("utf-8", errors="replace")
    return RemoteError(f"{status}: {text}", status)


def ensemble_result(values: list[Any], failed: list[bool]) -> list[Any]:
    """An ensemble's result from its members' (mpservice's rule for ``fail_fast=False``).

    Args:
        values: each member's result, or its exception where ``failed``.
        failed: which members failed.

    Raises:
        EnsembleError: every member failed.
    """
    if values and all(failed):
        raise EnsembleError({"y": list(values), "n": len(values)})
    return list(values)
