"""mpservice 0.16.8 over HTTP, the way ``mpservice.http``'s documentation wires it up.

A Starlette app whose lifespan opens an ``mpserver.AsyncServer``; each request is one
``await model.call(item)``; ``mpservice.http.start_server`` runs it under uvicorn with one HTTP
process (its docs: "usually you should use ``workers=1``" and let the servlets own the worker
processes). Every stage is a ``ProcessServlet`` (one process, like one mosec worker), a
multi-stage graph a ``SequentialServlet``; items, arrays included, cross between processes the
way mpserver moves them (pickled through its queues). Batching is mpserver's own
(``batch_size``, ``batch_wait_time``). Configured like ``mosec_server.py``: ``BENCH_SPEC`` in
the environment, ``--address`` and ``--port`` on the command line; serves ``POST /inference``
and ``GET /health``.
"""

import argparse
import contextlib
import json
import os

import numpy as np
from mpservice.http import start_server
from mpservice.mpserver import AsyncServer, ProcessServlet, SequentialServlet, Worker
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

SPEC = json.loads(os.environ.get("BENCH_SPEC", '{"kind": "echo"}'))
ROW = 1024  # floats per row, as in mosec_server.py
TIMEOUT_S = 60.0


class Echo(Worker):
    """Return the item unchanged."""

    def call(self, x):
        return x


class Hop(Worker):
    """Count the stages a small JSON document went through."""

    def call(self, x):
        x["hops"] = x.get("hops", 0) + 1
        return x


class Producer(Worker):
    """Turn ``{"value": v}`` into a float32 tensor of ``tensor_bytes`` bytes, shape (rows, 1024)."""

    def call(self, x):
        rows = SPEC["tensor_bytes"] // (4 * ROW)
        return np.full((rows, ROW), float(x.get("value", 1.0)), dtype=np.float32)


class Consumer(Worker):
    """Read the whole tensor and answer with a small summary of it."""

    def call(self, x):
        return {"elements": int(x.size), "first": float(x.flat[0]), "sum": float(x.sum())}


class BatchModel(Worker):
    """The same tiny dense layer as ``mosec_server.BatchModel``, once per batch."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weights = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)

    def call(self, batch):
        inputs = np.asarray([item["x"] for item in batch], dtype=np.float32)
        outputs = np.tanh(inputs @ self.weights).sum(axis=1)
        return [{"y": float(y), "batch": len(batch)} for y in outputs]


def servlet():
    """The servlet graph of the scenario named in ``SPEC``."""
    kind = SPEC["kind"]
    if kind == "echo":
        return ProcessServlet(Echo)
    if kind == "pipeline":
        return SequentialServlet(*(ProcessServlet(Hop) for _ in range(3)))
    if kind == "tensor":
        return SequentialServlet(ProcessServlet(Producer), ProcessServlet(Consumer))
    if kind == "batch":
        return ProcessServlet(
            BatchModel,
            batch_size=SPEC["max_batch_size"],
            batch_wait_time=SPEC["max_wait_ms"] / 1e3,
        )
    raise SystemExit(f"mpservice_server.py: scenario kind {kind!r} is not expressible")


async def inference(request):
    """One request, one item through the servlets."""
    item = await request.json()
    result = await request.state.model.call(item, timeout=TIMEOUT_S)
    return JSONResponse(result)


async def health(request):
    """Answer 200 once the app is up (its lifespan has started the servlets)."""
    return PlainTextResponse("ok")


@contextlib.asynccontextmanager
async def lifespan(app):
    """Start the servlets' processes with the app, stop them with it."""
    async with AsyncServer(servlet()) as model:
        yield {"model": model}


app = Starlette(
    lifespan=lifespan,
    routes=[Route("/inference", inference, methods=["POST"]), Route("/health", health)],
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args()
    start_server("mpservice_server:app", host=args.address, port=args.port, workers=1)
