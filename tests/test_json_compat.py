"""The default JSON ``serialize`` and ``deserialize`` answer exactly what mosec 0.9.8's do.

mosec 0.9.8 encodes with ``json.dumps(data, indent=2).encode()`` and decodes with
``json.loads(data) if data else {}``, any exception being mosec's encoding error (500) or
decoding error (400). Ours encodes plain values in the extension (``_engine.dumps_indent2``) and
must still give the same bytes, the same content type, and the same errors, over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_util import StartServer
from servers.json_cases import CASES

from mosec import Worker, _engine
from mosec.errors import DecodingError, EncodingError

ENCODING_ERROR = "encoding error: encoding error"
DECODING_ERROR = "decoding error: decoding error"

#: The cases the extension encodes itself; every other one is left to json.
FAST = {
    "echo",
    "empties",
    "scalars",
    "float_notation",
    "non_finite",
    "big_ints",
    "escapes",
    "unicode",
    "unicode_keys",
    "tuple",
    "at_the_depth_limit",
    "bare_string",
    "bare_number",
    "bare_null",
}

#: Request bodies json.loads accepts, each decoded as json.loads does.
GOOD_BODIES = [
    b"",
    b'{"id": 7, "text": "hello mosec", "tags": ["a", "b"]}',
    b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400}',
    b'{"big": 123456789012345678901234567890, "neg": -98765432109876543210987654321}',
    b'{"k": 1, "k": 2}',
    b'\xef\xbb\xbf{"bom": 1}',
    '{"utf16": "é"}'.encode("utf-16"),
    '{"utf32": "é"}'.encode("utf-32-le"),
    b'  \n{"ws": true}\t ',
    b'{"esc": "\\ud83d\\ude00 \\u00e9 \\n", "lone": "\\ud800", "raw": "\xc3\xa9"}',
    b"[1, 2.50, -0.0, 1E2]",
    b'"bare"',
    b"3",
    b"null",
]

#: Request bodies json.loads rejects: all a 400 with mosec's body.
BAD_BODIES = [
    b"{bad",
    b"   ",
    b'{"a": 1} trailing',
    b"\x80abc",
    b'{"a": "\xff"}',
    b'{"ctrl": "a\x01b"}',
    b"[" * 100_000,
    b"{'single': 1}",
    b"[1,]",
]


class _Plain(Worker):
    def forward(self, data: Any) -> Any:
        return data


def _upstream(value: Any) -> bytes | None:
    """mosec 0.9.8's ``serialize``; None where it raises (its encoding error)."""
    try:
        return json.dumps(value, indent=2).encode()
    except Exception:
        return None


@pytest.mark.parametrize("name", sorted(CASES))
def test_serialize_is_json_dumps_indent_2(name: str) -> None:
    expected = _upstream(CASES[name])
    if expected is None:
        with pytest.raises(EncodingError):
            _Plain().serialize(CASES[name])
    else:
        assert _Plain().serialize(CASES[name]) == expected


def test_the_extension_encodes_the_plain_values_and_declines_the_rest() -> None:
    taken = {name for name, value in CASES.items() if _engine.dumps_indent2(value) is not None}
    assert taken == FAST
    for name in taken:
        assert _engine.dumps_indent2(CASES[name]) == _upstream(CASES[name]), name


@pytest.mark.parametrize("body", GOOD_BODIES)
def test_deserialize_accepts_what_json_loads_does(body: bytes) -> None:
    decoded = _Plain().deserialize(body)
    expected = json.loads(body) if body else {}
    assert repr(decoded) == repr(expected)


@pytest.mark.parametrize("body", BAD_BODIES)
def test_deserialize_rejects_what_json_loads_does(body: bytes) -> None:
    with pytest.raises(DecodingError):
        _Plain().deserialize(body)


def test_answers_over_http_are_upstreams_bytes(start_server: StartServer) -> None:
    server = start_server("json_compat.py")
    for name, value in CASES.items():
        response = server.post(json={"case": name})
        expected = _upstream(value)
        if expected is None:
            assert (response.status_code, response.text) == (500, ENCODING_ERROR), name
        else:
            assert response.status_code == 200, (name, response.text)
            assert response.content == expected, name
            assert response.headers["content-type"] == "application/json", name


def test_request_bodies_over_http_decode_as_json_loads(start_server: StartServer) -> None:
    server = start_server("json_compat.py")
    # Not the empty body: what the engine does with one is the engine's, not deserialize's.
    for body in filter(None, GOOD_BODIES):
        response = server.post("/decoded", content=body)
        expected = json.loads(body) if body else {}
        assert response.status_code == 200, (body, response.text)
        assert response.json() == {"type": type(expected).__name__, "repr": repr(expected)}
    for body in BAD_BODIES:
        response = server.post("/decoded", content=body)
        assert (response.status_code, response.text) == (400, DECODING_ERROR), body[:40]
        assert response.headers["content-type"].startswith("text/plain"), body[:40]
