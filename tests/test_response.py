"""Handler result -> HTTP response (SPEC §4, §5): the pure rules, then through the ASGI app."""

from __future__ import annotations

import base64
import collections
import datetime
import enum
import json
import logging
from typing import Any

import pytest

from sf_asgi._response import (
    MALFORMED_MESSAGE,
    MAX_PAYLOAD,
    MalformedResult,
    error_body,
    render_result,
    result_text,
    serialise,
)

from .conftest import client, returning


def render(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    response = render_result(json.dumps(result))
    return response.status, [(k.decode(), v.decode()) for k, v in response.headers], response.body


VALID: list[tuple[Any, int, list[tuple[str, str]], bytes]] = [
    (None, 200, [], b""),
    ({}, 200, [], b""),
    ({"statusCode": 0}, 200, [], b""),
    ({"statusCode": None, "body": None, "headers": None, "isBase64Encoded": None}, 200, [], b""),
    ({"body": "hi"}, 200, [], b"hi"),
    ({"statusCode": 201, "body": "made"}, 201, [], b"made"),
    ({"statusCode": 404, "body": "привет"}, 404, [], "привет".encode()),
    ({"statusCode": 599}, 599, [], b""),
    ({"statusCode": 200, "unknown": [1, 2], "cookies": ["a=b"]}, 200, [], b""),
    ({"statusCode": 200, "headers": {"content-type": "text/html"}}, 200, [("Content-Type", "text/html")], b""),
    ({"headers": {"X-Empty": None}}, 200, [("X-Empty", "")], b""),
    ({"headers": {"X-Utf8": "значение"}}, 200, [("X-Utf8", "значение")], b""),
    ({"headers": {"x_custom": "1"}}, 200, [("X_custom", "1")], b""),
    # Two names that differ in case only are one header: the last value, where the first stood.
    ({"headers": {"x-a": "1", "X-B": "2", "X-A": "3"}}, 200, [("X-A", "3"), ("X-B", "2")], b""),
    ({"headers": {"Host": "h", "X-A": "1", "Date": "d"}}, 200, [("X-A", "1"), ("X-Yf-Remapped-Date", "d")], b""),
    ({"headers": {"X-Tab": "a\tb"}}, 200, [("X-Tab", "a\tb")], b""),
    # Spaces and tabs around a value are trimmed, as Go's server trims them; inside, they stay.
    ({"headers": {"X-A": " v "}}, 200, [("X-A", "v")], b""),
    ({"headers": {"X-A": "\t a b \t"}}, 200, [("X-A", "a b")], b""),
    ({"headers": {"X-A": "   "}}, 200, [("X-A", "")], b""),
    (
        {"multiValueHeaders": {"Set-Cookie": [" a=1", "b=2\t"]}},
        200,
        [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
        b"",
    ),
    ({"multiValueHeaders": {"X-A": ["1", "2"]}}, 200, [("X-A", "1"), ("X-A", "2")], b""),
    ({"multiValueHeaders": {"X-A": None}}, 200, [], b""),
    ({"multiValueHeaders": {"X-A": ["1", None]}}, 200, [("X-A", "1"), ("X-A", "")], b""),
    # multiValueHeaders wins over headers, whatever the letter case.
    (
        {"headers": {"x-a": "h", "X-B": "b"}, "multiValueHeaders": {"X-A": ["m"]}},
        200,
        [("X-A", "m"), ("X-B", "b")],
        b"",
    ),
    ({"headers": {"X-A": "h"}, "multiValueHeaders": {"x-a": []}}, 200, [], b""),
    (
        {"multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2, c"]}},
        200,
        [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2, c")],
        b"",
    ),
    ({"body": base64.b64encode(b"\x89PNG\x00\xff").decode(), "isBase64Encoded": True}, 200, [], b"\x89PNG\x00\xff"),
    ({"body": "aGVs\nbG8=", "isBase64Encoded": True}, 200, [], b"hello"),  # Go ignores line breaks
    ({"body": "", "isBase64Encoded": True}, 200, [], b""),
    ({"body": "aGVsbG8=", "isBase64Encoded": False}, 200, [], b"aGVsbG8="),
    ({"statusCode": 204, "body": "dropped"}, 204, [], b""),
    ({"statusCode": 304, "body": "dropped"}, 304, [], b""),
    ({"body": "\ud800x"}, 200, [], "\ufffdx".encode()),
]


@pytest.mark.parametrize(("result", "status", "headers", "body"), VALID)
def test_valid_results(result: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    assert render(result) == (status, headers, body)


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("Host", None),
        ("Authorization", None),
        ("User-Agent", None),
        ("Connection", None),
        ("Max-Forwards", None),
        ("Cookie", None),
        ("Content-Length", None),  # sf_asgi computes it
        ("content-md5", "X-Yf-Remapped-Content-Md5"),
        ("Date", "X-Yf-Remapped-Date"),
        ("SERVER", "X-Yf-Remapped-Server"),
        ("WWW-Authenticate", "X-Yf-Remapped-Www-Authenticate"),
        ("Content-Type", "Content-Type"),
        ("Location", "Location"),
    ],
)
@pytest.mark.parametrize("field", ["headers", "multiValueHeaders"])
def test_removed_and_remapped_response_headers(name: str, wire: str | None, field: str) -> None:
    value: Any = "v" if field == "headers" else ["v"]
    _, headers, _ = render({field: {name: value, "X-Kept": value}})
    expected = [(wire, "v")] if wire else []
    assert headers == [*expected, ("X-Kept", "v")]


MALFORMED: list[tuple[Any, str]] = [
    ([1, 2], "an array"),
    ("just text", "a string"),
    (200, "a number"),
    (True, "a boolean"),
    ({"statusCode": "200"}, "statusCode must be an integer"),
    ({"statusCode": 200.0}, "statusCode must be an integer"),
    ({"statusCode": 0.0}, "statusCode must be an integer"),
    ({"statusCode": True}, "statusCode must be an integer"),
    ({"statusCode": False}, "statusCode must be an integer"),
    ({"statusCode": [200]}, "statusCode must be an integer"),
    ({"statusCode": 99}, "statusCode 99"),
    ({"statusCode": 100}, "statusCode 100"),
    ({"statusCode": 600}, "statusCode 600"),
    ({"statusCode": -200}, "statusCode -200"),
    ({"statusCode": 10**30}, "statusCode 1000"),
    ({"body": {"a": 1}}, "body must be a string"),
    ({"body": ["a"]}, "body must be a string"),
    ({"body": 42}, "body must be a string"),
    ({"body": b"bytes".decode(), "isBase64Encoded": "true"}, "isBase64Encoded must be true or false"),
    ({"isBase64Encoded": 1}, "isBase64Encoded must be true or false"),
    ({"body": "not base64!", "isBase64Encoded": True}, "not valid base64"),
    ({"body": "aGVsbG8", "isBase64Encoded": True}, "not valid base64"),  # padding is required
    ({"headers": ["X-A", "1"]}, "headers must be an object"),
    ({"headers": "X-A: 1"}, "headers must be an object"),
    ({"headers": {"X-A": 1}}, "headers['X-A'] must be a string"),
    ({"headers": {"X-A": ["1"]}}, "headers['X-A'] must be a string"),
    ({"headers": {"X-A": True}}, "headers['X-A'] must be a string"),
    ({"multiValueHeaders": {"X-A": "1"}}, "multiValueHeaders['X-A'] must be a list"),
    ({"multiValueHeaders": {"X-A": [1]}}, "multiValueHeaders['X-A'] holds a number"),
    ({"multiValueHeaders": ["X-A"]}, "multiValueHeaders must be an object"),
    ({"headers": {"Proxy-Authenticate": "Basic"}}, "Proxy-Authenticate is not allowed"),
    ({"headers": {"transfer-encoding": "chunked"}}, "transfer-encoding is not allowed"),
    ({"multiValueHeaders": {"Via": ["1.1 proxy"]}}, "Via is not allowed"),
    ({"headers": {"X-A": "1\r\nSet-Cookie: evil=1"}}, "control character"),
    ({"headers": {"X-A": "1\nX-B: 2"}}, "control character"),
    ({"headers": {"X-A": "nul\x00"}}, "control character"),
    ({"multiValueHeaders": {"X-A": ["ok", "bad\r"]}}, "control character"),
    ({"headers": {"X-A\r\nX-B": "1"}}, "not a valid HTTP header name"),
    ({"headers": {"Bad Name": "1"}}, "not a valid HTTP header name"),
    ({"headers": {"": "1"}}, "not a valid HTTP header name"),
    ({"headers": {"Имя": "1"}}, "not a valid HTTP header name"),
    ({"statusCode": 200, "extra": float("nan")}, "NaN"),
    ({"body": float("inf")}, "Infinity"),
]


@pytest.mark.parametrize(("result", "reason"), MALFORMED)
def test_malformed_results(result: Any, reason: str) -> None:
    with pytest.raises(MalformedResult, match=reason.replace("[", r"\[").replace("]", r"\]")):
        render_result(json.dumps(result))


class Status(enum.IntEnum):
    OK = 200


class Text(str):
    pass


ODD_TYPES: list[Any] = [
    {"statusCode": Status.OK, "body": "enum status"},
    {"body": Text("str subclass")},
    {"headers": collections.OrderedDict([("X-A", "1")])},
    {"multiValueHeaders": {"Set-Cookie": ("a=1", "b=2")}},
    {"headers": {"X-A": Text("1")}},
    {"statusCode": 200, "headers": {1: "int key"}},
    {"statusCode": 200, "extra": float("nan")},
    {"body": "NaN is just text here"},
    (1, 2),
]


def outcome(*args: Any) -> Any:
    """What render_result gives: the response, or the MalformedResult's message."""
    try:
        return render_result(*args)
    except MalformedResult as exc:
        return str(exc)


@pytest.mark.parametrize("result", [r for r, *_ in VALID] + [r for r, _ in MALFORMED] + ODD_TYPES)
def test_reading_the_object_answers_as_reading_its_text(result: Any) -> None:
    text = json.dumps(result)
    assert outcome(text, result) == outcome(text)


@pytest.mark.parametrize("result", [r for r, *_ in VALID] + [r for r, _ in MALFORMED] + ODD_TYPES)
def test_skipping_the_serialisation_answers_as_the_runtime_would(result: Any) -> None:
    # serialise() skips json.dumps only where the object reads exactly as its text would.
    text = serialise(result)
    if text is not None:
        assert text == json.dumps(result)
    assert outcome(text, result) == outcome(json.dumps(result))
    assert result_text(result, text) == json.dumps(result)


@pytest.mark.parametrize(
    ("result", "plain"),
    [
        (None, True),
        ({"statusCode": 200, "headers": {"A": "b"}, "multiValueHeaders": {"C": ["d", None]}, "body": "x"}, True),
        ({"statusCode": 200, "isBase64Encoded": False, "body": None, "headers": None}, True),
        ({"statusCode": 200, "extra": 1}, False),  # a field the platform does not read: serialised
        ({"statusCode": True}, False),
        ({"statusCode": 10**30}, False),
        ({"body": "x" * (MAX_PAYLOAD // 12 + 1)}, False),  # might be near the limit: measured
        ({"headers": {"A": "é" * 100}}, True),
        ([200], False),
    ],
)
def test_what_counts_as_plain(result: Any, plain: bool) -> None:
    assert (serialise(result) is None) is plain


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": 200, "extra": object()},
        {"statusCode": 200, "headers": {"A": b"bytes"}},
        {"body": {1, 2}},
    ],
)
def test_results_the_runtime_cannot_serialise(result: Any) -> None:
    with pytest.raises(TypeError):
        serialise(result)


@pytest.mark.anyio
async def test_an_unserialisable_result_is_an_error_in_user_code() -> None:
    async with client(returning({"statusCode": 200, "body": "x", "extra": object()})) as http:
        response = await http.get("/")
    assert response.status_code == 502
    assert response.headers["x-function-error"] == "true"
    assert response.json()["errorType"] == "TypeError"


def test_error_body_has_message_type_and_frames() -> None:
    def inner() -> None:
        raise KeyError("lyrics")

    try:
        inner()
    except KeyError as exc:
        body = error_body(exc)
    assert body["errorMessage"] == "'lyrics'"
    assert body["errorType"] == "KeyError"
    trace = body["stackTrace"]
    assert all(isinstance(line, str) and line.startswith('  File "') for line in trace)
    assert trace[-1].endswith('in inner\n    raise KeyError("lyrics")\n')


# Through the app: the 502s the platform sends, and the log naming the field.


@pytest.mark.anyio
@pytest.mark.parametrize(("result", "reason"), MALFORMED)
async def test_malformed_results_through_the_app(result: Any, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    async with client(returning(result)) as http:
        response = await http.get("/")
        again = await http.get("/")  # and the instance keeps serving
    assert response.status_code == again.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert "x-function-error" not in response.headers
    assert response.json() == {
        "errorMessage": MALFORMED_MESSAGE,
        "errorType": "ProxyIntegrationError",
        "payload": json.dumps(result),
    }
    assert any(reason in record.getMessage() for record in caplog.records if record.name == "sf_asgi")


@pytest.mark.anyio
async def test_set_cookie_lines_reach_the_client_separately() -> None:
    app = returning({"multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2; HttpOnly"]}, "body": "ok"})
    async with client(app) as http:
        response = await http.get("/")
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert response.cookies["a"] == "1"
    assert response.cookies["b"] == "2"
    assert response.headers["content-length"] == "2"


@pytest.mark.anyio
async def test_binary_body_and_computed_content_length() -> None:
    data = bytes(range(256)) * 10
    app = returning(
        {
            "headers": {"Content-Type": "image/png", "Content-Length": "1"},
            "body": base64.b64encode(data).decode(),
            "isBase64Encoded": True,
        }
    )
    async with client(app) as http:
        response = await http.get("/")
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "image/png"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        (lambda: {"body": datetime.datetime(2024, 1, 1)}, "TypeError"),
        (lambda: {"body": b"bytes"}, "TypeError"),
        (lambda: {"statusCode": 200, "headers": {("tuple", "key"): "v"}}, "TypeError"),
        (lambda: object(), "TypeError"),
        (lambda: {"a": {"b": [1, {2, 3}]}}, "TypeError"),
    ],
)
async def test_unserialisable_results_are_user_errors(value: Any, error_type: str) -> None:
    async with client(returning(value)) as http:
        response = await http.get("/")
    assert response.status_code == 502
    assert response.headers["x-function-error"] == "true"
    assert response.json()["errorType"] == error_type


@pytest.mark.anyio
async def test_exception_in_handler(caplog: pytest.LogCaptureFixture) -> None:
    def handler(event: Any, context: Any) -> Any:
        return {"lyrics": 1}["missing"]

    from sf_asgi import FunctionApp

    async with client(FunctionApp(handler)) as http:
        response = await http.get("/")
        ok = await http.get("/")
    assert response.status_code == ok.status_code == 502
    assert response.headers["x-function-error"] == "true"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errorType"] == "KeyError"
    assert body["errorMessage"] == "'missing'"
    assert len(body["stackTrace"]) == 1
    assert 'in handler\n    return {"lyrics": 1}["missing"]\n' in body["stackTrace"][0]
    assert "sf_asgi" not in "".join(body["stackTrace"])  # sf_asgi's own frames are left out
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any('"errorType": "KeyError"' in line for line in logged)


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        (3_000, (201, b"deep")),  # deeper than json.loads reads; Go's decoder reads it
        (9_999, (201, b"deep")),
        (10_000, "nested more than 10000 levels"),  # past Go's limit: the malformed-response 502
    ],
)
def test_a_result_nested_deeper_than_python_reads_is_read_as_go_reads_it(levels: int, expected: Any) -> None:
    text = '{"statusCode": 201, "extra": ' + "[" * levels + "]" * levels + ', "body": "deep"}'
    got = outcome(text)
    if isinstance(expected, str):
        assert expected in got
    else:
        assert (got.status, got.body) == expected
