"""mpservice's ``mpserver`` (0.16.8) on the mosec engine: a drop-in with the same API.

Replace ``from mpservice.mpserver import ...`` by ``from mosec.mpserver import ...``. The servlet
tree becomes one mosec route: each ``ProcessServlet`` or ``ThreadServlet`` a stage (its processes,
or threads of one process), a ``SequentialServlet`` a line of stages, an ``EnsembleServlet`` an
ensemble and a ``SwitchServlet`` a switch; the engine batches, routes, queues, enforces each call's
deadline and restarts a worker that dies (failing the items it held). Only pickled payloads cross
it. ``docs/mpserver-contract.md`` is the contract, ``docs/features.md`` what differs on purpose.
"""

import logging
import multiprocessing

from mosec.mpserver.aio import AsyncServer
from mosec.mpserver.errors import EnsembleError, ServerBacklogFull, TimeoutError
from mosec.mpserver.server import Server
from mosec.mpserver.servlets import (
    EnsembleServlet,
    ProcessServlet,
    SequentialServlet,
    Servlet,
    SwitchServlet,
    ThreadServlet,
)
from mosec.mpserver.worker import PassThrough, Worker, make_worker

__all__ = [
    "Worker",
    "make_worker",
    "PassThrough",
    "Servlet",
    "ProcessServlet",
    "ThreadServlet",
    "SequentialServlet",
    "EnsembleServlet",
    "SwitchServlet",
    "Server",
    "AsyncServer",
    "EnsembleError",
    "ServerBacklogFull",
    "TimeoutError",
]

# As mpservice does on import: the standard multiprocessing logger's warnings go to stderr.
multiprocessing.log_to_stderr(logging.WARNING)
