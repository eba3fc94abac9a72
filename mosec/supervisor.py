"""Keeps the worker processes running and stops everything in order.

After the engine has started, the supervisor spawns ``num`` processes per stage and then sleeps in
one ``multiprocessing.connection.wait`` on: each worker's exit sentinel, each worker's "connected"
pipe, each daemon's exit descriptor (a pidfd for a ``Popen``), the engine's stuck-worker
descriptor and a pipe that the signal module writes to on SIGINT/SIGTERM
(``signal.set_wakeup_fd``). Nothing polls.

Stuck workers: the engine times each batch a worker holds, and reports a worker still busy past
its forward timeout plus the engine's ``stuck_grace_ms`` (its ``forward`` swallowed the timeout, or
sits in a C call); it has already answered that batch's requests with 500. The supervisor owns the
processes, so it does the killing: it SIGKILLs the reported worker, only when the pid is that of its
own live child in that stage (an unreaped child's pid cannot have been reused), and the death is
then restarted like any crash.

Restart rule: a worker that dies is restarted (the engine has already failed the requests it held
with 500, or, when they were queued requests of an unbatched stage handed over together, sent each
to a worker again on its own, so that only the one that kills a worker fails). A death counts as a
failed start when the worker never connected or lived less than ``MIN_UPTIME_S``; consecutive
failed starts are restarted with an exponential back-off. When a worker has failed to start
``MAX_FAILED_STARTS`` times in a row and its stage has no live, connected worker left, the stage
cannot be served: the server stops with exit code 1.

A daemon that exits is a store the stages can no longer reach: every request in flight is answered
503 (``service unavailable: store daemon <name> exited``) at once, then the server shuts down.

Shutdown (signal, daemon exit or a failed stage): the engine drains (new requests 503, in-flight
ones finish up to ``--timeout``) and closes the worker links, then each worker gets SIGTERM, a grace
period, then SIGKILL; daemons are stopped the same way. A signal exits 0; a daemon exit or a failed
stage exits 1.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from mosec import coordinator, log
from mosec.config import ServerConfig
from mosec.daemon import Daemon
from mosec.plan import StagePlan, scoped_environment
from mosec.store.settings import WorkerStores

logger = log.get_logger("server")

MAX_FAILED_STARTS = 3
MIN_UPTIME_S = 1.0
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 10.0
#: How long the engine may take to count the workers that told us they connected.
LISTEN_WAIT_MS = 2000
#: How long stopped workers and daemons get between SIGTERM and SIGKILL.
STOP_GRACE_S = 5.0

EXIT_OK = 0
EXIT_FAILED = 1


class _Slot:
    """One worker position (stage, worker_id) and the process currently filling it."""

    def __init__(self, stage: StagePlan, worker_id: int) -> None:
        self.stage = stage
        self.worker_id = worker_id
        self.process: multiprocessing.process.BaseProcess | None = None
        self.reader: Connection | None = None
        self.connected = False
        self.started_at = 0.0
        self.failed_starts = 0
        self.restart_at: float | None = None

    @property
    def name(self) -> str:
        return f"<{self.stage.runtime.name}|{self.worker_id}>"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class Supervisor:
    """Spawns, watches and stops the worker processes and daemons of one server run."""

    def __init__(self, daemons: list[Daemon]) -> None:
        """Prepare supervision.

        Args:
            daemons: the registered daemons to watch and stop.
        """
        self._daemons = daemons
        self._signal: int | None = None
        #: Set by :meth:`request_stop` (the in-process server's exit), from any thread.
        self._stop_requested = False
        #: Set once the engine serves (every worker in), or once supervision has ended.
        self.settled = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._previous: dict[int, Any] = {}
        self._previous_wakeup_fd: int | None = None
        self._slots: list[_Slot] = []
        self._listening = False
        #: Why the engine could not start serving HTTP, when it could not.
        self._listen_error: str | None = None

    def install_signal_handlers(self) -> None:
        """Turn SIGINT/SIGTERM into a wake-up of the supervision loop (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Server.run() is not on the main thread: signals are not handled")
            return
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore_signal_handlers(self) -> None:
        """Put the previous handlers back and close the wake-up pipe."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
        self._previous.clear()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is None:
            self._signal = signum

    def run(
        self,
        engine: Any,
        stages: list[StagePlan],
        socket_path: str,
        config: ServerConfig,
        stores: WorkerStores,
    ) -> int:
        """Spawn the workers, supervise until told to stop, then shut everything down.

        Args:
            engine: the started ``mosec._engine.Engine``.
            stages: the stages in engine order.
            socket_path: the engine's worker socket.
            config: the server's settings (timeout, log level).
            stores: where the workers find the stores.

        Returns:
            The process exit code.
        """
        self._engine = engine
        self._socket_path = socket_path
        self._config = config
        self._stores = stores
        self._slots = [
            _Slot(stage, worker_id)
            for stage in stages
            for worker_id in range(1, stage.runtime.num + 1)
        ]
        self._stuck_fd: int = engine.stuck_workers_fd()
        code = EXIT_FAILED
        try:
            for slot in self._slots:
                if self._signal is None:
                    self._spawn(slot)
            code = self._watch()
        finally:
            self._shutdown(code)
            self.settled.set()
        return code

    @property
    def serving(self) -> bool:
        """Whether every worker came in and the engine serves."""
        return self._listening

    def request_stop(self) -> None:
        """Ask the supervision loop to drain and stop, from another thread."""
        self._stop_requested = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"s")

    def _watch(self) -> int:
        """Wait for events until one of them ends the server; returns the exit code."""
        while True:
            if self._signal is not None:
                logger.info("received %s, shutting down", signal.Signals(self._signal).name)
                return EXIT_OK
            if self._stop_requested:
                logger.info("asked to stop, shutting down")
                return EXIT_OK
            waitables: list[Any] = [self._wake_read, self._stuck_fd]
            waitables += [slot.reader for slot in self._slots if slot.reader is not None]
            waitables += [slot.process.sentinel for slot in self._slots if slot.process]
            waitables += self._daemons
            ready = set(wait(waitables, timeout=self._next_restart_in()))
            if self._wake_read in ready:
                self._drain_wake_pipe()
            if self._stuck_fd in ready:
                self._kill_stuck()
            for daemon in self._daemons:
                if daemon in ready:
                    self._on_daemon_exit(daemon)
                    return EXIT_FAILED
            # Readers first: a worker that connected and then died is a crash, not a failed start.
            for slot in self._slots:
                if slot.reader is not None and slot.reader in ready:
                    self._on_connected(slot)
            if self._listen_error is not None:
                logger.error("cannot serve HTTP: %s; stopping the server", self._listen_error)
                return EXIT_FAILED
            for slot in self._slots:
                if slot.process is not None and slot.process.sentinel in ready:
                    if not self._on_exit(slot):
                        return EXIT_FAILED
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    self._spawn(slot)

    def _on_daemon_exit(self, daemon: Daemon) -> None:
        """Answer every request in flight with 503, before the drain.

        A daemon is a store the stages depend on: what is in flight cannot finish, and letting
        it run into ``--timeout`` would only make clients wait longer for a failure.
        """
        failed = self._engine.fail_inflight(
            503, f"service unavailable: store daemon {daemon.name} exited"
        )
        logger.error(
            "daemon %s (pid %s) exited with code %s; answered %d requests in flight with 503, "
            "shutting down",
            daemon.name,
            daemon.pid,
            daemon.exit_code(),
            failed,
            extra={"daemon": daemon.name},
        )

    def _kill_stuck(self) -> None:
        """SIGKILL the workers the engine found stuck; their deaths restart them as crashes."""
        for stage_index, worker_id, pid, busy_ms in self._engine.stuck_workers():
            slot = next(
                (
                    slot
                    for slot in self._slots
                    if slot.stage.index == stage_index
                    and slot.process is not None
                    and slot.process.pid == pid
                ),
                None,
            )
            if slot is None or slot.process is None:
                logger.debug("stuck worker %d (pid %d) has gone already", worker_id, pid)
                continue
            logger.warning(
                "worker %s (pid %d) stuck in one batch for %.1fs, past its forward timeout of "
                "%ss; its requests got 500, killing it to restart it",
                slot.name,
                pid,
                busy_ms / 1000,
                self._config.forward_timeout_s(slot.stage.runtime.timeout),
                extra={"worker": slot.name, "worker_pid": pid, "stuck_s": busy_ms / 1000},
            )
            slot.process.kill()

    def _next_restart_in(self) -> float | None:
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass

    def _spawn(self, slot: _Slot) -> None:
        runtime = slot.stage.runtime
        ctx: Any = multiprocessing.get_context(runtime.start_method)
        reader, writer = ctx.Pipe(duplex=False)
        env = runtime.env[slot.worker_id - 1] if runtime.env else None
        spec = coordinator.WorkerSpec(
            worker=runtime.worker,
            stage_index=slot.stage.index,
            stage_name=slot.stage.runtime.name,
            # A thread stage's process serves ids base .. base + threads - 1.
            worker_id=(slot.worker_id - 1) * runtime.threads + 1,
            max_batch_size=runtime.max_batch_size,
            timeout_s=self._config.forward_timeout_s(runtime.timeout),
            socket_path=self._socket_path,
            env=env,
            log_level=self._config.log_level,
            log_json=self._config.log_json,
            stores=self._stores,
            chooser=slot.stage.chooser,
            threads=runtime.threads,
            cpus=runtime.cpus[slot.worker_id - 1] if runtime.cpus else None,
        )
        process = ctx.Process(
            target=coordinator.main, args=(spec, writer), name=f"mosec{slot.name}"
        )
        # The variables are in the parent's environment while the child starts, so they are
        # there from the child's first instruction (before the user's module is imported).
        with scoped_environment(env):
            process.start()
        writer.close()
        slot.process = process
        slot.reader = reader
        slot.connected = False
        slot.started_at = time.monotonic()
        slot.restart_at = None
        logger.debug("started worker %s (pid %s)", slot.name, process.pid)

    def _on_connected(self, slot: _Slot) -> None:
        assert slot.reader is not None
        try:
            slot.reader.recv_bytes()
            slot.connected = True
        except (EOFError, OSError):
            pass  # closed without a word: the worker died first; its sentinel tells the rest
        slot.reader.close()
        slot.reader = None
        if not self._listening and all(s.connected for s in self._slots):
            self._listen()

    def _listen(self) -> None:
        """Every worker has warmed up and connected: start accepting HTTP connections.

        The engine checks on its side that it counts every worker too (each one sent HELLO
        before telling us); a worker that died in between makes the wait time out, and its
        replacement's connection brings us back here.
        """
        try:
            self._listening = self._engine.listen(LISTEN_WAIT_MS)
        except OSError as err:
            self._listen_error = str(err)
            return
        if self._listening:
            logger.info("all %d workers connected, the server is ready", len(self._slots))
            self.settled.set()

    def _on_exit(self, slot: _Slot) -> bool:
        """Handle a dead worker; False when its stage cannot be kept alive."""
        assert slot.process is not None
        slot.process.join()
        code = slot.process.exitcode
        lived = time.monotonic() - slot.started_at
        failed_start = not slot.connected or lived < MIN_UPTIME_S
        if slot.reader is not None:
            slot.reader.close()
            slot.reader = None
        slot.process = None
        slot.connected = False
        slot.failed_starts = slot.failed_starts + 1 if failed_start else 0
        if code is not None and code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        streak = f" (failed start {slot.failed_starts} in a row)" if failed_start else ""
        give_up = slot.failed_starts >= MAX_FAILED_STARTS and not any(
            other.alive and other.connected for other in self._slots if other.stage is slot.stage
        )
        logger.warning(
            "worker %s %s after %.1fs%s%s",
            slot.name,
            how,
            lived,
            streak,
            "" if give_up else "; restarting",
        )
        if give_up:
            logger.error(
                "stage %s cannot keep a worker alive: worker %s failed to start %d times in a "
                "row; stopping the server",
                slot.stage.runtime.name,
                slot.name,
                slot.failed_starts,
            )
            return False
        delay = 0.0
        if failed_start:
            delay = min(BACKOFF_FIRST_S * 2 ** (slot.failed_starts - 1), BACKOFF_MAX_S)
        slot.restart_at = time.monotonic() + delay
        return True

    def _shutdown(self, code: int) -> None:
        engine = self._engine
        if code != EXIT_OK and any(slot.failed_starts >= MAX_FAILED_STARTS for slot in self._slots):
            # A stage is gone: its queued requests can only time out, so answer them now.
            engine.fail_inflight(503, "service unavailable: a stage has no worker")
        timeout_ms = self._config.timeout_ms
        logger.info("draining in-flight requests for up to %d ms", timeout_ms)
        if not engine.shutdown(timeout_ms):
            logger.warning("drain timed out; the remaining requests were dropped")
        deadline = time.monotonic() + STOP_GRACE_S
        live = [slot.process for slot in self._slots if slot.process is not None]
        for process in live:
            if process.is_alive():
                process.terminate()
        for process in live:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in live:
            if process.is_alive():
                logger.warning("worker %s did not stop in time: SIGKILL", process.name)
                process.kill()
                process.join(STOP_GRACE_S)
        for slot in self._slots:
            if slot.reader is not None:
                slot.reader.close()
                slot.reader = None
        for daemon in self._daemons:
            daemon.stop(deadline)
        logger.info("server stopped")
