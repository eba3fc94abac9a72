"""Mixins that change how a worker encodes requests, responses and data between stages.

The store-backed IPC mixins (``ShmIPCMixin``, ``RedisShmIPCMixin``, ``ArrowShmIPCMixin``,
``PlasmaShmIPCMixin``) are thin adapters over the store layer, :mod:`mosec.store`.
"""

from mosec.mixin.arrow_worker import ArrowShmIPCMixin
from mosec.mixin.msgpack_worker import MsgpackMixin
from mosec.mixin.numbin_worker import NumBinIPCMixin
from mosec.mixin.plasma_worker import PlasmaShmIPCMixin
from mosec.mixin.redis_worker import RedisShmIPCMixin
from mosec.mixin.shm_worker import ShmIPCMixin
from mosec.mixin.typed_msgpack_worker import TypedMsgPackMixin

__all__ = [
    "ArrowShmIPCMixin",
    "MsgpackMixin",
    "NumBinIPCMixin",
    "PlasmaShmIPCMixin",
    "RedisShmIPCMixin",
    "ShmIPCMixin",
    "TypedMsgPackMixin",
]
