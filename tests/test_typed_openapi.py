"""Typed msgpack validation, the OpenAPI document and the Swagger UI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, List

import msgpack
import pytest
from openapi_spec_validator import validate
from server_util import Server, run_server

from mosec import Worker
from mosec.signature import forward_types

ROUTES = ["/typed", "/typed-batch", "/json", "/events"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One typed.py server shared by the tests of this module."""
    with run_server("typed.py", log_dir=tmp_path_factory.mktemp("typed")) as running:
        yield running


@pytest.mark.parametrize("path", ["/typed", "/typed-batch"])
def test_a_valid_request_is_decoded_into_the_annotated_type(server: Server, path: str) -> None:
    response = server.post(path, content=msgpack.packb({"name": "Ada", "age": 36}))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(response.content) == {"text": "hello Ada", "adult": True}


@pytest.mark.parametrize("path", ["/typed", "/typed-batch"])
def test_a_mismatch_is_422_naming_the_field(server: Server, path: str) -> None:
    response = server.post(path, content=msgpack.packb({"name": "Ada", "age": "old"}))
    assert response.status_code == 422
    assert response.text == "request validation error: Expected `int`, got `str` - at `$.age`"
    response = server.post(path, content=msgpack.packb({"age": 3}))
    assert response.status_code == 422
    assert "`name`" in response.text


def test_a_body_that_is_not_msgpack_is_400(server: Server) -> None:
    response = server.post("/typed", content=b"\xc1")
    assert response.status_code == 400
    assert response.text.startswith("decoding error: MessagePack data is malformed")


def test_the_openapi_document_validates_and_lists_every_route(server: Server) -> None:
    response = server.client.get("/openapi/metadata.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert set(ROUTES) <= set(document["paths"])
    every = {"200", "400", "408", "413", "415", "422", "429", "500", "503"}
    for path in ROUTES:
        assert set(document["paths"][path]["post"]["responses"]) == (
            # A stream answers 200 once it starts; a later error is an event of the stream.
            {"200", "400", "413", "415", "429", "503"} if path == "/events" else every
        )
    assert set(document["paths"]["/metrics"]["get"]["responses"]) == {"200"}
    assert set(document["paths"]["/"]["get"]["responses"]) == {"200", "503"}


def test_typed_routes_carry_their_schemas(server: Server) -> None:
    document = server.client.get("/openapi/metadata.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["Person"]["required"] == ["name", "age"]
    assert schemas["Person"]["properties"]["age"] == {"type": "integer"}
    assert set(schemas["Greeting"]["properties"]) == {"text", "adult"}
    for path in ("/typed", "/typed-batch"):
        operation = document["paths"][path]["post"]
        request = operation["requestBody"]["content"]["application/msgpack"]["schema"]
        assert request == {"$ref": "#/components/schemas/Person"}
        answer = operation["responses"]["200"]["content"]["application/msgpack"]["schema"]
        assert answer == {"$ref": "#/components/schemas/Greeting"}
    # An unannotated worker: no requestBody and a 200 without content, as in mosec.
    plain = document["paths"]["/json"]["post"]
    assert "requestBody" not in plain
    assert "content" not in plain["responses"]["200"]
    events = document["paths"]["/events"]["post"]["responses"]["200"]["content"]
    # The stream, and the plain answer to an empty body.
    assert list(events) == ["text/event-stream", "text/plain; charset=utf-8"]
    too_many = document["components"]["responses"]["TooManyRequests"]
    assert "retry-after" in too_many["headers"]


def test_swagger_ui_loads_its_assets_from_this_server(server: Server) -> None:
    page = server.client.get("/openapi/swagger/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Relative to the page, so served by us: no CDN, it works offline.
    assert 'href="swagger-ui.css"' in page.text
    assert 'src="swagger-ui-bundle.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        response = server.client.get(f"/openapi/swagger/{asset}")
        assert response.status_code == 200
        assert len(response.content) > 1000
    assert (
        server.client.get("/openapi/swagger/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert "/openapi/metadata.json" in page.text


def test_swagger_assets_come_from_an_installed_package() -> None:
    from mosec.openapi import SWAGGER_ASSETS, swagger_dir

    folder = Path(swagger_dir())
    assert all((folder / name).is_file() for name in SWAGGER_ASSETS)


class _Typed(Worker):
    def forward(self, data: List[int]) -> list[str]:
        return [str(item) for item in data]


class _Bare(Worker):
    def forward(self, data):
        return data


def test_list_annotations_unwrap_only_when_batching() -> None:
    assert forward_types(_Typed, batched=True) == (int, str)
    assert forward_types(_Typed, batched=False) == (List[int], list[str])
    assert forward_types(_Bare, batched=True) == (Any, Any)
