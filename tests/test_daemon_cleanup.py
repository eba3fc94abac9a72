"""Registered daemons stop with the server also when it never serves.

A server that cannot start (its port is taken) or only dry-runs must not leave the daemons it
was given running: they were registered to live and die with it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from server_util import SERVERS, server_env


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone: it will never run again)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["taken-port", "dry-run"])
def test_daemons_stop_when_the_server_never_serves(tmp_path: Path, how: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        flags = ["--dry-run"] if how == "dry-run" else []
        result = subprocess.run(
            [sys.executable, str(SERVERS / "daemon.py"), "--port", str(port), *flags],
            env=server_env({"TEST_OUT_DIR": str(tmp_path)}),
            capture_output=True,
            text=True,
            timeout=60,
        )
    daemon_pid = int((tmp_path / "daemon.pid").read_text())
    if how == "taken-port":
        assert result.returncode != 0
        assert "Address already in use" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
    assert not _alive(daemon_pid), f"daemon {daemon_pid} outlived the server ({how})"
