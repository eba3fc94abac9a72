"""The ``examples/shm_ipc`` pipelines run as their docstrings say and answer alike."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from redis_util import require_redis_server
from server_util import EXAMPLES, StartServer

SHM_IPC = EXAMPLES / "shm_ipc"


def expected_answer(size: int, seed: int) -> dict:
    """What the second stage must report, computed here with the examples' own stages."""
    spec = importlib.util.spec_from_file_location("tensor_stages", SHM_IPC / "tensor_stages.py")
    assert spec is not None and spec.loader is not None
    stages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stages)
    tensor = stages.normalise_into(np.empty(stages.tensor_shape(size), np.float32), size, seed)
    return stages.summarize(tensor)


@pytest.mark.parametrize("script", ["arena_pipeline.py", "redis_pipeline.py"])
def test_shm_ipc_pipeline(start_server: StartServer, script: str) -> None:
    if script.startswith("redis"):
        require_redis_server()
    server = start_server(SHM_IPC / script)
    for size, seed in ((1024, 7), (3, 1)):  # a 12 MiB tensor, and one small enough to go inline
        response = server.post(json={"size": size, "seed": seed})
        assert response.status_code == 200, response.text
        assert response.json() == expected_answer(size, seed)
    assert server.post(json={"size": 0}).status_code == 422
    redis_pids = [r["redis_pid"] for r in server.json_logs() if "redis_pid" in r]
    assert server.terminate() == 0
    assert bool(redis_pids) == script.startswith("redis")
    for pid in redis_pids:  # the server stopped its daemon and reaped it
        assert not Path(f"/proc/{pid}").exists()
