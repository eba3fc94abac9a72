"""Starting, stopping and supervising: drain on SIGTERM, daemons, taken ports, broken workers."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from inflight import Hold, Request
from server_util import StartServer, wait_until


def test_sigterm_drains_then_exits_0(start_server: StartServer, tmp_path: Path) -> None:
    socket_dir = tmp_path / "sockets"
    server = start_server("behave.py", "--timeout", "30000", "--path", str(socket_dir))
    assert (socket_dir / "engine.sock").exists()
    hold = Hold(tmp_path, "inflight")
    inflight = Request(server, json=hold.body(value=1))
    hold.wait_inside()
    server.proc.send_signal(signal.SIGTERM)
    # Draining: the health check and new requests get 503 while the held one is still running.
    wait_until(lambda: server.client.get("/").status_code == 503, 30, "GET / to answer 503")
    refused = server.post(json={"late": True})
    assert refused.status_code == 503
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.headers["server"].startswith("mosec/")
    hold.release()
    response = inflight.result()
    assert response.status_code == 200
    assert response.json()["value"] == 1
    assert server.wait_exit() == 0
    assert not socket_dir.exists(), "the socket directory is removed"


def test_sigint_exits_0_and_removes_the_temporary_socket_dir(start_server: StartServer) -> None:
    server = start_server("behave.py")
    sockets = [record["socket"] for record in server.json_logs() if record.get("socket")]
    assert sockets and os.path.exists(sockets[0])
    server.proc.send_signal(signal.SIGINT)
    assert server.wait_exit() == 0
    for path in sockets:
        assert not os.path.exists(path)


@pytest.mark.parametrize("kind", ["popen", "multiprocessing"])
def test_daemon_exit_stops_the_server(start_server: StartServer, tmp_path: Path, kind: str) -> None:
    args = ["--mp-daemon"] if kind == "multiprocessing" else []
    server = start_server("daemon.py", *args, env={"TEST_OUT_DIR": str(tmp_path)})
    assert server.post(json={"alive": True}).status_code == 200
    daemon_pid = int((tmp_path / "daemon.pid").read_text())
    os.kill(daemon_pid, signal.SIGTERM)
    assert server.wait_exit() != 0
    name = "mp-sidecar" if kind == "multiprocessing" else "popen-sidecar"
    lines = [r for r in server.json_logs() if r.get("daemon") == name]
    assert lines and lines[0]["level"] == "ERROR", server.logs()
    assert name in lines[0]["message"]


def test_taken_port_is_a_clear_error(start_server: StartServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server("behave.py", port=port, wait=False)
        assert server.wait_exit() != 0
    logs = server.logs()
    errors = [r for r in server.json_logs() if r["level"] == "ERROR"]
    assert errors, logs
    assert str(port) in errors[-1]["message"]
    assert "started worker" not in logs and "connected" not in logs


def test_a_worker_that_cannot_start_stops_the_server(start_server: StartServer) -> None:
    server = start_server("crash.py", wait=False)
    assert server.wait_exit(60) != 0
    logs = server.logs()
    assert "this model cannot be loaded" in logs
    assert "cannot keep a worker alive" in logs


def test_a_crash_loop_stops_the_server(start_server: StartServer) -> None:
    server = start_server("crash.py", "--after-connect", wait=False)
    assert server.wait_exit(60) != 0
    logs = server.logs()
    assert "exited with code 3" in logs
    assert "cannot keep a worker alive" in logs


def test_per_worker_env_and_worker_id_in_init(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("env_worker.py", env={"TEST_OUT_DIR": str(tmp_path)})
    seen = {}
    for worker_id in (1, 2):
        seen[worker_id] = json.loads((tmp_path / f"init-{worker_id}.json").read_text())
    assert seen[1]["worker_id"] == 1 and seen[1]["gpu"] == "0"
    assert seen[2]["worker_id"] == 2 and seen[2]["gpu"] == "1"
    assert seen[1]["pid"] != seen[2]["pid"]
    assert seen[1]["stage"] == "EnvWorker_1"  # the stage's name, as in mosec
    assert seen[1]["max_batch_size"] == 1
    # Both workers answer: hold one so the next request goes to the other.
    hold = Hold(tmp_path, "busy")
    busy = Request(server, json=hold.body())
    hold.wait_inside()
    other = server.post(json={}).json()
    hold.release()
    answers = [busy.result().json(), other]
    assert {answer["worker_id"] for answer in answers} == {1, 2}
    assert {answer["gpu"] for answer in answers} == {"0", "1"}


def test_debug_logs_are_readable_text(start_server: StartServer) -> None:
    server = start_server("behave.py", "--debug")
    server.post(json={"raise": "other"})
    wait_until(lambda: "RuntimeError" in server.logs(), 10, "the traceback in the log")
    python_lines = [line for line in server.logs().splitlines() if " mosec." in line]
    assert python_lines
    assert not any(line.startswith("{") for line in python_lines)
    assert any(" DEBUG " in line for line in python_lines)


def _gone(pid: int) -> bool:
    """Whether a process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_exit_when_the_server_is_killed(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("env_worker.py", env={"TEST_OUT_DIR": str(tmp_path)})
    pids = [json.loads((tmp_path / f"init-{n}.json").read_text())["pid"] for n in (1, 2)]
    assert not any(_gone(pid) for pid in pids)
    os.kill(server.pid, signal.SIGKILL)
    server.wait_exit()
    # The engine's end of each worker link closed with the process: the workers see EOF.
    wait_until(lambda: all(_gone(pid) for pid in pids), 30, "the orphaned workers to exit")


def test_every_start_method_serves(start_server: StartServer) -> None:
    server = start_server("start_methods.py")
    pids = set()
    for method in ("spawn", "fork", "forkserver"):
        response = server.post(f"/{method}", json={})
        assert response.status_code == 200, response.text
        pids.add(response.json()["pid"])
    assert len(pids) == 3 and server.pid not in pids
    assert server.terminate() == 0
