"""Each example runs as its docstring says."""

from __future__ import annotations

import concurrent.futures
import re

import httpx
import msgpack
from httpx_sse import connect_sse
from server_util import EXAMPLES, StartServer, free_port, wait_until


def test_echo_pipeline(start_server: StartServer) -> None:
    server = start_server(EXAMPLES / "echo_pipeline.py")
    answer = server.post(json={"text": "hello"}).json()
    assert answer["text"] == "hello"
    assert [step.split()[0] for step in answer["steps"]] == [
        "preprocess",
        "inference",
        "postprocess",
    ]
    assert answer["batch"] >= 1


def test_gpu_env(start_server: StartServer) -> None:
    server = start_server(EXAMPLES / "gpu_env.py")
    answer = server.post(json={}).json()
    assert answer["device"] == str(answer["worker_id"] - 1)


def test_validate_request(start_server: StartServer) -> None:
    server = start_server(EXAMPLES / "validate_request.py")
    assert server.post(json={"text": "hi", "repeat": 3}).json() == {"text": "hi hi hi"}
    response = server.post(json={"text": "hi", "repeat": 0})
    assert response.status_code == 422
    assert response.text == (
        "request validation error: repeat must be an integer from 1 to 10, got 0"
    )
    assert server.post(json={"text": "hi", "color": "red"}).status_code == 422
    assert server.post(content=b"{oops").status_code == 400


def test_python_metrics(start_server: StartServer) -> None:
    metrics_port = free_port()
    server = start_server(EXAMPLES / "python_metrics.py", "--metrics-port", str(metrics_port))
    for text in ("a", "bb", "ccc"):
        assert server.post(json={"text": text}).status_code == 200

    def counted() -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        samples = re.findall(r"^example_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
        return sum(float(value) for value in samples)

    assert wait_until(lambda: counted() == 3.0, 30, "three requests in the Python metrics")


def test_stream_tokens(start_server: StartServer) -> None:
    server = start_server(EXAMPLES / "stream_tokens.py")

    def stream(max_tokens: int) -> list[str]:
        body = {"prompt": "go", "max_tokens": max_tokens}
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            with connect_sse(client, "POST", "/inference", json=body) as source:
                return [sse.data for sse in source.iter_sse()]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        streams = list(pool.map(stream, [3, 5, 7]))
    for count, tokens in zip([3, 5, 7], streams):
        assert tokens == "once upon a time a tiny server".split()[:count]


def test_multi_route(start_server: StartServer) -> None:
    server = start_server(EXAMPLES / "multi_route.py")
    plain = server.post("/inference", json={"text": "Hello World"}).json()
    versioned = server.post("/v1/inference", json={"text": "Hello World"}).json()
    assert len(plain["embedding"]) == 4
    assert versioned["model"] == "toy-embed" and versioned["dimensions"] == 4
    # /v1 lower-cases first, so its embedding differs from the raw text's.
    assert versioned["embedding"] != plain["embedding"]
    lower = server.post("/inference", json={"text": "hello world"}).json()
    assert versioned["embedding"] == lower["embedding"]


def test_typed_validation(start_server: StartServer) -> None:
    server = start_server(EXAMPLES / "typed_validation.py")
    ok = server.post(content=msgpack.packb({"text": "hi", "repeat": 3}))
    assert ok.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(ok.content) == {"text": "hi hi hi", "length": 8}
    bad = server.post(content=msgpack.packb({"text": "hi", "repeat": "3"}))
    assert bad.status_code == 422
    assert bad.text == "request validation error: Expected `int`, got `str` - at `$.repeat`"
    out_of_range = server.post(content=msgpack.packb({"text": "hi", "repeat": 0}))
    assert out_of_range.status_code == 422
    assert out_of_range.text.endswith("Expected `int` >= 1 - at `$.repeat`")
    document = server.client.get("/openapi/metadata.json").json()
    assert document["components"]["schemas"]["Request"]["properties"]["repeat"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "default": 1,
    }
