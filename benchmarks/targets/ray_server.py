"""Ray Serve 2.60 server script: each scenario as Ray Serve's documentation composes it.

- ``echo``: one deployment, the ingress, answers the request's JSON.
- ``pipeline``: an ingress deployment and three ``Hop`` deployments composed through handles; each
  call's ``DeploymentResponse`` goes straight into the next handle call, so the document moves
  replica to replica without coming back through the ingress (Ray's "model composition" guide).
- ``tensor``: the same with ``Producer`` then ``Consumer``: the array is a return value, which Ray
  puts in its shared-memory object store (above 100 KiB) and the consumer reads without a copy.
- ``batch``: the ingress method under ``@serve.batch`` (batch 16, wait 10 ms), with
  ``max_ongoing_requests`` above the batch size, as the batching guide asks.

Settings for a 2-core box: ``ray.init(num_cpus=2)`` without the dashboard, one replica per
deployment with a fractional CPU so that every deployment fits, access logs off (the
performance guide's advice), one HTTP proxy on ``--address``:``--port``. Configured like
``mosec_server.py`` (``BENCH_SPEC`` in the environment); serves ``POST /inference`` and Ray's
``GET /-/healthz``. SIGTERM shuts Serve and Ray down.
"""

import argparse
import json
import os
import signal
import sys
import threading

import numpy as np
import ray
from ray import serve
from ray.serve.schema import LoggingConfig

SPEC = json.loads(os.environ.get("BENCH_SPEC", '{"kind": "echo"}'))
ROW = 1024  # floats per row, as in mosec_server.py
# One replica each; a fractional CPU so that up to four deployments fit on two cores; enough
# requests in flight per replica for the batcher to fill its batches.
OPTIONS = {
    "num_replicas": 1,
    "ray_actor_options": {"num_cpus": 0.25},
    "max_ongoing_requests": 64,
}


@serve.deployment(**OPTIONS)
class Echo:
    """Return the request's JSON unchanged."""

    async def __call__(self, request):
        return await request.json()


@serve.deployment(**OPTIONS)
class Hop:
    """Count the stages a small JSON document went through."""

    def __call__(self, doc):
        doc["hops"] = doc.get("hops", 0) + 1
        return doc


@serve.deployment(**OPTIONS)
class Producer:
    """Turn ``{"value": v}`` into a float32 tensor of ``tensor_bytes`` bytes, shape (rows, 1024)."""

    def __call__(self, doc):
        rows = SPEC["tensor_bytes"] // (4 * ROW)
        return np.full((rows, ROW), float(doc.get("value", 1.0)), dtype=np.float32)


@serve.deployment(**OPTIONS)
class Consumer:
    """Read the whole tensor and answer with a small summary of it."""

    def __call__(self, tensor):
        return {
            "elements": int(tensor.size),
            "first": float(tensor.flat[0]),
            "sum": float(tensor.sum()),
        }


@serve.deployment(**OPTIONS)
class Chain:
    """The ingress: the request's JSON through its stages' handles, one response into the next."""

    def __init__(self, *stages):
        self.stages = stages

    async def __call__(self, request):
        response = await request.json()
        for stage in self.stages:
            response = stage.remote(response)
        return await response


@serve.deployment(**OPTIONS)
class Batch:
    """The same tiny dense layer as ``mosec_server.BatchModel``, once per batch."""

    def __init__(self):
        self.weights = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)

    @serve.batch(
        max_batch_size=SPEC.get("max_batch_size", 16),
        batch_wait_timeout_s=SPEC.get("max_wait_ms", 10) / 1e3,
    )
    async def infer(self, docs):
        inputs = np.asarray([doc["x"] for doc in docs], dtype=np.float32)
        outputs = np.tanh(inputs @ self.weights).sum(axis=1)
        return [{"y": float(y), "batch": len(docs)} for y in outputs]

    async def __call__(self, request):
        return await self.infer(await request.json())


def application():
    """The application of the scenario named in ``SPEC``."""
    kind = SPEC["kind"]
    if kind == "echo":
        return Echo.bind()
    if kind == "pipeline":
        hops = [Hop.options(name=f"Hop{n}").bind() for n in "ABC"]
        return Chain.bind(*hops)
    if kind == "tensor":
        return Chain.bind(Producer.bind(), Consumer.bind())
    if kind == "batch":
        return Batch.bind()
    raise SystemExit(f"ray_server.py: scenario kind {kind!r} is not expressible")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args()
    app = application()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    quiet = LoggingConfig(enable_access_log=False, log_level="WARNING")
    serve.start(http_options={"host": args.address, "port": args.port}, logging_config=quiet)
    serve.run(app, route_prefix="/inference", logging_config=quiet)
    stop = threading.Event()  # after ray.init, which installs handlers of its own
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ray_server.py: serving", flush=True)
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
