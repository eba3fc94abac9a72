"""Mixins that change how a worker encodes requests, responses and data between stages."""

from mosec.mixin.msgpack_worker import MsgpackMixin
from mosec.mixin.numbin_worker import NumBinIPCMixin

__all__ = ["MsgpackMixin", "NumBinIPCMixin"]
