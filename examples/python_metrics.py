"""Python-side Prometheus metrics from every worker process, with prometheus_client.

The engine serves its own metrics at ``/metrics``. Metrics that the workers count themselves are
collected with prometheus_client's multiprocess mode: each process writes its values under
``PROMETHEUS_MULTIPROC_DIR`` and a small daemon process serves the sum on ``--metrics-port`` (this
script's own flag; the server leaves flags it does not know alone). The daemon is registered with
the server, so the server stops it on exit and stops if it dies.

Run the server::

    python examples/python_metrics.py --port 8000 --metrics-port 8001

then::

    curl -X POST http://127.0.0.1:8000/inference -d '{"text": "count me"}'
    curl http://127.0.0.1:8001/metrics     # example_requests_total{worker="1"} 1.0 ...
"""

import argparse
import multiprocessing
import os
import tempfile
import threading

# Multiprocess mode needs the directory before prometheus_client is imported, in every process.
# The worker processes inherit the variable set here by the server process.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="mosec_prom_"))

from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)

from mosec import Server, Worker  # noqa: E402

REQUESTS = Counter("example_requests", "requests handled", ["worker"])
TEXT_LENGTH = Histogram("example_text_length", "characters per request", buckets=(8, 64, 512))


class CountingEcho(Worker):
    """Echoes the request and counts it."""

    def forward(self, data: dict) -> dict:
        REQUESTS.labels(worker=str(self.worker_id)).inc()
        TEXT_LENGTH.observe(len(str(data.get("text", ""))))
        return data


def serve_metrics(port: int) -> None:
    """The metrics daemon: sum every process's values and serve them until stopped."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
    threading.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--metrics-port", type=int, default=8001)
    own, _ = parser.parse_known_args()
    daemon = multiprocessing.get_context("spawn").Process(
        target=serve_metrics, args=(own.metrics_port,), daemon=True
    )
    daemon.start()
    server = Server()
    server.append_worker(CountingEcho, num=2)
    server.register_daemon("prometheus-metrics", daemon)
    server.run()
