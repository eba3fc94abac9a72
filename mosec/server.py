"""The user's entry point: describe the pipelines, then run the server.

``Server.run()`` parses the flags, starts the Rust engine (HTTP and the worker socket) and then the
worker processes, and supervises them until a signal, a daemon's exit or a stage that cannot keep a
worker alive ends the server; see :mod:`mosec.supervisor`. With ``--dry-run`` it runs the routes'
examples through their stages instead, without HTTP (see :mod:`mosec.dry_run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Union

# The dry run, the OpenAPI document and the store layer (numpy, msgspec) are imported where
# they are used: a worker process re-imports the user's script, and with it this module, but
# needs none of them, so they stay off every worker's start-up.
from mosec import _engine, log
from mosec.args import parse_arguments
from mosec.config import ServerConfig
from mosec.daemon import Daemon
from mosec.flow import Ensemble, Step, Switch
from mosec.local import LocalClient
from mosec.plan import StagePlan, check_flow, check_path, plan
from mosec.runtime import Runtime
from mosec.store.settings import WorkerStores
from mosec.supervisor import Supervisor
from mosec.worker import Worker

logger = log.get_logger("server")

DEFAULT_ROUTE = "/inference"
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
#: Seconds a registered daemon gets to stop after SIGTERM before SIGKILL.
DAEMON_STOP_GRACE_S = 5.0


class Server:
    """A model server: routes of worker stages behind the Rust engine.

    Example::

        server = Server()
        server.append_worker(Preprocess, num=2)
        server.append_worker(Inference, max_batch_size=16)
        server.run()
    """

    def __init__(self) -> None:
        """Create an empty server; add workers before :meth:`run`."""
        self._routes: dict[str, list[Step]] = {}
        self._daemons: list[Daemon] = []

    def append_worker(
        self,
        worker: type[Worker],
        num: int = 1,
        max_batch_size: int = 1,
        max_wait_time: int = 0,
        start_method: str = "spawn",
        env: Union[None, list[dict[str, str]]] = None,
        timeout: int = 0,
        route: Union[str, list[str]] = DEFAULT_ROUTE,
    ) -> None:
        """Add a stage at the end of a route's pipeline, or of several routes' pipelines.

        Args:
            worker: the :class:`Worker` subclass.
            num: how many processes run this stage.
            max_batch_size: the largest batch given to ``forward``; 1 means no batching.
            max_wait_time: milliseconds a batch waits for more items; 0 means ``--wait``.
            start_method: ``spawn``, ``fork`` or ``forkserver``.
            env: one dict of environment variables per process.
            timeout: seconds one ``forward`` may take (408 past it); 0 means ``--timeout``.
            route: the POST path this stage belongs to, or a list of paths: the stage is then
                shared by those routes (one pool of processes batching requests from all).

        Raises:
            ValueError: when a path is reserved (``/``, ``/metrics``, ``/openapi...``) or
                does not start with ``/``.
        """
        paths = [route] if isinstance(route, str) else list(dict.fromkeys(route))
        if not paths:
            raise ValueError("route must name at least one path")
        for path in paths:
            check_path(path)
        runtime = Runtime(worker, num, max_batch_size, max_wait_time, timeout, start_method, env)
        for path in paths:
            self._routes.setdefault(path, []).append(runtime)

    def register_runtime(self, routes: dict[str, list[Step]]) -> None:
        """Add routes, each with its pipeline of runtimes (and ensembles and switches).

        A :class:`Runtime` object used in several routes is one shared stage: one pool of
        processes that batches requests from all those routes together. Whether it is a route's
        first or last stage is decided per route. A step may also be a
        :class:`~mosec.Ensemble` or a :class:`~mosec.Switch` (see :mod:`mosec.flow`). Example::

            shared = Runtime(Embed, max_batch_size=16)
            server.register_runtime({
                "/v1/inference": [Runtime(Preprocess), shared, Runtime(Postprocess)],
                "/inference": [Runtime(Tokenize), shared],
                "/vote": [Runtime(Preprocess), Ensemble([Runtime(A), Runtime(B)]), Runtime(Vote)],
            })

        Args:
            routes: ``{path: [step, ...]}``.

        Raises:
            ValueError: when a route is empty, already registered, reserved (``/``,
                ``/metrics``, ``/openapi...``), ends with an ensemble, or streams through an
                ensemble or a switch.
        """
        for path, steps in routes.items():
            self._add_route(path, steps, http=True)

    def _add_route(self, path: str, steps: Sequence[Step], http: bool) -> None:
        """Check and add one route.

        ``http=False`` is a route only called in process: it may end with an ensemble, whose
        joined outputs the caller splits with :func:`mosec.flow.split_joined`.
        """
        check_path(path)
        if path in self._routes:
            raise ValueError(f"route {path!r} is already registered")
        if not isinstance(steps, (list, tuple)) or not all(
            isinstance(step, (Runtime, Ensemble, Switch)) for step in steps
        ):
            raise ValueError(f"route {path!r} needs a list of Runtime, Ensemble or Switch")
        check_flow(path, steps, http)
        self._routes[path] = list(steps)

    def register_daemon(
        self, name: str, proc: Union[subprocess.Popen[Any], multiprocessing.Process]
    ) -> None:
        """Watch a helper process: when it exits, the server drains and exits non-zero.

        The daemon is stopped (SIGTERM, then SIGKILL) when the server stops.

        Args:
            name: the name used in log lines.
            proc: a started ``subprocess.Popen`` or ``multiprocessing.Process``.
        """
        self._daemons.append(Daemon(name, proc))

    def run(self) -> None:
        """Parse the flags, start everything and serve until stopped.

        Returns normally after SIGINT/SIGTERM and a drain; exits the process with a non-zero code
        when the server cannot start, a daemon exits, or a stage cannot keep a worker alive.
        With ``--dry-run`` it serves nothing: it runs the routes' examples through their stages,
        prints the timings and returns, or exits with 1 when a stage fails.
        """
        config = ServerConfig.from_flags(parse_arguments()[0])
        log.configure(config.log_level, json_lines=config.log_json)
        try:
            code = self._run(config)
        finally:
            # Registered daemons stop with the server on every path, also when it never served
            # (a dry run, a taken port); stopping an already stopped daemon does nothing.
            deadline = time.monotonic() + DAEMON_STOP_GRACE_S
            for daemon in self._daemons:
                daemon.stop(deadline)
        if code:
            sys.exit(code)

    def _run(self, config: ServerConfig) -> int:
        if not self._routes:
            logger.error("no worker: call append_worker or register_runtime before run")
            return 2
        if config.dry_run:
            from mosec import dry_run

            return dry_run.run(self._routes, config)
        # Signals are handled from here on, so a Ctrl-C during start-up still cleans up.
        try:
            socket_dir, owned = _socket_dir(config.path)
        except OSError as err:
            logger.error("cannot create the socket directory %r: %s", config.path, err)
            return 2
        supervisor = Supervisor(self._daemons)
        supervisor.install_signal_handlers()
        code = 1
        try:
            code = self._serve(config, supervisor, os.path.join(socket_dir, "engine.sock"))
        finally:
            supervisor.restore_signal_handlers()
            if owned:
                shutil.rmtree(socket_dir, ignore_errors=True)
            else:
                _remove(os.path.join(socket_dir, "engine.sock"))
        return code

    def _serve(self, config: ServerConfig, supervisor: Supervisor, socket_path: str) -> int:
        started = self._start_engine(config, socket_path)
        if isinstance(started, int):
            return started
        engine, stages, workers = started
        return supervisor.run(engine, stages, socket_path, config, workers)

    def _start_engine(
        self, config: ServerConfig, socket_path: str
    ) -> tuple[Any, list[StagePlan], WorkerStores] | int:
        """Start the engine for the routes; what the supervisor needs, or an exit code."""
        if len(socket_path.encode()) > _MAX_SOCKET_PATH:
            logger.error(
                "socket path %r is too long for a Unix socket; use a shorter --path", socket_path
            )
            return 2
        from mosec import openapi
        from mosec.store import settings as store_settings

        try:
            stages, routes = plan(self._routes)
            document = json.dumps(openapi.build(self._routes))
        except (TypeError, ValueError) as err:
            logger.error("cannot describe the routes: %s", err)
            return 2
        try:
            stores = store_settings.engine_settings(stage.runtime.worker for stage in stages)
            engine = _engine.Engine(
                json.dumps(
                    config.engine_config(
                        socket_path=socket_path,
                        openapi=document,
                        swagger_dir=openapi.swagger_dir(),
                        stages=[
                            stage.engine_config(config.forward_timeout_s(stage.runtime.timeout))
                            for stage in stages
                        ],
                        routes=routes,
                        **stores,
                    )
                )
            )
            engine.start()
        except (ValueError, OSError) as err:
            logger.error("cannot start the server on %s:%s: %s", config.address, config.port, err)
            return 1
        logger.info(
            "engine started on %s:%s; it accepts connections once every worker is in",
            config.address,
            engine.port(),  # the bound one, when --port 0 asked the OS to pick
            extra={"routes": [route["path"] for route in routes], "socket": socket_path},
        )
        return (
            engine,
            stages,
            store_settings.for_workers(engine, stores, config.shm_wait_ms, config.shm_alloc_min),
        )

    @contextlib.contextmanager
    def local(
        self,
        *,
        timeout: float | None = None,
        capacity: int | None = None,
        max_request_size: int | None = None,
        log_level: str | None = None,
        shm_size: int | None = None,
        shm_wait_ms: int | None = None,
    ) -> Iterator[LocalClient]:
        """Run the server in this process, with no HTTP clients, for in-process calls.

        The engine and the worker processes start as for :meth:`run` (its batching, queues and
        stages are the same); the block is entered once every worker is in. No command-line
        flag is read (``MOSEC_*`` variables are). Example::

            with server.local() as client:
                answer = client.call(b'{"text": "hi"}').json()

        Args:
            timeout: the deadline of a call in seconds (``--timeout`` when omitted).
            capacity: the most calls in flight; one more is answered 429.
            max_request_size: the largest call body in bytes (413 past it).
            log_level: ``debug``, ``info``, ``warning`` or ``error`` for the engine and workers.
            shm_size: the arena's bytes (``--shm-size``), when a stage uses it.
            shm_wait_ms: how long a producer waits for room in a full arena (``--shm-wait``).

        Raises:
            RuntimeError: a stage cannot start, or the engine cannot (the log says why).
        """
        args, _ = parse_arguments([])
        config = ServerConfig.from_flags(args)
        overrides: dict[str, Any] = {"address": "127.0.0.1", "port": 0, "dry_run": False}
        if timeout is not None:
            overrides["timeout_ms"] = max(1, int(timeout * 1000))
        if capacity is not None:
            overrides["capacity"] = capacity
        if max_request_size is not None:
            overrides["max_request_size"] = max_request_size
        if log_level is not None:
            overrides["log_level"] = log_level
        if shm_size is not None:
            overrides["shm_size"] = shm_size
        if shm_wait_ms is not None:
            overrides["shm_wait_ms"] = shm_wait_ms
        config = dataclasses.replace(config, **overrides)
        if not self._routes:
            raise RuntimeError("no worker: call append_worker or register_runtime first")
        socket_dir = tempfile.mkdtemp(prefix="mosec_")
        supervisor = Supervisor(self._daemons)
        try:
            started = self._start_engine(config, os.path.join(socket_dir, "engine.sock"))
            if isinstance(started, int):
                raise RuntimeError("the in-process server cannot start: see the log")
            engine, stages, workers = started
            socket_path = os.path.join(socket_dir, "engine.sock")
            result: list[int] = []
            thread = threading.Thread(
                target=lambda: result.append(
                    supervisor.run(engine, stages, socket_path, config, workers)
                ),
                name="mosec-supervisor",
                daemon=True,
            )
            thread.start()
            supervisor.settled.wait()
            if not supervisor.serving:
                thread.join()
                raise RuntimeError("the in-process server cannot start: a stage has no worker")
            client = LocalClient(engine, config.timeout_ms)
            try:
                yield client
            finally:
                client.close()
                supervisor.request_stop()
                thread.join()
                client.join()
        finally:
            supervisor.restore_signal_handlers()
            shutil.rmtree(socket_dir, ignore_errors=True)
            deadline = time.monotonic() + DAEMON_STOP_GRACE_S
            for daemon in self._daemons:
                daemon.stop(deadline)


def _socket_dir(path: str | None) -> tuple[str, bool]:
    """The directory for the worker socket, and whether the server made it (and removes it)."""
    if not path:
        return tempfile.mkdtemp(prefix="mosec_"), True
    if os.path.isdir(path):
        return path, False
    os.makedirs(path)
    return path, True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
