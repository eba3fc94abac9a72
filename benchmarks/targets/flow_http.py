"""The flows benchmark over HTTP: the same two flows as mosec routes, with the arena.

- ``/small``: three stages in a line, each adding one to ``{"n": ...}`` (JSON);
- ``/ensemble``: the body is an 8 MiB float32 array (raw bytes); ``Decode`` puts it in the arena
  (``ShmIPCMixin``), an ``Ensemble`` of ``Total`` and ``Peak`` reads it in place, ``Combine``
  answers both numbers.
"""

import numpy as np

from mosec import Ensemble, Runtime, Server, Worker
from mosec.mixin import ShmIPCMixin


class Inc(Worker):
    """Adds one."""

    def forward(self, data):
        return {"n": data["n"] + 1}


class Decode(ShmIPCMixin, Worker):
    """The request body as an array, written once into the arena."""

    def deserialize(self, data):
        return data

    def forward(self, data):
        array = self.shm_empty((len(data) // 4,), np.float32)
        array[:] = np.frombuffer(data, dtype=np.float32)
        return array


class Total(ShmIPCMixin, Worker):
    """The array's sum, read in place."""

    def forward(self, data):
        return float(np.sum(data, dtype=np.float64))


class Peak(ShmIPCMixin, Worker):
    """The array's maximum, read in place."""

    def forward(self, data):
        return float(np.max(data))


class Combine(ShmIPCMixin, Worker):
    """Both members' numbers."""

    def forward(self, data):
        return {"total": data[0], "peak": data[1]}


if __name__ == "__main__":
    server = Server()
    server.register_runtime(
        {
            "/small": [Runtime(Inc), Runtime(Inc), Runtime(Inc)],
            "/ensemble": [
                Runtime(Decode),
                Ensemble([Runtime(Total), Runtime(Peak)]),
                Runtime(Combine),
            ],
        }
    )
    server.run()
