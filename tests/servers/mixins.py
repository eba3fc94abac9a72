"""The mixins: msgpack in and out on ``/msgpack``, numbin arrays between two stages on
``/numbin``. The ``/msgpack`` runtime also serves ``/shared`` (one stage, two routes).
"""

import numpy as np

from mosec import Runtime, Server, Worker
from mosec.mixin import MsgpackMixin, NumBinIPCMixin


class MsgpackEcho(MsgpackMixin, Worker):
    """Echoes a msgpack request with the stage it ran on."""

    def forward(self, data):
        return {"echo": data, "stage": self.stage}


class Embed(NumBinIPCMixin, Worker):
    """Turns a list of numbers into a float32 array for the next stage."""

    def forward(self, data):
        return np.asarray(data["values"], dtype=np.float32)


class Total(NumBinIPCMixin, Worker):
    """Sums the array it receives; reports its dtype to show it arrived as an array."""

    def forward(self, data):
        return {"sum": float(data.sum()), "dtype": str(data.dtype), "shape": list(data.shape)}


if __name__ == "__main__":
    server = Server()
    echo = Runtime(MsgpackEcho)
    server.register_runtime(
        {
            "/msgpack": [echo],
            "/shared": [echo],
            "/numbin": [Runtime(Embed), Runtime(Total)],
        }
    )
    server.run()
