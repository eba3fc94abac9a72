"""mosec: high-throughput model serving with a Rust controller and Python workers.

A mosec 0.9 script runs unchanged::

    from mosec import Server, Worker

    class Echo(Worker):
        def forward(self, data):
            return data

    if __name__ == "__main__":
        server = Server()
        server.append_worker(Echo)
        server.run()
"""

from mosec._engine import version as _engine_version
from mosec.errors import (
    ClientError,
    DecodingError,
    EncodingError,
    MosecError,
    MosecTimeoutError,
    ServerError,
    StreamCancelled,
    ValidationError,
)
from mosec.flow import Ensemble, Switch
from mosec.local import LocalClient, LocalResponse
from mosec.log import get_logger
from mosec.runtime import Runtime
from mosec.server import Server
from mosec.worker import SSEWorker, Worker

__version__: str = _engine_version()

__all__ = [
    "ClientError",
    "DecodingError",
    "EncodingError",
    "Ensemble",
    "LocalClient",
    "LocalResponse",
    "MosecError",
    "MosecTimeoutError",
    "Runtime",
    "SSEWorker",
    "Server",
    "ServerError",
    "StreamCancelled",
    "Switch",
    "ValidationError",
    "Worker",
    "__version__",
    "get_logger",
]
