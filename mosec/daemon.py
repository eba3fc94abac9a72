"""A helper process the server watches (``Server.register_daemon``)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import threading
import time
from typing import Any, Union

Proc = Union["subprocess.Popen[Any]", multiprocessing.Process]


class Daemon:
    """A registered daemon: something to wait on and to stop with the server."""

    def __init__(self, name: str, proc: Proc) -> None:
        """Wrap a started process.

        Args:
            name: the name used in log lines.
            proc: a started ``subprocess.Popen`` or ``multiprocessing.Process``.

        Raises:
            TypeError: for any other kind of object.
            ValueError: for a ``multiprocessing.Process`` that was not started.
        """
        if isinstance(proc, multiprocessing.process.BaseProcess):
            if proc.pid is None:
                raise ValueError(f"daemon {name!r}: start the process before registering it")
        elif not isinstance(proc, subprocess.Popen):
            raise TypeError(
                f"daemon {name!r} must be a subprocess.Popen or multiprocessing.Process"
            )
        self.name = name
        self.proc = proc
        self._fd: int | None = None
        self._owned_fd = False

    @property
    def pid(self) -> int | None:
        """The daemon's process id."""
        return self.proc.pid

    def fileno(self) -> int:
        """A descriptor that becomes readable when the daemon exits."""
        if self._fd is None:
            self._fd = self._open_fd()
        return self._fd

    def _open_fd(self) -> int:
        if isinstance(self.proc, multiprocessing.process.BaseProcess):
            return self.proc.sentinel
        self._owned_fd = True
        try:
            return os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            # Kernels before 5.3 have no pidfd: a thread waits and closes a pipe instead.
            read_end, write_end = os.pipe()
            popen = self.proc

            def wait_then_signal() -> None:
                popen.wait()
                os.close(write_end)

            threading.Thread(target=wait_then_signal, daemon=True).start()
            return read_end

    def exit_code(self) -> int | None:
        """The exit code once the daemon has exited (reaping it), else None."""
        if isinstance(self.proc, multiprocessing.process.BaseProcess):
            self.proc.join(0)
            return self.proc.exitcode
        return self.proc.poll()

    def stop(self, deadline: float) -> None:
        """Stop the daemon: SIGTERM, wait until ``deadline`` (monotonic), then SIGKILL."""
        if self.exit_code() is None:
            try:
                self.proc.terminate()
            except ProcessLookupError:
                pass  # exited between the check and the signal
            _wait(self, deadline)
            if self.exit_code() is None:
                self.proc.kill()
                _wait(self, time.monotonic() + 5)
        if self._owned_fd and self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _wait(daemon: Daemon, deadline: float) -> None:
    remaining = max(0.0, deadline - time.monotonic())
    if isinstance(daemon.proc, multiprocessing.process.BaseProcess):
        daemon.proc.join(remaining)
    else:
        try:
            daemon.proc.wait(remaining)
        except subprocess.TimeoutExpired:
            pass
