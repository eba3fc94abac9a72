"""PyTriton 0.7 server script (the Triton server inside its wheel, CPU only): echo and batch.

One Python inference callable bound as the model ``bench``; requests and answers are Triton
tensors in Triton's HTTP/JSON protocol (``POST /v2/models/bench/infer``, the harness's
``wire.TritonWire`` encodes the scenario's request and decodes the answer):

- ``echo``: the request document as one ``BYTES`` tensor ``doc``, answered unchanged; no batching.
- ``batch``: ``x`` as an ``FP32`` tensor of 64; ``@batch`` with Triton's dynamic batcher (batch 16,
  queue delay 10 ms), answering ``y`` (FP32) and ``batch`` (INT32, the batch's size).

PyTriton binds each callable as a model of its own and has no way to chain models inside the
server (no Triton ensembles, no business-logic scripting from a callable), so the ``pipeline`` and
``tensor`` scenarios are not expressible. Settings: one model instance (like one mosec worker),
Triton's default HTTP threads, gRPC and metrics off (nothing uses them). Configured like
``mosec_server.py`` (``BENCH_SPEC`` in the environment); ``GET /v2/health/ready`` answers 200.
"""

import argparse
import json
import os
import signal
import sys
import sysconfig

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

SPEC = json.loads(os.environ.get("BENCH_SPEC", '{"kind": "echo"}'))
WEIGHTS = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)


def echo(requests):
    """Answer each request's ``doc`` unchanged."""
    return [{"doc": request["doc"]} for request in requests]


@batch
def dense(x):
    """The same tiny dense layer as ``mosec_server.BatchModel``, once per batch of ``x``."""
    outputs = np.tanh(x @ WEIGHTS).sum(axis=1, keepdims=True).astype(np.float32)
    return {"y": outputs, "batch": np.full((len(x), 1), len(x), dtype=np.int32)}


def bind(triton):
    """Bind the model of the scenario named in ``SPEC``."""
    kind = SPEC["kind"]
    if kind == "echo":
        doc = Tensor(name="doc", dtype=bytes, shape=(1,))
        triton.bind("bench", echo, inputs=[doc], outputs=[doc], config=ModelConfig(batching=False))
    elif kind == "batch":
        delay_us = int(SPEC["max_wait_ms"] * 1000)
        triton.bind(
            "bench",
            dense,
            inputs=[Tensor(name="x", dtype=np.float32, shape=(64,))],
            outputs=[
                Tensor(name="y", dtype=np.float32, shape=(1,)),
                Tensor(name="batch", dtype=np.int32, shape=(1,)),
            ],
            config=ModelConfig(
                max_batch_size=SPEC["max_batch_size"],
                batcher=DynamicBatcher(max_queue_delay_microseconds=delay_us),
            ),
        )
    else:
        raise SystemExit(f"pytriton_server.py: scenario kind {kind!r} is not expressible")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args()
    config = TritonConfig(
        http_address=args.address,
        http_port=args.port,
        allow_grpc=False,
        allow_metrics=False,
    )
    # Triton's Python-backend stub links libpython by name: point it at this interpreter's, not
    # the system's older 3.11 (PyTriton's install notes for pyenv and conda interpreters).
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = ":".join(
        p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p
    )
    # SIGTERM leaves through the ``with``, so that Triton stops its server process too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Triton(config=config) as triton:
        bind(triton)
        triton.serve()
