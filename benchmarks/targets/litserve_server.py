"""LitServe server script for the scenarios LitServe can express: JSON echo and dynamic batching.

LitServe runs one stage per request (decode, predict, encode in one worker), so it has no
multi-stage pipeline and no inter-stage tensor hand-off to compare. Configured like
``mosec_server.py``: ``BENCH_SPEC`` in the environment, ``--address`` and ``--port`` on the
command line. It serves ``POST /predict`` and ``GET /health``. It uses ``fast_queue=True``
(ZeroMQ between the HTTP server and the worker), which LitServe's own docs recommend above
100 requests per second, with one HTTP server process and one worker, like the mosec targets.
"""

import argparse
import json
import os

import litserve as ls
import numpy as np

SPEC = json.loads(os.environ.get("BENCH_SPEC", '{"kind": "echo"}'))


class EchoAPI(ls.LitAPI):
    """Return the request unchanged."""

    def setup(self, device):
        self.device = device

    def decode_request(self, request):
        return request

    def predict(self, x):
        return x

    def encode_response(self, output):
        return output


class BatchAPI(ls.LitAPI):
    """The same tiny dense layer as ``mosec_server.BatchModel``, once per batch."""

    def setup(self, device):
        self.weights = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)

    def decode_request(self, request):
        return request["x"]

    def predict(self, x):
        inputs = np.asarray(x, dtype=np.float32)
        outputs = np.tanh(inputs @ self.weights).sum(axis=1)
        return [(float(y), len(x)) for y in outputs]

    def encode_response(self, output):
        return {"y": output[0], "batch": output[1]}


def make_api():
    """Build the LitAPI of the scenario named in ``SPEC``."""
    kind = SPEC["kind"]
    if kind == "echo":
        return EchoAPI()
    if kind == "batch":
        return BatchAPI(
            max_batch_size=SPEC["max_batch_size"], batch_timeout=SPEC["max_wait_ms"] / 1e3
        )
    raise SystemExit(f"litserve_server.py: scenario kind {kind!r} is not expressible")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args()
    server = ls.LitServer(make_api(), accelerator="cpu", workers_per_device=1, fast_queue=True)
    server.run(
        host=args.address,
        port=args.port,
        num_api_servers=1,
        generate_client_file=False,
        log_level="warning",
    )
