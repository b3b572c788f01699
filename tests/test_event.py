"""Request -> event (SPEC §2): the pure rules, then the same rules through the ASGI app."""

from __future__ import annotations

import calendar
import re
import uuid
from typing import Any

import pytest

from sf_asgi._event import (
    REMOVED_REQUEST_HEADERS,
    build_event,
    build_raw_event,
    canonical_header_key,
    encode_body,
    format_request_time,
    new_request_id,
    new_request_ids,
    parse_query,
)

from .conftest import client, echo_app


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("x-api-key", "X-Api-Key"),
        ("content-md5", "Content-Md5"),
        ("x_custom", "X_custom"),
        ("X-FOO-bar", "X-Foo-Bar"),
        ("sec-ch-ua-platform", "Sec-Ch-Ua-Platform"),
        ("www-authenticate", "Www-Authenticate"),
        ("te", "Te"),
        ("x--y", "X--Y"),
        ("1abc-def", "1abc-Def"),
        ("foo bar", "foo bar"),  # not a token: Go leaves it alone
        ("x-ü", "x-ü"),
        ("", ""),
    ],
)
def test_canonical_header_key(name: str, canonical: str) -> None:
    assert canonical_header_key(name) == canonical


@pytest.mark.parametrize(
    ("query", "single", "multi"),
    [
        (b"", {}, {}),
        (b"a=1&a=2&b=1", {"a": "2", "b": "1"}, {"a": ["1", "2"], "b": ["1"]}),
        (b"a=&b", {"a": "", "b": ""}, {"a": [""], "b": [""]}),
        (b"q=hello+world%21", {"q": "hello world!"}, {"q": ["hello world!"]}),
        (b"a%20b=c%2Bd", {"a b": "c+d"}, {"a b": ["c+d"]}),
        (b"x=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82", {"x": "привет"}, {"x": ["привет"]}),
        (b"x=%zz&y=1", {"y": "1"}, {"y": ["1"]}),  # a broken escape drops the pair, as Go does
        (b"x=%4&y=1", {"y": "1"}, {"y": ["1"]}),
        (b"x=1;y=2&z=3", {"z": "3"}, {"z": ["3"]}),  # Go >= 1.17 drops pairs with a semicolon
        (b"x=%ff", {"x": "\ufffd"}, {"x": ["\ufffd"]}),
        (b"x=\xff\xfe", {"x": "\ufffd\ufffd"}, {"x": ["\ufffd\ufffd"]}),
        (b"&&a=1&", {"a": "1"}, {"a": ["1"]}),
        (b"=v", {"": "v"}, {"": ["v"]}),
        (b"a=1=2", {"a": "1=2"}, {"a": ["1=2"]}),
        (b"integration=raw", {"integration": "raw"}, {"integration": ["raw"]}),
    ],
)
def test_parse_query(query: bytes, single: dict[str, str], multi: dict[str, list[str]]) -> None:
    assert parse_query(query) == (single, multi)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", ('{"a": 1}', False)),
        (b'{"a": 1}', "application/json; charset=utf-8", ('{"a": 1}', False)),
        (b'{"a": 1}', " Application/JSON ", ('{"a": 1}', False)),
        ('{"ключ": 1}'.encode(), "application/json", ('{"ключ": 1}', False)),
        (b"not json at all", "application/json", ("not json at all", False)),
        (b"\xff\xfe{}", "application/json", ("//57fQ==", True)),  # not UTF-8: base64
        (b"", "application/json", ("", False)),
        (b"hello, world!", "application/x-www-form-urlencoded", ("aGVsbG8sIHdvcmxkIQ==", True)),
        (b"hello", "text/plain", ("aGVsbG8=", True)),
        (b'{"a": 1}', "application/json-patch+json", ("eyJhIjogMX0=", True)),
        (b'{"a": 1}', "application/vnd.api+json", ("eyJhIjogMX0=", True)),
        (b"", None, ("", True)),
        (b"\x00\x01", None, ("AAE=", True)),
    ],
)
def test_encode_body(body: bytes, content_type: str | None, expected: tuple[str, bool]) -> None:
    assert encode_body(body, content_type) == expected


@pytest.mark.parametrize(
    ("when", "text"),
    [
        ((2022, 7, 13, 11, 58, 59), "13/Jul/2022:11:58:59 +0000"),
        ((2023, 1, 4, 23, 47, 3), "4/Jan/2023:23:47:03 +0000"),  # the day is not zero-padded
        ((2021, 9, 1, 7, 29, 6), "1/Sep/2021:07:29:06 +0000"),
        ((2026, 12, 31, 0, 0, 0), "31/Dec/2026:00:00:00 +0000"),
    ],
)
def test_format_request_time(when: tuple[int, ...], text: str) -> None:
    epoch = calendar.timegm((*when, 0, 0, 0))
    assert format_request_time(epoch) == text
    assert format_request_time(epoch) == text  # and again, from the cache


def test_request_ids_are_uuid4() -> None:
    ids = {new_request_id() for _ in range(1000)}
    for _ in range(500):
        ids.update(new_request_ids())
    assert len(ids) == 2000
    # Every hex digit shows up in the variant position, so each of its four values is reached.
    assert {value[19] for value in ids} == set("89ab")
    for value in ids:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value)
        assert uuid.UUID(value).version == 4 and uuid.UUID(value).variant == uuid.RFC_4122


def _event(headers: list[tuple[bytes, bytes]], **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "method": "POST",
        "headers": headers,
        "query": b"",
        "body": b"",
        "client": ("203.0.113.7", 2816),
        "request_id": "req-1",
        "trace_id": "trace-1",
        "now": 1657713539.25,
    }
    args.update(kwargs)
    return build_event(**args)


def test_event_shape_matches_the_platform() -> None:
    event = _event(
        [(b"host", b"functions.example"), (b"user-agent", b"curl/8"), (b"content-type", b"application/json")],
        query=b"param=one",
        body=b'{"hello": "world"}',
    )
    assert event == {
        "httpMethod": "POST",
        "headers": {
            "Host": "functions.example",
            "User-Agent": "curl/8",
            "Content-Type": "application/json",
            "X-Request-Id": "req-1",
            "X-Trace-Id": "trace-1",
            "X-Real-Remote-Address": "[203.0.113.7]:2816",
            "X-Forwarded-For": "203.0.113.7",
        },
        "multiValueHeaders": {
            "Host": ["functions.example"],
            "User-Agent": ["curl/8"],
            "Content-Type": ["application/json"],
            "X-Request-Id": ["req-1"],
            "X-Trace-Id": ["trace-1"],
            "X-Real-Remote-Address": ["[203.0.113.7]:2816"],
            "X-Forwarded-For": ["203.0.113.7"],
        },
        "queryStringParameters": {"param": "one"},
        "multiValueQueryStringParameters": {"param": ["one"]},
        "requestContext": {
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8"},
            "httpMethod": "POST",
            "requestId": "req-1",
            "requestTime": "13/Jul/2022:11:58:59 +0000",
            "requestTimeEpoch": 1657713539,
        },
        "body": '{"hello": "world"}',
        "isBase64Encoded": False,
        "url": "",
        "params": {},
        "multiValueParams": {},
        "pathParams": {},
    }


@pytest.mark.parametrize("name", sorted(REMOVED_REQUEST_HEADERS))
def test_removed_request_headers(name: str) -> None:
    event = _event([(name.lower().encode(), b"secret"), (b"x-kept", b"yes")])
    assert name not in event["headers"]
    assert name not in event["multiValueHeaders"]
    assert event["headers"]["X-Kept"] == "yes"


def test_removed_request_headers_are_the_platform_list() -> None:
    assert {
        "Expect", "Te", "Trailer", "Upgrade", "Proxy-Authenticate", "Authorization", "Connection",
        "Content-Md5", "Max-Forwards", "Server", "Transfer-Encoding", "Www-Authenticate", "Cookie",
    } == REMOVED_REQUEST_HEADERS  # fmt: skip


def test_repeated_headers_keep_last_and_all() -> None:
    event = _event([(b"x-multi", b"1"), (b"accept", b"*/*"), (b"X-MULTI", b"2")])
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]


def test_platform_headers_replace_what_the_client_sent() -> None:
    event = _event(
        [
            (b"x-request-id", b"forged"),
            (b"x-trace-id", b"forged"),
            (b"x-real-remote-address", b"forged"),
            (b"x-forwarded-for", b"198.51.100.1"),
            (b"x-forwarded-for", b"198.51.100.2, 10.0.0.1"),
        ]
    )
    assert event["multiValueHeaders"]["X-Request-Id"] == ["req-1"]
    assert event["multiValueHeaders"]["X-Trace-Id"] == ["trace-1"]
    assert event["headers"]["X-Real-Remote-Address"] == "[203.0.113.7]:2816"
    # The incoming chain, then the caller.
    assert event["multiValueHeaders"]["X-Forwarded-For"] == ["198.51.100.1, 198.51.100.2, 10.0.0.1, 203.0.113.7"]


def test_chain_that_already_ends_with_the_client_is_not_extended() -> None:
    # What a trusted proxy sends: the server took the client from the chain's end.
    event = _event([(b"x-forwarded-for", b"198.51.100.1, 203.0.113.7")])
    assert event["headers"]["X-Forwarded-For"] == "198.51.100.1, 203.0.113.7"


def test_ipv6_client_and_no_client() -> None:
    event = _event([], client=("::1", 5000))
    assert event["headers"]["X-Real-Remote-Address"] == "[::1]:5000"
    assert event["requestContext"]["identity"]["sourceIp"] == "::1"
    event = _event([], client=None)
    assert "X-Real-Remote-Address" not in event["headers"]
    assert "X-Forwarded-For" not in event["headers"]
    assert event["requestContext"]["identity"]["sourceIp"] == ""


def test_no_user_agent_gives_empty_identity_user_agent() -> None:
    event = _event([(b"accept", b"*/*")])
    assert event["requestContext"]["identity"]["userAgent"] == ""
    assert "User-Agent" not in event["headers"]


def test_invalid_utf8_in_header_values_becomes_replacement_characters() -> None:
    event = _event([(b"x-bytes", b"ok\xff\xfe"), (b"x-utf8", "привет".encode())])
    assert event["headers"]["X-Bytes"] == "ok\ufffd\ufffd"
    assert event["headers"]["X-Utf8"] == "привет"


def test_content_type_decides_the_body_by_its_last_value() -> None:
    event = _event([(b"content-type", b"text/plain"), (b"content-type", b"application/json")], body=b"{}")
    assert (event["body"], event["isBase64Encoded"]) == ("{}", False)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": [1, 2]}', {"a": [1, 2]}),
        (b"41", 41),
        (b'"text"', "text"),
        (b"null", None),
        (b"hello there", "hello there"),
        (b"", ""),
        (b"\xff", "\ufffd"),
        # Nested deeper than json.loads reads: passed as its text, as any body that is not JSON.
        (b"[" * 100_000 + b"]" * 100_000, "[" * 100_000 + "]" * 100_000),
        (b'{"a": ' * 5_000 + b"1" + b"}" * 5_000, '{"a": ' * 5_000 + "1" + "}" * 5_000),
    ],
)
def test_raw_event(body: bytes, expected: Any) -> None:
    assert build_raw_event(body) == expected


# The same rules, through the ASGI app.

REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("GET", {}, {"body": "", "isBase64Encoded": True, "httpMethod": "GET"}),
    ("POST", {"json": {"a": 1}}, {"body": '{"a":1}', "isBase64Encoded": False}),
    ("POST", {"content": b"hello, world!"}, {"body": "aGVsbG8sIHdvcmxkIQ==", "isBase64Encoded": True}),
    ("POST", {"data": {"k": "v"}}, {"body": "az12", "isBase64Encoded": True}),
    ("PUT", {"content": b"\x89PNG\r\n"}, {"body": "iVBORw0K", "isBase64Encoded": True, "httpMethod": "PUT"}),
    ("DELETE", {"params": [("a", "1"), ("a", "2"), ("b", "")]}, {"queryStringParameters": {"a": "2", "b": ""}}),
    ("PATCH", {"params": {"q": "a b&c"}}, {"multiValueQueryStringParameters": {"q": ["a b&c"]}}),
    ("OPTIONS", {}, {"httpMethod": "OPTIONS"}),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "kwargs", "expected"), REQUESTS)
async def test_event_through_the_app(method: str, kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    async with client(echo_app(), ("198.51.100.9", 4242)) as http:
        response = await http.request(method, "/", **kwargs)
    assert response.status_code == 200
    event = response.json()["event"]
    for key, value in expected.items():
        assert event[key] == value
    assert event["requestContext"]["httpMethod"] == method
    assert event["requestContext"]["identity"]["sourceIp"] == "198.51.100.9"
    assert event["headers"]["X-Real-Remote-Address"] == "[198.51.100.9]:4242"
    assert (event["url"], event["params"], event["multiValueParams"], event["pathParams"]) == ("", {}, {}, {})


@pytest.mark.anyio
async def test_headers_through_the_app() -> None:
    headers = [
        ("x-api-key", "k"),
        ("X-Multi", "1"),
        ("x-multi", "2"),
        ("Cookie", "session=1"),
        ("Authorization", "Bearer t"),
        ("User-Agent", "agent/1"),
    ]
    async with client(echo_app()) as http:
        response = await http.get("/", headers=headers)
    body = response.json()
    event, context = body["event"], body["context"]
    assert event["headers"]["X-Api-Key"] == "k"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert "Cookie" not in event["headers"]
    assert "Authorization" not in event["headers"]
    assert event["requestContext"]["identity"]["userAgent"] == "agent/1"
    assert event["headers"]["Host"] == "testserver"
    request_id = event["requestContext"]["requestId"]
    assert event["headers"]["X-Request-Id"] == request_id == context["request_id"] == context["aws_request_id"]
    assert event["headers"]["X-Trace-Id"] != request_id
    assert set(event["headers"]) == set(event["multiValueHeaders"])
