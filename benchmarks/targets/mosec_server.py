"""One mosec server script for every benchmark scenario, run by ours and by upstream mosec.

The harness runs this file with the interpreter of the target (our package, or upstream mosec
0.9.8 in its own virtual environment); both import it as ``mosec`` and the API is the same, so the
script runs unchanged on either. It is configured by environment variables, because mosec parses
``sys.argv`` itself and spawned workers re-import this module with the same environment:

- ``BENCH_SPEC``: JSON of the scenario's server side (``kind`` and its parameters).
- ``BENCH_IPC_MIXIN``: name of a class in ``mosec.mixin`` to mix into every worker that sends or
  receives data between stages; empty for the default (pickle).
- ``BENCH_REDIS_URL``: the Redis URL handed to the mixin's ``set_redis_url`` when it has one.
- ``BENCH_REDIS_TTL_MS``: the expiry of the mixin's keys, when it has one (ours: ``_redis_ttl_ms``),
  so that a killed server's keys are gone within a run (``benchmarks/scale_out.py``).
- ``BENCH_INPLACE``: ``1`` to have the tensor producer fill an array from the mixin's
  ``shm_empty`` (our shared-memory mixins: a hand-off without any copy) instead of a new one.

Mosec's own flags (``--address``, ``--port``, ``--timeout`` ...) come on the command line.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

from mosec import Server, Worker

SPEC = json.loads(os.environ.get("BENCH_SPEC", '{"kind": "echo"}'))


def _ipc_bases():
    """Base classes of the workers that talk to another stage: the IPC mixin first, if any."""
    name = os.environ.get("BENCH_IPC_MIXIN", "")
    if not name:
        return (Worker,)
    import mosec.mixin

    mixin = getattr(mosec.mixin, name)
    redis_url = os.environ.get("BENCH_REDIS_URL", "")
    if redis_url and hasattr(mixin, "set_redis_url"):
        mixin.set_redis_url(redis_url)
    ttl_ms = os.environ.get("BENCH_REDIS_TTL_MS", "")
    if ttl_ms and hasattr(mixin, "_redis_ttl_ms"):
        mixin._redis_ttl_ms = int(ttl_ms)
    return (mixin, Worker)


IPC = _ipc_bases()
INPLACE = os.environ.get("BENCH_INPLACE", "") == "1"


class Echo(Worker):
    """Return the request unchanged."""

    def forward(self, data):
        return data


class Hop(*IPC):
    """Count the stages a small JSON document went through."""

    def forward(self, data):
        data["hops"] = data.get("hops", 0) + 1
        return data


class HopA(Hop):
    """First stage of the pipeline."""


class HopB(Hop):
    """Middle stage of the pipeline."""


class HopC(Hop):
    """Last stage of the pipeline."""


ROW = 1024  # floats per row: numbin stores each dimension in 16 bits, so no 1-D giant array


class Producer(*IPC):
    """Turn a small request into a float32 tensor of ``tensor_bytes`` bytes, shape (rows, 1024)."""

    def forward(self, data):
        rows = SPEC["tensor_bytes"] // (4 * ROW)
        value = float(data.get("value", 1.0))
        if INPLACE:
            out = self.shm_empty((rows, ROW), np.float32)
            out.fill(value)
            return out
        return np.full((rows, ROW), value, dtype=np.float32)


class Consumer(*IPC):
    """Read the whole tensor and answer with a small summary of it."""

    def forward(self, data):
        total = float(data.sum())
        return {"elements": int(data.size), "first": float(data.flat[0]), "sum": total}


class BatchModel(Worker):
    """A tiny dense layer run once per batch: the cost per call that batching amortises."""

    def __init__(self):
        super().__init__()
        self.weights = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)

    def forward(self, data):
        inputs = np.asarray([item["x"] for item in data], dtype=np.float32)
        outputs = np.tanh(inputs @ self.weights).sum(axis=1)
        return [{"y": float(y), "batch": len(data)} for y in outputs]


def build(server):
    """Append the workers of the scenario named in ``SPEC`` to ``server``."""
    kind = SPEC["kind"]
    if kind == "echo":
        server.append_worker(Echo)
    elif kind == "pipeline":
        for stage in (HopA, HopB, HopC):
            server.append_worker(stage)
    elif kind == "tensor":
        server.append_worker(Producer)
        server.append_worker(Consumer)
    elif kind == "vision":
        # The demo's own pipeline, unchanged (examples/vision/pipeline.py).
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "vision"))
        import pipeline

        server.append_worker(pipeline.Decode)
        server.append_worker(pipeline.Preprocess)
        server.append_worker(
            pipeline.Inference,
            max_batch_size=pipeline.MAX_BATCH_SIZE,
            max_wait_time=pipeline.MAX_WAIT_MS,
        )
        server.append_worker(pipeline.Postprocess)
    elif kind == "ocr":
        # The demo's OCR pipeline, unchanged (examples/ocr/pipeline.py). It takes its IPC from
        # OCR_IPC and OCR_INPLACE, set here from the target's before it is imported; workers
        # inherit them.
        os.environ["OCR_IPC"] = os.environ.get("BENCH_IPC_MIXIN", "") or "pickle"
        os.environ["OCR_INPLACE"] = "1" if INPLACE else "0"
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "ocr"))
        import pipeline

        pipeline.build(server)
    elif kind == "batch":
        server.append_worker(
            BatchModel, max_batch_size=SPEC["max_batch_size"], max_wait_time=SPEC["max_wait_ms"]
        )
    else:
        raise SystemExit(f"mosec_server.py: unknown scenario kind {kind!r}")


if __name__ == "__main__":
    srv = Server()
    build(srv)
    srv.run()
