"""What the test workers do with a request: echo it, or act on the keys it carries.

Keys of a JSON request (all optional):

- ``mark``: a file path; forward writes its pid there when it starts (the test's sign that the
  request is inside ``forward``);
- ``hold``: a file path; forward waits until that file exists (bounded by ``HOLD_LIMIT_S``);
- ``sleep``: seconds to sleep;
- ``raise``: ``client``, ``decoding``, ``validation``, ``server``, ``encoding`` or ``other``;
- ``unencodable``: true to return a value JSON cannot encode;
- ``log``: a message forward logs (at INFO) with a ``get_logger`` logger;
- anything else is echoed back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mosec import (
    ClientError,
    DecodingError,
    EncodingError,
    ServerError,
    ValidationError,
    get_logger,
)

logger = get_logger("behaviour")

HOLD_LIMIT_S = 60.0
_ERRORS = {
    "client": ClientError,
    "decoding": DecodingError,
    "validation": ValidationError,
    "server": ServerError,
    "encoding": EncodingError,
}


def write_atomic(path: str | Path, text: str) -> None:
    """Write a file so that a reader never sees it half written."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def act(data: Any) -> Any:
    """Do what the request asks and return the answer."""
    if not isinstance(data, dict):
        return data
    if "log" in data:
        logger.info(data["log"])
    if "mark" in data:
        write_atomic(data["mark"], str(os.getpid()))
    if "hold" in data:
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not os.path.exists(data["hold"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    if "sleep" in data:
        time.sleep(float(data["sleep"]))
    kind = data.get("raise")
    if kind == "other":
        raise RuntimeError("a bug in user code")
    if kind in _ERRORS:
        raise _ERRORS[kind](f"asked to raise {kind}")
    if data.get("unencodable"):
        return {"a set": {1, 2}}
    return data
