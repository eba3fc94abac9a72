"""Several routes: a stage shared (and batched) across routes, reserved paths refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from inflight import Hold, Request
from server_util import REPO, StartServer, server_env, wait_until

from mosec import Runtime, Server, Worker


def test_a_shared_stage_batches_requests_from_both_routes(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("multi_route.py", "--timeout", "30000")
    # Hold the shared stage's only worker, queue requests from both routes behind it, release.
    gate = Hold(tmp_path, "gate")
    blocker = Request(server, "/inference", json=gate.body())
    gate.wait_inside()
    tagged = [tmp_path / f"tagged-{n}" for n in range(6)]
    paths = ["/v1/inference", "/inference"] * 3
    requests = [
        Request(server, path, json={"n": n, "tagged": str(mark)}, headers={"x-request-id": f"r{n}"})
        for n, (path, mark) in enumerate(zip(paths, tagged))
    ]
    wait_until(lambda: all(mark.exists() for mark in tagged), 30, "every request tagged")
    gate.release()
    assert blocker.result().status_code == 200
    answers = [request.result() for request in requests]
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    bodies = [answer.json() for answer in answers]
    for path, body in zip(paths, bodies):
        # The shared stage is the last one of /inference and the middle one of /v1/inference.
        assert body["via"] == ("v1" if path == "/v1/inference" else "plain")
        assert body.get("finished", False) == (path == "/v1/inference")
        assert body["stage"] == "Shared_1"  # one stage, one name, whichever route it serves
    mixed = [body["batch"] for body in bodies if {"v1", "plain"} <= set(body["batch"])]
    assert mixed, f"no batch held requests of both routes: {[b['batch'] for b in bodies]}"
    assert all(len(batch) > 1 for batch in mixed)
    # A batch's log lines carry the ids of all its requests.
    sizes = [r for r in server.json_logs() if r["message"].startswith("shared batch of")]
    batched = [r["request_id"] for r in sizes if isinstance(r.get("request_id"), list)]
    assert batched, sizes
    assert {f"r{n}" for n in range(6)} <= {rid for ids in batched for rid in ids}


class _Echo(Worker):
    def forward(self, data):
        return data


@pytest.mark.parametrize("path", ["/", "/metrics", "/openapi", "/openapi/custom", "inference"])
def test_reserved_paths_are_refused_when_registered(path: str) -> None:
    server = Server()
    with pytest.raises(ValueError, match="route"):
        server.append_worker(_Echo, route=path)
    with pytest.raises(ValueError, match="route"):
        server.register_runtime({path: [Runtime(_Echo)]})
    with pytest.raises(ValueError, match="reserved|start"):
        server.append_worker(_Echo, route=["/fine", path])


def test_append_worker_can_share_a_stage_between_routes() -> None:
    server = Server()
    server.append_worker(_Echo, route="/a")
    server.append_worker(_Echo, max_batch_size=4, route=["/a", "/b"])
    a, b = server._routes["/a"], server._routes["/b"]
    assert len(a) == 2 and len(b) == 1
    assert a[1] is b[0], "one Runtime, so one stage"


def test_a_script_with_a_reserved_route_fails_with_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "reserved.py"
    script.write_text(
        "from mosec import Server, Worker\n"
        "class Echo(Worker):\n"
        "    def forward(self, data):\n"
        "        return data\n"
        "server = Server()\n"
        "server.append_worker(Echo, route='/metrics')\n"
        "server.run()\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "route '/metrics' is reserved by the server" in result.stderr
