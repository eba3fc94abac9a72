"""Mixins that change how a worker encodes requests, responses and data between stages.

The store-backed IPC mixins (``ShmIPCMixin``, ``RedisShmIPCMixin``, ``ArrowShmIPCMixin``,
``PlasmaShmIPCMixin``) are thin adapters over the store layer, :mod:`mosec.store`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each mixin is imported on first use (PEP 562): ``from mosec.mixin import ShmIPCMixin`` works as
# before, but a worker that uses none of them does not pay for numpy, pyarrow or redis at start.
_HOMES = {
    "ArrowShmIPCMixin": "mosec.mixin.arrow_worker",
    "MsgpackMixin": "mosec.mixin.msgpack_worker",
    "NumBinIPCMixin": "mosec.mixin.numbin_worker",
    "PlasmaShmIPCMixin": "mosec.mixin.plasma_worker",
    "RedisShmIPCMixin": "mosec.mixin.redis_worker",
    "ShmIPCMixin": "mosec.mixin.shm_worker",
    "TypedMsgPackMixin": "mosec.mixin.typed_msgpack_worker",
}

__all__ = [
    "ArrowShmIPCMixin",
    "MsgpackMixin",
    "NumBinIPCMixin",
    "PlasmaShmIPCMixin",
    "RedisShmIPCMixin",
    "ShmIPCMixin",
    "TypedMsgPackMixin",
]

if TYPE_CHECKING:
    from mosec.mixin.arrow_worker import ArrowShmIPCMixin
    from mosec.mixin.msgpack_worker import MsgpackMixin
    from mosec.mixin.numbin_worker import NumBinIPCMixin
    from mosec.mixin.plasma_worker import PlasmaShmIPCMixin
    from mosec.mixin.redis_worker import RedisShmIPCMixin
    from mosec.mixin.shm_worker import ShmIPCMixin
    from mosec.mixin.typed_msgpack_worker import TypedMsgPackMixin


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mosec.mixin' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
