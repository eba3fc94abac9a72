"""Upstream-style scripts run side by side on this package and on mosec 0.9.8, with one answer.

Each test runs one script of ``tests/servers/upstream_style/`` (written for this project in the
shapes of mosec's own examples) on both packages and asserts the same statuses, bodies, events,
documents and metric labels of each: what a mosec user wrote cannot tell the two apart.
"""

from __future__ import annotations

import concurrent.futures
import re
import subprocess
import sys
import time

import httpx
import pytest
from httpx_sse import connect_sse
from server_util import REPO, SERVERS, Server, StartServer, server_env

UPSTREAM_STYLE = SERVERS / "upstream_style"


@pytest.fixture(params=["ours", "upstream"])
def runtime(request: pytest.FixtureRequest) -> str:
    """The package under test: this one, or mosec 0.9.8 in its own virtual environment."""
    if request.param == "upstream":
        request.getfixturevalue("upstream_mosec")
    return str(request.param)


@pytest.fixture
def serve(start_server: StartServer, runtime: str) -> StartServer:
    """``start_server`` for the scripts of ``upstream_style/`` on the runtime under test."""

    def start(script: str, *args: str, **kwargs: object) -> Server:
        return start_server(UPSTREAM_STYLE / script, *args, runtime=runtime, **kwargs)

    return start


def test_a_batching_stage_warms_up_on_its_batch_shaped_example(serve: StartServer) -> None:
    server = serve("echo.py")
    response = server.post(json={"delay": 0.01})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{\n  "slept": 0.01\n}'  # mosec's JSON, indented by 2
    refused = server.post(json={})
    assert refused.status_code == 422
    assert refused.text == "request validation error: missing key 'delay'"
    delays = [0.001 * n for n in range(1, 7)]
    with concurrent.futures.ThreadPoolExecutor(len(delays)) as pool:
        answers = list(pool.map(lambda d: server.post(json={"delay": d}), delays))
    assert [answer.json() for answer in answers] == [{"slept": d} for d in delays]


def test_any_x_request_id_is_served(serve: StartServer) -> None:
    # mosec ignores the header, so none may be refused: ours keeps a sane one, replaces the rest.
    server = serve("echo.py")
    for odd in ["i" * 129, "has space", "caf\xe9".encode("latin-1"), "", "i" * 4096]:
        response = server.post(json={"delay": 0}, headers={"x-request-id": odd})
        assert response.status_code == 200, odd
        assert response.json() == {"slept": 0.0}


def test_multi_examples_of_batches_and_a_worker_id_reassigned_in_init(serve: StartServer) -> None:
    server = serve("batch_examples.py")
    # Each multi_examples entry reached forward whole: batches of 1 and of 3.
    assert server.post(json={"values": [1, 2]}).json() == {
        "values": [2.0, 4.0],
        "warmed": [1, 3],
        "worker": 1,
    }


def test_an_sse_route_whose_first_stage_rejects_answers_one_error_event(
    serve: StartServer,
) -> None:
    server = serve("sse_reject.py")
    assert _events(server, {}) == [
        (
            "error",
            "SSE inference error: 422: Unprocessable Content: request validation error: "
            "text is required",
        )
    ]
    assert _events(server, {"text": "ab"}) == [("message", "a"), ("message", "b")]


def test_an_empty_body_runs_nothing_and_is_answered_no_data_provided(serve: StartServer) -> None:
    for script in ("echo.py", "sse_reject.py"):  # a plain route and a streaming one
        server = serve(script)
        response = server.post(content=b"")
        assert (response.status_code, response.text) == (200, "no data provided"), script


def test_openapi_shapes_of_untyped_and_typed_routes(serve: StartServer) -> None:
    server = serve("openapi_shapes.py")
    document = server.client.get("/openapi/metadata.json").json()
    untyped = document["paths"]["/untyped"]["post"]
    assert "requestBody" not in untyped
    assert "content" not in untyped["responses"]["200"]
    typed = document["paths"]["/typed"]["post"]
    schema = _resolve(document, typed["requestBody"]["content"]["application/msgpack"]["schema"])
    assert set(schema["properties"]) == {"name", "count"}
    assert schema["required"] == ["name"]
    assert "content" not in typed["responses"]["200"]  # forward returns Any
    redirect = server.client.get("/openapi/swagger")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/openapi/swagger/"
    page = server.client.get("/openapi/swagger/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


def test_error_bodies_are_mosec_s(serve: StartServer) -> None:
    server = serve("errors.py")
    cases = [
        ({"json": {"raise": "client"}}, 400, "bad request: bad request"),
        ({"json": {"raise": "server"}}, 500, "internal error: first line - second line"),
        ({"json": {"raise": "unencodable"}}, 500, "encoding error: encoding error"),
        ({"content": b"{not json"}, 400, "decoding error: decoding error"),
    ]
    for request, status, body in cases:
        response = server.post(**request)
        assert (response.status_code, response.text) == (status, body), request


def test_metrics_carry_mosec_s_labels(serve: StartServer) -> None:
    server = serve("echo.py")
    for delay in (0, 0.001, 0.002):
        assert server.post(json={"delay": delay}).status_code == 200
    response = server.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for stage in ("Parse_1", "Nap_2", "Reply_3"):
        labels = {"stage": stage, "connection": "1"}
        assert _sample(text, "mosec_service_process_duration_second_count", labels) >= 3
    assert _sample(text, "mosec_service_batch_size_count", {"stage": "Nap_2", "connection": "1"})
    total = {"stage": "total", "connection": "total"}
    assert _sample(text, "mosec_service_process_duration_second_count", total) == 3
    assert _sample(text, "mosec_service_throughput_total", {"code": "200"}) == 3


def test_no_connection_is_accepted_before_every_worker_is_in(
    serve: StartServer, runtime: str
) -> None:
    server = serve("slow_start.py", wait=False)
    outcomes = []
    deadline = time.monotonic() + 60
    while not outcomes or outcomes[-1] == "refused":
        assert time.monotonic() < deadline, f"never answered:\n{server.logs()}"
        assert server.proc.poll() is None, f"exited:\n{server.logs()}"
        try:
            outcomes.append(httpx.get(f"{server.url}/", timeout=5).status_code)
        except httpx.ConnectError:
            outcomes.append("refused")
            time.sleep(0.02)  # a client's polling interval, not synchronisation
    # Refused while Load loaded (1.5 s), then 200 and served at once: never a 503 or a hang.
    assert outcomes.count("refused") == len(outcomes) - 1 >= 1
    assert outcomes[-1] == 200
    assert server.post(json={"n": 1}).json() == {"n": 1, "picky": True}
    # Picky's warm-up failed on its list example: logged, and the server serves anyway.
    logs = server.logs()
    if runtime == "ours":
        assert "<Picky_2|1> warm-up failed on example 1 of 1 (of type list)" in logs
        assert "KeyError" not in logs and "TypeError" in logs
    else:
        assert "warmup failed" in logs


def test_a_dry_run_fails_where_the_warm_up_fails() -> None:
    # The dry run is the strict check: the warm-up the server only logs fails it.
    result = subprocess.run(
        [sys.executable, str(UPSTREAM_STYLE / "slow_start.py"), "--dry-run"],
        cwd=REPO,
        env=server_env({"SLOW_START_S": "0"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED at route /inference, stage 2 of 2 (Picky_2) during warm-up" in result.stdout
    assert "warm-up failed on example 1 of 1 (of type list)" in result.stdout


def _events(server: Server, body: dict[str, object]) -> list[tuple[str, str]]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        with connect_sse(client, "POST", "/inference", json=body) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            return [(sse.event, sse.data) for sse in source.iter_sse()]


def _resolve(document: dict[str, object], schema: dict[str, object]) -> dict[str, object]:
    """Follow a ``#/components/schemas/...`` reference."""
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    node: object = document
    for part in ref.removeprefix("#/").split("/"):
        assert isinstance(node, dict)
        node = node[part]
    assert isinstance(node, dict)
    return node


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if all(found.get(key) == value for key, value in labels.items()):
                total += float(match.group(2))
    return total
