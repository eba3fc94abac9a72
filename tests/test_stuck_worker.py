"""A worker whose ``forward`` swallows its timeout is killed and restarted; its stage serves again.

``servers/stuck.py``: one ``Model`` process with a 1 s forward timeout, behind an arena stage, so
the stuck worker holds an arena input and owns an arena lease of its own. The engine's grace past
the forward timeout is its default ``stuck_grace_ms``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from arena_util import wait_at_rest
from inflight import Hold, Request
from server_util import Server, StartServer, wait_until

from mosec import _engine

GRACE_S = json.loads(_engine.default_config())["stuck_grace_ms"] / 1000
FORWARD_TIMEOUT_S = 1  # servers/stuck.py's
#: The request deadline: past the forward timeout, well before the worker counts as stuck.
TIMEOUT_MS = 3000


def _gone(pid: int) -> bool:
    """Whether a process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _serves(server: Server) -> dict | None:
    response = server.post(json={"size": 128 * 1024})
    return response.json() if response.status_code == 200 else None


def _spin(server: Server, tmp_path: Path) -> tuple[Request, int]:
    """Send the request that gets the worker stuck; returns it and the stuck worker's pid."""
    # Polled first: on a busy machine the first request (mapping the arena) may miss its deadline.
    wait_until(lambda: _serves(server), 30, "a first answer")
    hold = Hold(tmp_path, "spin")
    swallowed = tmp_path / "swallowed"
    body = {"spin": True, "mark": str(hold.mark), "swallowed": str(swallowed)}
    request = Request(server, json=body)
    pid = hold.wait_inside()
    wait_until(swallowed.exists, 10, "forward to swallow its timeout")
    return request, pid


def test_a_stuck_worker_is_killed_and_replaced(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("stuck.py", "--timeout", str(TIMEOUT_MS))
    first = wait_until(lambda: _serves(server), 30, "a first answer")
    assert first["size"] == 128 * 1024
    spin, stuck_pid = _spin(server, tmp_path)
    assert stuck_pid == first["pid"]
    response = spin.result()
    assert response.status_code == 408, response.text
    # The only worker of the stage is replaced: requests succeed again, served by another pid.
    answer = wait_until(lambda: _serves(server), FORWARD_TIMEOUT_S + GRACE_S + 30, "service again")
    assert answer["pid"] != stuck_pid and answer["size"] == 128 * 1024
    assert _gone(stuck_pid)
    records = server.json_logs()
    engine = [r for r in records if "stuck in a batch" in r.get("message", "")]
    assert len(engine) == 1, server.logs()
    assert engine[0]["level"] == "WARN"
    assert (engine[0]["stage"], engine[0]["worker_id"]) == ("Model_2", 1)
    assert engine[0]["worker_pid"] == stuck_pid
    assert FORWARD_TIMEOUT_S + GRACE_S <= engine[0]["stuck_s"] < FORWARD_TIMEOUT_S + GRACE_S + 5
    killed = [r for r in records if "killing it to restart it" in r.get("message", "")]
    assert len(killed) == 1, server.logs()
    assert killed[0]["level"] == "WARN"
    assert f"worker <Model_2|1> (pid {stuck_pid}) stuck in one batch for" in killed[0]["message"]
    assert killed[0]["stuck_s"] >= FORWARD_TIMEOUT_S + GRACE_S
    restarted = "worker <Model_2|1> was killed by signal 9"
    assert any(
        r.get("message", "").startswith(restarted) and "restarting" in r["message"] for r in records
    ), server.logs()
    # Nothing leaks: no task left, and the arena input the stuck worker held and the lease it
    # owned are freed now that it is gone.
    wait_at_rest(server)
    assert server.terminate() == 0


def test_a_request_held_by_a_stuck_worker_fails_with_500_before_its_deadline(
    start_server: StartServer, tmp_path: Path
) -> None:
    # A deadline long past the forward timeout + grace: the engine, not the deadline, ends it.
    server = start_server("stuck.py", "--timeout", "30000")
    spin, stuck_pid = _spin(server, tmp_path)
    response = spin.result()
    assert response.status_code == 500, response.text
    answer = wait_until(lambda: _serves(server), FORWARD_TIMEOUT_S + GRACE_S + 30, "service again")
    assert answer["pid"] != stuck_pid
    wait_at_rest(server)


def test_shutdown_while_a_worker_is_stuck(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("stuck.py", "--timeout", str(TIMEOUT_MS))
    arenas = list(Path("/dev/shm").glob(f"mosec-arena-{server.pid}-*"))
    assert len(arenas) == 1
    spin, stuck_pid = _spin(server, tmp_path)
    server.proc.send_signal(signal.SIGTERM)
    # The request ends by its deadline or the drain; the server then stops the stuck worker.
    assert spin.result().status_code in (408, 503)
    assert server.wait_exit() == 0, server.logs()
    assert _gone(stuck_pid)
    assert "worker mosec<Model_2|1> did not stop in time: SIGKILL" in server.logs()
    assert not arenas[0].exists(), "the arena file is removed"
