"""The OpenAPI 3.1 document of a server, built from its routes when it starts.

The engine serves it at ``GET /openapi/metadata.json`` and a Swagger UI page for it at
``GET /openapi/swagger/``. Each route is a POST operation:

- request body: the first worker's ``req_mime_type`` with the schema of ``forward``'s data
  annotation; as in mosec, an operation whose first worker leaves that parameter unannotated has
  no ``requestBody``. The body is optional: an empty one runs nothing and is answered 200
  ``no data provided`` (``text/plain``), as mosec 0.9.8 answers it;
- 200: the last worker's ``resp_mime_type`` with the schema of ``forward``'s return annotation
  (no ``content`` when it has none), or ``text/event-stream`` when the route streams; and the
  ``text/plain`` answer to an empty body;
- every error the server can answer, each a ``text/plain`` message: 400, 408, 413, 415, 422, 429
  (with ``retry-after``), 500 and 503. A streaming route answers only the refusals made before
  the stream starts (400, 413, 415, 429, 503); a later error is an event of the stream.

Every response carries an ``x-request-id``: the client's when it is sane, else a new one (a
client's id is never refused, as mosec 0.9.8 refuses none; see ``engine/src/http/request_id.rs``).
Schemas are made by msgspec's JSON Schema generator (JSON Schema 2020-12, which OpenAPI 3.1 uses)
and shared under ``components/schemas``. An annotation of a
:class:`~mosec.mixin.TypedMsgPackMixin` worker must have a schema (the server does not start
otherwise, since requests are decoded by it); any other worker's annotation that has none (a
NumPy array, say) is left out with a warning. ``tests/test_openapi_contract.py`` holds real
servers to their documents with schemathesis.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import msgspec

from mosec import _engine, flow, log
from mosec.flow import Step
from mosec.mixin.typed_msgpack_worker import TypedMsgPackMixin
from mosec.plan import is_streaming
from mosec.runtime import Runtime
from mosec.signature import forward_types

logger = log.get_logger("openapi")

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{name}"

#: The errors every inference route can answer, by status: (component name, description).
_ERRORS = {
    "400": (
        "BadRequest",
        "The body cannot be read or decoded (a corrupt gzip or zstd body, or one the worker "
        "cannot decode), or the worker raised ClientError.",
    ),
    "408": ("Timeout", "No answer within the server's --timeout (or the stage's timeout)."),
    "413": ("TooLarge", "The body is larger than the server's --max-request-size."),
    "415": (
        "UnsupportedEncoding",
        "A content-encoding other than gzip or zstd, or any while compression is off.",
    ),
    "422": (
        "ValidationError",
        "The request does not match its schema, or the worker raised "
        "ValidationError. The message names the field.",
    ),
    "429": (
        "TooManyRequests",
        "More requests in flight than the server's --capacity; retry "
        "after the number of seconds in retry-after.",
    ),
    "500": ("InternalError", "The worker failed (the traceback is in the server's log)."),
    "503": ("Unavailable", "The server is shutting down, or a stage has no worker."),
}

#: What a streaming route can answer besides its stream: the refusals made before it starts.
_STREAM_ERRORS = ("400", "413", "415", "429", "503")

#: The engine's answer to an empty body (``NO_DATA`` in ``engine/src/http/infer.rs``), documented
#: as one more content of every route's 200.
_NO_MIME = _engine.TEXT_PLAIN_MIME
_NO_DATA = {"schema": {"type": "string", "const": "no data provided"}}

_REQUEST_ID_HEADER = {"$ref": "#/components/headers/RequestId"}
_MAX_ID = _engine.REQUEST_ID_MAX_LEN


def build(routes: dict[str, list[Step]]) -> dict[str, Any]:
    """Build the document for a server's routes.

    Args:
        routes: ``{path: [runtime, ...]}`` as registered.

    Returns:
        The OpenAPI document as a JSON-ready dict.

    Raises:
        TypeError: when a typed worker's annotations cannot be resolved or turned into a schema.
    """
    typed = _typed_bodies(routes)
    annotations = list(typed.values())
    schemas, components = msgspec.json.schema_components(annotations, ref_template=_REF)
    schema_of = dict(zip(typed.keys(), schemas))
    paths: dict[str, Any] = {
        "/": {
            "get": _plain_get(
                "readiness",
                "200 from the moment the port accepts.",
                _engine.TEXT_PLAIN_MIME,
                ["503"],  # while the server drains
            )
        },
        "/metrics": {"get": _plain_get("metrics", "Prometheus metrics.", _engine.METRICS_MIME, [])},
    }
    for path, steps in routes.items():
        paths[path] = {"post": _operation(path, steps, schema_of)}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "mosec service",
            "version": _engine.version(),
            "description": "Inference routes served by mosec. With --compression, request "
            "bodies may be gzip or zstd (content-encoding) and responses are compressed by "
            "accept-encoding.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                name: _text_response(description, headers)
                for status, (name, description) in _ERRORS.items()
                for headers in [_error_headers(status)]
            },
            "headers": {
                "RequestId": {
                    "description": "The request's id: the client's x-request-id when it is sane, "
                    "else one the server made. The server's log lines about the request carry it.",
                    "required": True,
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": _MAX_ID,
                        "pattern": "^[!-~]+$",
                    },
                },
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                },
            },
            "parameters": {
                "RequestId": {
                    "name": "x-request-id",
                    "in": "header",
                    "required": False,
                    "description": f"An id for this request, kept when it is 1 to {_MAX_ID} "
                    "visible ASCII characters. Any other value (longer, or with a space or a "
                    "byte that is not ASCII) is replaced by an id the server makes, as a missing "
                    "one is, and never refused (mosec 0.9.8 accepts any). The response's "
                    "x-request-id is the id used.",
                    "schema": {"type": "string"},
                }
            },
        },
    }


def _typed_bodies(routes: dict[str, list[Step]]) -> dict[tuple[str, str], Any]:
    """The annotated type of each request and response: ``{(path, "req"/"resp"): type}``.

    Unannotated boundaries are left out, and so are other workers' annotations that msgspec
    cannot describe; a typed mixin's must be describable.
    """
    found: dict[tuple[str, str], Any] = {}
    for path, steps in routes.items():
        first, last = flow.first_stages(steps)[0], flow.last_stages(steps)[0]
        request = _boundary_type(first, 0, path)
        if request is not Any:
            found[(path, "req")] = request
        if not is_streaming(steps):
            response = _boundary_type(last, 1, path)
            if response is not Any:
                found[(path, "resp")] = response
    return found


def _boundary_type(runtime: Runtime, which: int, path: str) -> Any:
    """``forward``'s request (``which`` 0) or response (1) item type, or ``Any`` to omit it."""
    strict = issubclass(runtime.worker, TypedMsgPackMixin)
    direction = ("request", "response")[which]
    try:
        annotation = forward_types(runtime.worker, runtime.max_batch_size > 1)[which]
        if annotation is not Any:
            msgspec.json.schema(annotation)
    except (TypeError, ValueError) as err:
        if strict:
            raise
        logger.warning("route %s: no %s schema for %s: %s", path, direction, runtime.name, err)
        return Any
    return annotation


def _operation(
    path: str, steps: list[Step], schema_of: dict[tuple[str, str], Any]
) -> dict[str, Any]:
    first, last = flow.first_stages(steps)[0], flow.last_stages(steps)[0]
    if is_streaming(steps):
        ok: dict[str, Any] = {
            "description": "A stream of server-sent events: one `data:` event per event the "
            "worker sends. An error, before or after the first event, arrives as an `error` "
            "event whose data is `SSE inference error: <status>: <reason>: <message>`.",
            "headers": {"x-request-id": _REQUEST_ID_HEADER},
            "content": {_engine.EVENT_STREAM_MIME: {"schema": {"type": "string"}}},
        }
    else:
        ok = {"description": "The result.", "headers": {"x-request-id": _REQUEST_ID_HEADER}}
        if (path, "resp") in schema_of:
            ok["content"] = {last.worker.resp_mime_type: {"schema": schema_of[(path, "resp")]}}
    if "content" in ok:
        ok["description"] += " An empty request body runs nothing: `no data provided`."
        ok["content"].setdefault(_NO_MIME, _NO_DATA)
    responses: dict[str, Any] = {"200": ok}
    for status, (name, _) in _ERRORS.items():
        if status in _STREAM_ERRORS or not is_streaming(steps):
            responses[status] = {"$ref": f"#/components/responses/{name}"}
    operation: dict[str, Any] = {
        "operationId": _operation_id(path),
        "summary": " -> ".join(runtime.name for runtime in dict.fromkeys(flow.runtimes(steps))),
        "description": first.worker.__doc__.strip() if first.worker.__doc__ else "",
        "parameters": [{"$ref": "#/components/parameters/RequestId"}],
    }
    if (path, "req") in schema_of:
        body: dict[str, Any] = {
            "required": False,
            "description": "An empty body runs nothing: it is answered 200 `no data provided`, "
            "as mosec 0.9.8 answers it.",
        }
        body["content"] = {first.worker.req_mime_type: {"schema": schema_of[(path, "req")]}}
        operation["requestBody"] = body
    operation["responses"] = responses
    return operation


def _operation_id(path: str) -> str:
    return "post" + re.sub(r"[^0-9A-Za-z]+", "_", path).rstrip("_")


def _error_headers(status: str) -> dict[str, Any]:
    headers = {"x-request-id": _REQUEST_ID_HEADER}
    if status == "429":
        headers["retry-after"] = {"$ref": "#/components/headers/RetryAfter"}
    return headers


def _text_response(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {_engine.TEXT_PLAIN_MIME: {"schema": {"type": "string"}}},
    }


def _plain_get(operation_id: str, description: str, mime: str, errors: list[str]) -> dict[str, Any]:
    ok = {
        "description": description,
        "headers": {"x-request-id": _REQUEST_ID_HEADER},
        "content": {mime: {"schema": {"type": "string"}}},
    }
    responses: dict[str, Any] = {"200": ok}
    for status in errors:
        responses[status] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
    return {"operationId": operation_id, "description": description, "responses": responses}


#: The files our Swagger UI page loads from the assets folder.
SWAGGER_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css")


def swagger_dir() -> str:
    """The folder of the Swagger UI assets a Python package ships ('' when none is installed).

    swagger-ui-py's assets (Swagger UI 5, which renders OpenAPI 3.1) are preferred when that
    package is installed; swagger-ui-bundle's (Swagger UI 4) otherwise.
    """
    candidates = []
    spec = importlib.util.find_spec("swagger_ui")  # located, not imported: it pulls in jinja2
    if spec is not None and spec.submodule_search_locations:
        candidates += [os.path.join(p, "static") for p in spec.submodule_search_locations]
    try:
        import swagger_ui_bundle

        candidates.append(swagger_ui_bundle.swagger_ui_path)
    except ImportError:
        pass
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, name)) for name in SWAGGER_ASSETS):
            return str(folder)
    return ""
