"""Multi-stage pipelines, shared stages and the IPC mixins."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import msgpack
from server_util import StartServer


def test_three_stages_with_batching_in_the_middle(start_server: StartServer) -> None:
    server = start_server("pipeline.py", "--timeout", "10000")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda n: server.post(json={"n": n}), range(32)))
    assert all(response.status_code == 200 for response in responses)
    traces = [response.json() for response in responses]
    assert sorted(trace["n"] for trace in traces) == list(range(32))
    for trace in traces:
        names = [step[0] for step in trace["trace"]]
        assert names == ["pre", "infer", "post"]
        stages = [step[1] for step in trace["trace"]]
        assert stages == ["Preprocess_1", "Inference_2", "Postprocess_3"]
        assert trace["trace"][0][2] in (1, 2)
    sizes = [trace["trace"][1][3] for trace in traces]
    assert all(1 <= size <= 4 for size in sizes)
    stage_sizes = server.metric("mosec_service_batch_size_count")
    assert stage_sizes >= 8  # 32 items in batches of at most 4


def test_an_error_skips_the_remaining_stages(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("pipeline.py")
    reached = tmp_path / "reached-post"
    response = server.post(json={"reject": str(reached)})
    assert response.status_code == 422
    assert response.text == "request validation error: rejected by the middle stage"
    # The next request goes all the way through, so a reject would have reached "post" by now.
    assert server.post(json={"n": 1}).status_code == 200
    assert not reached.exists()


def test_msgpack_and_a_stage_shared_by_two_routes(start_server: StartServer) -> None:
    server = start_server("mixins.py")
    for path in ("/msgpack", "/shared"):
        response = server.post(path, content=msgpack.packb({"blob": b"\x00\x01", "n": 3}))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/msgpack"
        assert msgpack.unpackb(response.content) == {
            "echo": {"blob": b"\x00\x01", "n": 3},
            "stage": "MsgpackEcho_1",
        }
    response = server.post("/msgpack", content=b"\xc1")  # 0xc1 is never valid msgpack
    assert response.status_code == 400
    assert response.text == "decoding error: decoding error"


def test_numbin_carries_arrays_between_stages(start_server: StartServer) -> None:
    server = start_server("mixins.py")
    response = server.post("/numbin", json={"values": [1.5, 2.5, 3]})
    assert response.status_code == 200
    assert response.json() == {"sum": 7.0, "dtype": "float32", "shape": [3]}
