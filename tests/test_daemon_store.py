"""A store daemon dies: requests in flight get 503 at once, the server drains and exits non-zero."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path

import redis
from redis_util import require_redis_server
from server_util import StartServer, free_port, wait_until

#: The server's request deadline: far longer than the 503s may take, so a 503 is not a drain
#: that ran into its timeout.
TIMEOUT_MS = 30_000
ANSWER_WITHIN_S = 10.0


def test_killing_redis_fails_in_flight_requests_and_stops_the_server(
    start_server: StartServer, tmp_path: Path
) -> None:
    require_redis_server()
    port = free_port()
    env = {
        "TEST_MIXIN": "redis",
        "TEST_OWN_REDIS_PORT": str(port),
        "TEST_OUT_DIR": str(tmp_path),
        "TEST_SECOND_TIMEOUT_S": "60",
    }
    server = start_server("store_pipeline.py", "--timeout", str(TIMEOUT_MS), env=env)
    # The server stops its daemons when it stops, so redis-server never outlives the test.
    redis_pid = int((tmp_path / "redis.pid").read_text())
    client = redis.Redis(host="127.0.0.1", port=port)
    wait_until(lambda: _answers(client), 20, "the daemon's redis-server")
    assert server.post(json={"kind": "dict", "n": 100_000}).status_code == 200
    # One request inside each stage, both held there until the server stops them.
    hold = tmp_path / "never"
    in_second = {"kind": "dict", "second": {"mark": str(tmp_path / "b"), "hold": str(hold)}}
    in_first = {"kind": "dict", "first": {"mark": str(tmp_path / "a"), "hold": str(hold)}}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        second = pool.submit(server.post, json=in_second)
        wait_until((tmp_path / "b").exists, 20, "a request in the second stage")
        first = pool.submit(server.post, json=in_first)
        wait_until((tmp_path / "a").exists, 20, "a request in the first stage")
        killed_at = time.monotonic()
        os.kill(redis_pid, signal.SIGKILL)
        for future in (first, second):
            response = future.result(timeout=ANSWER_WITHIN_S)
            assert response.status_code == 503
            assert response.text == "service unavailable: store daemon redis exited"
        assert time.monotonic() - killed_at < ANSWER_WITHIN_S
    assert server.wait_exit() != 0
    lines = [record for record in server.json_logs() if record.get("daemon") == "redis"]
    assert lines and lines[0]["level"] == "ERROR", server.logs()
    assert "daemon redis" in lines[0]["message"]


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
