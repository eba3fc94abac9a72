"""The OpenAPI document tells the truth: schemathesis calls every operation of a real server.

Two servers: ``typed.py`` (typed msgpack routes, a plain JSON route and an event stream) and
``plain_typed.py`` (plain JSON and msgpack workers with annotations, one route a two-stage flow
with batching). Each test loads the server's document over HTTP; schemathesis makes requests
from it, valid ones and (for operations with a body) ones that break the schema, sends them to
the server and checks every answer against the document. The last tests assert the two claims
the document used to get wrong directly: an odd ``x-request-id`` and an empty body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_util import Server, run_server

from mosec import _engine

#: Bounded and deterministic: the same cases on every run, about 20 s for both servers.
EXAMPLES = 30

#: Every answer: no 5xx, a documented status, content type, headers and body; an invalid request
#: refused with a 4xx and a valid one accepted.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]

MADE_ID = re.compile(r"[0-9a-f]{32}")


@schemathesis.serializer("application/msgpack")
def _pack(ctx: Any, value: Any) -> bytes:
    try:
        return msgpack.packb(value)  # type: ignore[no-any-return]
    except OverflowError:
        # An integer beyond 64 bits: msgpack has no way to write it, so no client can send it.
        reject()


@schemathesis.deserializer("application/msgpack")
def _unpack(ctx: Any, response: Any) -> Any:
    return msgpack.unpackb(response.content)


@pytest.fixture(scope="module")
def typed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server("typed.py", log_dir=tmp_path_factory.mktemp("typed")) as server:
        yield server


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server("plain_typed.py", log_dir=tmp_path_factory.mktemp("plain")) as server:
        yield server


@pytest.mark.parametrize("which", ["typed_server", "plain_server"])
def test_every_operation_answers_as_documented(
    which: str, request: pytest.FixtureRequest, subtests: pytest.Subtests
) -> None:
    server: Server = request.getfixturevalue(which)
    api = schemathesis.openapi.from_url(f"{server.url}/openapi/metadata.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 5
    with_bodies = 0
    for operation in operations:
        modes = [schemathesis.GenerationMode.POSITIVE]
        # A request can break the document only through its body: the one header, x-request-id,
        # takes any string, and GET / and /metrics take nothing.
        if operation.get_request_payload_content_types():
            modes.append(schemathesis.GenerationMode.NEGATIVE)
            with_bodies += 1
        for mode in modes:
            with subtests.test(operation=operation.label, mode=mode.value):
                _check(operation, mode)
    assert with_bodies >= 2


def _check(operation: Any, mode: schemathesis.GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # Filtered examples (rejected msgpack integers) and slow ones are expected here.
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    call()


def test_an_odd_request_id_is_replaced_not_refused(typed_server: Server) -> None:
    longest = "i" * 128
    kept = typed_server.post("/json", json={"n": 1}, headers={"x-request-id": longest})
    assert kept.status_code == 200
    assert kept.headers["x-request-id"] == longest
    for odd in ["i" * 129, "has space", "caf\xe9".encode("latin-1")]:
        response = typed_server.post("/json", json={"n": 1}, headers={"x-request-id": odd})
        assert response.status_code == 200, odd
        assert response.json() == {"n": 1}
        assert MADE_ID.fullmatch(response.headers["x-request-id"]), odd
    document = typed_server.client.get("/openapi/metadata.json").json()
    parameter = document["components"]["parameters"]["RequestId"]
    assert parameter["schema"] == {"type": "string"}  # any value, none refused
    assert "replaced" in parameter["description"]
    header = document["components"]["headers"]["RequestId"]
    assert header["schema"]["maxLength"] == 128  # what comes back is always sane


def test_an_empty_body_is_answered_as_the_document_says(
    typed_server: Server, plain_server: Server
) -> None:
    # mosec 0.9.8 runs nothing for an empty body and answers 200 "no data provided", typed
    # routes included (tests/test_upstream_style.py holds the two side by side).
    for server, paths in [
        (plain_server, ("/echo", "/count")),
        (typed_server, ("/typed", "/typed-batch")),
    ]:
        document = server.client.get("/openapi/metadata.json").json()["paths"]
        for path in paths:
            operation = document[path]["post"]
            assert operation["requestBody"]["required"] is False
            no_data = operation["responses"]["200"]["content"][_engine.TEXT_PLAIN_MIME]
            response = server.post(path, content=b"")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == _engine.TEXT_PLAIN_MIME
            assert response.text == no_data["schema"]["const"] == "no data provided"
