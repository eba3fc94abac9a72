"""Workers for the in-process submission tests (``tests/test_local_submit.py``).

``Gather`` batches for real (it waits until its batch is full), so that a burst leaves it all
at once; ``Queued`` does not wait for batches (``wait_for_batch=False``) and reports the size
of each batch it was handed.
"""

from mosec import Runtime, Worker
from mosec.mixin import ShmIPCMixin


class Gather(Worker):
    """Passes each item on; batches of up to 20, waiting up to 5 s for them to fill."""

    def forward(self, data: list) -> list:
        return data


class Queued(Worker):
    """Answers each item with the size of the batch it came in."""

    def forward(self, data: list) -> list:
        return [{"n": item["n"], "batch": len(data)} for item in data]


def routes() -> dict:
    """``/burst``: a burst gathered, then handed on at once; ``/lone``: one stage alone."""
    queued = Runtime(Queued, max_batch_size=16, max_wait_time=10_000, wait_for_batch=False)
    return {
        "/burst": [Runtime(Gather, max_batch_size=20, max_wait_time=5_000), queued],
        "/lone": [queued],
    }


class ReadStored(ShmIPCMixin, Worker):
    """Sums an array the caller put in the arena (its input arrives as a reference)."""

    def deserialize(self, data: bytes):
        return self.deserialize_ipc(data)

    def forward(self, data) -> dict:
        return {"sum": float(data.sum())}


def stored_routes() -> dict:
    """``/stored``: one arena stage reading a caller's stored input."""
    return {"/stored": [Runtime(ReadStored)]}
