"""One log format for the engine, the server process and every worker.

By default each record is one JSON line on stderr with the keys ``timestamp`` (RFC 3339, UTC,
microseconds, ``Z``), ``level`` (``DEBUG``/``INFO``/``WARN``/``ERROR``), ``target`` (the logger
name), ``message``, ``pid`` and any extras passed with ``extra={...}``. The Rust engine writes the
same keys, so one parser reads the whole server's output. In debug mode the records are readable
text instead.

While a worker handles a request, every record also carries ``request_id``: the request's id
(the client's ``x-request-id`` or one the engine made), or the list of ids of the batch ``forward``
is running on. The worker loop sets it in a context variable (see :func:`set_request_ids`), so the
records of a user's :func:`get_logger` logger inside ``forward`` carry it too.

Users get the same through :func:`get_logger`, which works at import time (before the server has
parsed its flags) and follows the server's ``--log-level``/``--debug`` once they are known.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Union

ROOT = "mosec"

_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "ERROR",
}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR
_LEVELS["warn"] = logging.WARNING

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

#: What the worker is handling now: one request id, the ids of a batch, or None when idle.
RequestIds = Union[str, list[str], None]
_REQUEST_ID: ContextVar[RequestIds] = ContextVar("mosec_request_id", default=None)


def set_request_ids(ids: RequestIds) -> None:
    """Tag the records logged from now on with ``request_id`` (None: no tag).

    The worker loop calls it around each batch; a set per batch is cheaper than a context
    manager per item on the hot path.

    Args:
        ids: one request id, the ids of a batch, or None.
    """
    _REQUEST_ID.set(ids)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extras, with the current request id unless ``extra=`` gave one."""
    extras = {key: value for key, value in vars(record).items() if key not in _STANDARD}
    ids = _REQUEST_ID.get()
    if ids is not None and "request_id" not in extras:
        extras["request_id"] = ids
    return extras


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record; extras are kept, values JSON cannot hold become strings."""
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname),
            "target": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in _extras(record).items():
            if key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Readable one-line records for debugging, with the same fields as the JSON form."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``timestamp LEVEL target pid: message key=value...``."""
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        extras = " ".join(f"{key}={value}" for key, value in _extras(record).items())
        text = (
            f"{_timestamp(record.created)} {level:5} {record.name} [{record.process}] "
            f"{record.getMessage()}"
        )
        if extras:
            text = f"{text} {extras}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def level_number(level: str) -> int:
    """Turn a level word (``debug``, ``info``, ``warning``, ``error``) into a logging level.

    Raises:
        ValueError: for any other word.
    """
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


def configure(level: str = "info", json_lines: bool = True) -> None:
    """Set the level and the format of every ``mosec`` logger (idempotent).

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        json_lines: JSON lines when true, readable text when false.
    """
    root = logging.getLogger(ROOT)
    handler = next((h for h in root.handlers if getattr(h, "_mosec", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._mosec = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        # The mosec tree has its own handler; passing records up would print them twice
        # when the user configures the root logger too.
        root.propagate = False
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root.setLevel(level_number(level))


def _configure_from_env() -> None:
    # Before the server parses its flags, follow MOSEC_LOG_LEVEL / MOSEC_DEBUG so that a
    # user's import-time log lines already use the chosen format. Bad values are reported by
    # the flag parser later, so they are ignored here.
    debug = os.environ.get("MOSEC_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    level = "debug" if debug else os.environ.get("MOSEC_LOG_LEVEL", "info")
    if level.lower() not in _LEVELS:
        level = "info"
    configure(level, json_lines=level.lower() != "debug")


def get_logger(name: str | None = None) -> logging.Logger:
    """Return a logger that writes in the server's format.

    Args:
        name: a child name under ``mosec`` (for example ``"my_model"``); the ``mosec`` logger
            itself when omitted.

    Returns:
        A configured :class:`logging.Logger`.
    """
    root = logging.getLogger(ROOT)
    if not any(getattr(h, "_mosec", False) for h in root.handlers):
        _configure_from_env()
    return root if not name else root.getChild(name)
