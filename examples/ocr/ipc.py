"""How the OCR stages hand their outputs over, chosen when the script starts.

The same pipeline file runs on this package and on upstream mosec 0.9.8, with any IPC mixin that
carries one numpy array per item (every stage output is a :mod:`bundle`):

- ``OCR_IPC``: ``ShmIPCMixin`` (the default: the shared-memory arena), ``NumBinIPCMixin``,
  another class name of ``mosec.mixin``, or ``pickle`` (no mixin: mosec's default);
- ``OCR_INPLACE``: ``1`` (the default) to have the stages write their outputs straight into the
  arena with ``self.shm_empty`` when the mixin has it, so that they cross with no copy; ``0``
  to build them in ordinary memory (the mixin then copies each one into the arena).

They are environment variables, not flags, because mosec parses the command line itself and
its worker processes import this module again with the same environment.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

import numpy as np

from mosec import Worker

IPC_ENV = "OCR_IPC"
INPLACE_ENV = "OCR_INPLACE"
DEFAULT_IPC = "ShmIPCMixin"


def bases() -> Tuple[type, ...]:
    """The stage classes' bases: the chosen IPC mixin (if any), then ``Worker``.

    Raises:
        SystemExit: ``OCR_IPC`` names no class of ``mosec.mixin``.
    """
    name = os.environ.get(IPC_ENV, DEFAULT_IPC) or "pickle"
    if name == "pickle":
        return (Worker,)
    import mosec.mixin

    mixin = getattr(mosec.mixin, name, None)
    if not isinstance(mixin, type):
        raise SystemExit(f"{IPC_ENV}={name}: mosec.mixin has no such class (or use 'pickle')")
    return (mixin, Worker)


def inplace(worker: Any) -> bool:
    """Whether ``worker`` writes its outputs in the arena (``OCR_INPLACE`` and a mixin with it)."""
    wanted = os.environ.get(INPLACE_ENV, "1") != "0"
    return wanted and callable(getattr(worker, "shm_empty", None))


def allocator(worker: Any) -> Any:
    """The function that makes ``worker``'s output arrays: ``shm_empty`` or ``numpy.empty``."""
    return worker.shm_empty if inplace(worker) else np.empty
