"""BentoML 1.4 server script: each scenario as BentoML services, served by ``bentoml serve``.

- ``echo``: one service whose ``inference`` API takes the document's fields as typed parameters
  and answers them back.
- ``pipeline``: an entry service and three ``Hop`` services, composed with ``bentoml.depends``;
  the entry awaits each hop in turn (each dependency runs in processes of its own, and values go
  back to the caller between calls: BentoML has no direct hand-off from one dependency to the next).
- ``tensor``: the same with ``Producer`` (returns a ``np.ndarray``) then ``Consumer``.
- ``batch``: a ``batchable`` API (``max_batch_size`` 16): BentoML's adaptive batcher chooses the
  wait itself, so the scenario's 10 ms is not expressible; ``max_latency_ms`` is set to the
  request timeout, since a request it expects to miss that is refused with 503. A batchable API
  takes and returns a batch: the request carries ``x`` as a batch of one row, the answer is a list
  of one (``wire.BentoWire``).

Settings: one worker per service (like one mosec worker per stage), access logs off. Run as
``python bentoml_server.py --address A --port P``: it executes ``bentoml serve`` for this module's
``Entry`` (``BENCH_SPEC`` in the environment picks it); serves ``POST /inference`` and
``GET /readyz``.
"""

import argparse
import json
import os
import sys
from typing import List

import bentoml
import numpy as np

SPEC = json.loads(os.environ.get("BENCH_SPEC", '{"kind": "echo"}'))
ROW = 1024  # floats per row, as in mosec_server.py
TIMEOUT_S = 60
CONFIG = {
    "workers": 1,
    "logging": {"access": {"enabled": False}},
    "traffic": {"timeout": TIMEOUT_S},
}


@bentoml.service(**CONFIG)
class Echo:
    """Answer the document unchanged."""

    @bentoml.api
    def inference(self, id: int, text: str, tags: List[str]) -> dict:
        return {"id": id, "text": text, "tags": tags}


class Hop:
    """Count the stages a small JSON document went through."""

    @bentoml.api
    def hop(self, doc: dict) -> dict:
        doc["hops"] = doc.get("hops", 0) + 1
        return doc


# Three services of the same class, one per stage (one process each).
HopA = bentoml.service(name="HopA", **CONFIG)(type("HopA", (Hop,), {}))
HopB = bentoml.service(name="HopB", **CONFIG)(type("HopB", (Hop,), {}))
HopC = bentoml.service(name="HopC", **CONFIG)(type("HopC", (Hop,), {}))


@bentoml.service(**CONFIG)
class Pipeline:
    """The entry: the document through the three hops, in turn."""

    a = bentoml.depends(HopA)
    b = bentoml.depends(HopB)
    c = bentoml.depends(HopC)

    @bentoml.api
    async def inference(self, id: int, text: str, tags: List[str]) -> dict:
        doc = {"id": id, "text": text, "tags": tags}
        for stage in (self.a, self.b, self.c):
            doc = await stage.to_async.hop(doc=doc)
        return doc


@bentoml.service(**CONFIG)
class Producer:
    """Turn a value into a float32 tensor of ``tensor_bytes`` bytes, shape (rows, 1024)."""

    @bentoml.api
    def make(self, value: float) -> np.ndarray:
        rows = SPEC["tensor_bytes"] // (4 * ROW)
        return np.full((rows, ROW), value, dtype=np.float32)


@bentoml.service(**CONFIG)
class Consumer:
    """Read the whole tensor and answer with a small summary of it."""

    @bentoml.api
    def read(self, tensor: np.ndarray) -> dict:
        return {
            "elements": int(tensor.size),
            "first": float(tensor.flat[0]),
            "sum": float(tensor.sum()),
        }


@bentoml.service(**CONFIG)
class Tensor:
    """The entry: the producer's tensor into the consumer."""

    producer = bentoml.depends(Producer)
    consumer = bentoml.depends(Consumer)

    @bentoml.api
    async def inference(self, value: float) -> dict:
        tensor = await self.producer.to_async.make(value=value)
        return await self.consumer.to_async.read(tensor=tensor)


@bentoml.service(**CONFIG)
class Batch:
    """The same tiny dense layer as ``mosec_server.BatchModel``, once per batch."""

    def __init__(self):
        self.weights = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)

    @bentoml.api(
        batchable=True,
        max_batch_size=SPEC.get("max_batch_size", 16),
        max_latency_ms=TIMEOUT_S * 1000,
    )
    def inference(self, x: np.ndarray) -> List[dict]:
        outputs = np.tanh(x.astype(np.float32) @ self.weights).sum(axis=1)
        return [{"y": float(y), "batch": len(x)} for y in outputs]


ENTRIES = {"echo": "Echo", "pipeline": "Pipeline", "tensor": "Tensor", "batch": "Batch"}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args()
    entry = ENTRIES.get(SPEC["kind"])
    if entry is None:
        raise SystemExit(f"bentoml_server.py: scenario kind {SPEC['kind']!r} is not expressible")
    argv = [sys.executable, "-m", "bentoml", "serve", f"bentoml_server:{entry}"]
    os.execv(sys.executable, argv + ["--host", args.address, "--port", str(args.port)])
