"""Every status code the server answers, with its body, content type and ``server`` header."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from server_util import Server, run_server, wait_until

import mosec

TIMEOUT_MS = 3000
MAX_REQUEST_SIZE = 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One behave.py server shared by the tests of this module."""
    log_dir = tmp_path_factory.mktemp("status")
    args = ("--timeout", str(TIMEOUT_MS), "--max-request-size", str(MAX_REQUEST_SIZE))
    with run_server("behave.py", *args, log_dir=log_dir) as running:
        yield running


def assert_text_error(response, code: int) -> None:
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["server"] == f"mosec/{mosec.__version__}"
    assert response.text


def test_ok_is_json_with_the_server_header(server: Server) -> None:
    response = server.post(json={"hello": "world", "n": [1, 2]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["server"] == f"mosec/{mosec.__version__}"
    assert response.json() == {"hello": "world", "n": [1, 2]}


def test_an_empty_body_runs_nothing_and_is_answered_no_data_provided(server: Server) -> None:
    # As mosec 0.9.8's controller answers it (tests/test_upstream_style.py, side by side).
    response = server.post(content=b"")
    assert response.status_code == 200
    assert response.text == "no data provided"


@pytest.mark.parametrize(
    ("kind", "code", "prefix"),
    [
        ("client", 400, "bad request"),
        ("decoding", 400, "decoding error"),
        ("validation", 422, "request validation error"),
        ("server", 500, "internal error"),
        ("encoding", 500, "encoding error"),
    ],
)
def test_mosec_errors_give_their_code_and_message(
    server: Server, kind: str, code: int, prefix: str
) -> None:
    response = server.post(json={"raise": kind})
    assert_text_error(response, code)
    assert response.text == f"{prefix}: asked to raise {kind}"


def test_other_exceptions_are_500_with_a_fixed_body(server: Server) -> None:
    response = server.post(json={"raise": "other"})
    assert_text_error(response, 500)
    assert response.text == "inference internal error"
    # The traceback is in the log, not in the response.
    assert "a bug in user code" not in response.text
    assert "RuntimeError: a bug in user code" in server.logs()


def test_malformed_json_is_a_decoding_error(server: Server) -> None:
    response = server.post(content=b"{not json")
    assert_text_error(response, 400)
    assert response.text == "decoding error: decoding error"


def test_unencodable_result_is_an_encoding_error(server: Server) -> None:
    response = server.post(json={"unencodable": True})
    assert_text_error(response, 500)
    assert response.text == "encoding error: encoding error"


def test_forward_own_timeout_is_408(server: Server) -> None:
    start = time.monotonic()
    response = server.post("/fwd-timeout", json={"sleep": 10})
    elapsed = time.monotonic() - start
    assert_text_error(response, 408)
    assert response.text.startswith("mosec timeout error")
    # The worker's 1 s timeout fired, well before the engine's --timeout.
    assert elapsed < TIMEOUT_MS / 1000, elapsed
    # The worker was freed by its timeout and answers the next request.
    assert server.post("/fwd-timeout", json={"again": 1}).json() == {"again": 1}


def test_request_timeout_is_408(server: Server) -> None:
    start = time.monotonic()
    response = server.post("/slow", json={"sleep": 6})
    elapsed = time.monotonic() - start
    assert_text_error(response, 408)
    assert TIMEOUT_MS / 1000 * 0.9 <= elapsed < 6, elapsed


def test_body_over_the_limit_is_413(server: Server) -> None:
    assert server.post(content=b"1" * MAX_REQUEST_SIZE).status_code == 200
    response = server.post(content=b"1" * (MAX_REQUEST_SIZE + 1))
    assert_text_error(response, 413)


def test_unknown_path_is_404(server: Server) -> None:
    assert_text_error(server.client.get("/nope"), 404)
    assert_text_error(server.post("/nope", json={}), 404)


def test_wrong_method_is_405(server: Server) -> None:
    assert_text_error(server.client.get("/inference"), 405)
    assert_text_error(server.client.put("/inference", json={}), 405)


def test_health_and_metrics_carry_the_server_header(server: Server) -> None:
    for path in ("/", "/metrics"):
        response = server.client.get(path)
        assert response.status_code == 200
        assert response.headers["server"] == f"mosec/{mosec.__version__}"
        assert response.headers["content-type"]
    assert server.metric("mosec_service_remaining_task") == 0


def test_throughput_is_counted_by_code_and_endpoint(server: Server) -> None:
    before = server.metric("mosec_service_throughput_total", code="422", endpoint="/inference")
    server.post(json={"raise": "validation"})
    after = server.metric("mosec_service_throughput_total", code="422", endpoint="/inference")
    assert after == before + 1


def test_logs_are_json_lines(server: Server) -> None:
    server.post(json={"raise": "other"})
    wait_until(lambda: "RuntimeError" in server.logs(), 10, "the traceback in the log")
    records = server.json_logs()
    assert records, server.logs()
    for record in records:
        assert {"timestamp", "level", "target", "message"} <= set(record)
    python_records = [r for r in records if r["target"].startswith("mosec.")]
    assert python_records
    for record in python_records:
        assert record["timestamp"].endswith("Z")
        assert record["level"] in {"DEBUG", "INFO", "WARN", "ERROR"}
        assert isinstance(record["pid"], int)
    traceback = [r for r in python_records if "RuntimeError" in r.get("exception", "")]
    assert traceback, "the traceback of the 500 is logged as a JSON field"
