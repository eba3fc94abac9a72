"""Process trees started in their own session and stopped by PID, never by name.

Every process the harness starts (servers, their workers, redis-server) is the leader of a new
session, so its process group holds the whole tree. ``stop`` asks the leader to shut down
(SIGTERM), then signals the group, then kills it, and finally kills by PID any process ever seen in
the tree that left the group (``setsid`` children). Processes are recognised by PID and creation
time, so a reused PID is never signalled.
"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import psutil

_Key = Tuple[int, float]  # (pid, create_time): a process, robust to PID reuse


class ProcessTree:
    """A command running as the leader of its own process group.

    Attributes:
        argv: the command line.
        log_path: where its stdout and stderr go.
        seen: every process of the tree observed so far, by PID and creation time.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[Path] = None,
    ):
        self.argv = list(argv)
        self.log_path = log_path
        self._env = env
        self._cwd = cwd
        self._proc: Optional[subprocess.Popen] = None
        self.seen: Dict[_Key, psutil.Process] = {}
        self._lock = threading.Lock()  # the resource monitor samples from its own thread

    @property
    def pid(self) -> int:
        """The leader's PID (the process group id too)."""
        if self._proc is None:
            raise RuntimeError("not started")
        return self._proc.pid

    def start(self) -> "ProcessTree":
        """Start the command in a new session, output to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        self.processes()
        return self

    def exit_code(self) -> Optional[int]:
        """The leader's exit code, or ``None`` while it runs."""
        return None if self._proc is None else self._proc.poll()

    def processes(self) -> List[psutil.Process]:
        """The live processes of the tree (leader first); remembers each one in ``seen``."""
        if self._proc is None or self._proc.poll() is not None:
            return self.remaining()
        try:
            leader = psutil.Process(self._proc.pid)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.Error:
            return self.remaining()
        with self._lock:
            for proc in tree:
                try:
                    self.seen.setdefault((proc.pid, proc.create_time()), proc)
                except psutil.Error:
                    continue
        return tree

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the log, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0, first: int = signal.SIGTERM) -> None:
        """Stop the whole tree: ``first`` (SIGTERM) to the leader, SIGTERM to the group, SIGKILL.

        Waits up to ``grace_s`` for a graceful exit, then a short while after each escalation.
        Afterwards no process of the tree is alive (except one that ignores SIGKILL: impossible).
        """
        if self._proc is None:
            return
        self.processes()
        pgid = self._proc.pid
        if self._proc.poll() is None:
            _signal_pid(self._proc, first)
            self._wait_gone(grace_s / 2)
        if self.remaining():
            _signal_group(pgid, signal.SIGTERM)
            self._wait_gone(grace_s / 2)
        if self.remaining():
            _signal_group(pgid, signal.SIGKILL)
            for proc in self.remaining():
                _kill(proc)
            self._wait_gone(5.0)
        try:
            self._proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass

    def remaining(self) -> List[psutil.Process]:
        """Processes ever seen in the tree (the leader among them) that are still alive."""
        with self._lock:
            known = list(self.seen.values())
        return [p for p in known if _alive(p)]

    def _wait_gone(self, timeout_s: float) -> None:
        """Poll until no process of the tree is alive, reaping the leader, or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()
            if not self.remaining():
                return
            time.sleep(0.05)


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has exited; its parent only has to reap it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_pid(popen: subprocess.Popen, sig: int) -> None:
    try:
        popen.send_signal(sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(proc: psutil.Process) -> None:
    try:
        proc.kill()  # psutil checks the creation time: a reused PID is left alone
    except psutil.Error:
        pass
