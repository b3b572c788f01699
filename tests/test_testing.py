"""sf_asgi.testing: the kit gives what the adapter gives, by running the adapter's code."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from sf_asgi import Context
from sf_asgi.testing import Client, ainvoke, invoke, make_context, make_event

from .servers import uvicorn
from .test_response import MALFORMED

VOLATILE_HEADERS = {"X-Request-Id", "X-Trace-Id"}
COMMON = {"User-Agent": "kit-tests", "Accept": "*/*", "Accept-Encoding": "gzip"}


def echo(event: Any, context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(event)}


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """The event without what differs on every request (ids and times)."""
    event = json.loads(json.dumps(event))
    for key in ("headers", "multiValueHeaders"):
        for name in VOLATILE_HEADERS:
            event[key].pop(name, None)
    for key in ("requestId", "requestTime", "requestTimeEpoch"):
        event["requestContext"].pop(key)
    return event


REQUESTS: list[dict[str, Any]] = [
    {"method": "GET"},
    {"method": "GET", "path": "/?a=1&a=2&b=&d=%ff"},
    {"method": "GET", "query": [("c", "x y"), ("c", "é"), ("e", "")]},
    {"method": "POST", "body": b'{"a": 1}', "headers": {"Content-Type": "application/json"}},
    {"method": "POST", "body": b'{"a": 1}', "headers": {"Content-Type": "application/json; charset=utf-8"}},
    {"method": "POST", "body": b"hello, world!", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"method": "PUT", "body": bytes(range(256))},
    {"method": "PATCH", "body": "текст", "headers": {"Content-Type": "text/plain; charset=utf-8"}},
    {"method": "DELETE", "query": {"id": "7"}, "headers": [("X-Multi", "1"), ("X-Multi", "2"), ("x-api-key", "k")]},
    {"method": "GET", "headers": {"Cookie": "a=1", "Authorization": "Bearer t", "X-Forwarded-For": "10.1.1.1"}},
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_make_event_is_the_adapters_event(request_: dict[str, Any]) -> None:
    headers = list(COMMON.items())
    extra = request_.get("headers") or {}
    headers += list(extra.items()) if isinstance(extra, dict) else extra
    body = request_.get("body")
    with Client(echo) as client:
        wire = client.request(
            request_["method"],
            request_.get("path", "/"),
            params=request_.get("query"),
            headers=headers,
            content=body,
        )
    adapter_event = json.loads(wire.text)
    kit_event = make_event(
        request_["method"], request_.get("path", "/"), query=request_.get("query"), headers=headers, body=body
    )
    assert comparable(kit_event) == comparable(adapter_event)
    assert kit_event["headers"]["X-Request-Id"] == kit_event["requestContext"]["requestId"]


def test_make_event_merges_the_paths_query_and_query() -> None:
    event = make_event(path="/x?a=1", query={"a": "2", "b": ["3", "4"]})
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["3", "4"]}


def test_make_event_json_and_defaults() -> None:
    event = make_event("post", json={"a": [1, 2]})
    assert event["httpMethod"] == "POST"
    assert json.loads(event["body"]) == {"a": [1, 2]}
    assert event["isBase64Encoded"] is False
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["headers"]["Host"] == "localhost"
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert make_event(body=b"raw")["body"] == base64.b64encode(b"raw").decode()
    with pytest.raises(TypeError, match="not both"):
        make_event(json={}, body=b"")


def test_make_context() -> None:
    context = make_context(
        function_name="fn", memory_limit_in_mb=512, timeout=3, token={"access_token": "t"}, request_id="r-1"
    )
    assert isinstance(context, Context)
    assert (context.function_name, context.invoked_function_arn, context.memory_limit_in_mb) == ("fn", "fn", 512)
    assert (context.request_id, context.aws_request_id, context.token) == ("r-1", "r-1", {"access_token": "t"})
    assert 2000 < context.get_remaining_time_in_millis() <= 3000
    assert make_context(iam_token="x").token["access_token"] == "x"  # type: ignore[index]
    # A string token, the common case, is the access token as the platform hands it out.
    assert make_context(token="t1.kit-token").token == {
        "access_token": "t1.kit-token", "expires_in": 43200, "token_type": "Bearer"
    }  # fmt: skip
    assert make_context(token=None).token is None
    assert set(vars(make_context())) == {
        "request_id", "aws_request_id", "function_name", "invoked_function_arn", "function_version",
        "log_stream_name", "log_group_name", "memory_limit_in_mb", "deadline_ms", "token",
    }  # fmt: skip
    with pytest.raises(TypeError, match="unknown field.*memory_limit_mb"):
        make_context(memory_limit_mb=1)


RESULTS: list[Any] = [
    {"statusCode": 201, "body": "made", "headers": {"Content-Type": "text/plain"}},
    {"multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "headers": {"Date": "x", "Host": "h"}},
    {"body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True},
    {"statusCode": 204, "body": "dropped"},
    None,
    {"statusCode": "200"},
    {"body": {"not": "a string"}},
    {"headers": {"X-A": "1\r\nX-B: 2"}},
]


def _returning(result: Any) -> Any:
    def handler(event: Any, context: Any) -> Any:
        if result == "raise":
            raise KeyError("missing")
        return result

    return handler


@pytest.mark.parametrize("result", [*RESULTS, "raise"])
def test_invoke_and_client_answer_alike(result: Any) -> None:
    handler = _returning(result)
    direct = invoke(handler, method="GET")
    with Client(handler) as client:
        wire = client.get("/")
    assert direct.status_code == wire.status_code
    assert direct.headers.multi_items() == wire.headers.multi_items()
    assert direct.body == wire.content
    if direct.status_code == 502:
        assert direct.error is not None
        assert direct.error["errorType"] == wire.json()["errorType"]
    else:
        assert direct.error is None


@pytest.mark.parametrize(("result", "reason"), MALFORMED)
def test_malformed_results_fail_alike_in_invoke_and_client(result: Any, reason: str) -> None:
    direct = invoke(_returning(result))
    with Client(_returning(result)) as client:
        wire = client.get("/")
    assert direct.status_code == wire.status_code == 502
    assert direct.error is not None and direct.error["errorType"] == "ProxyIntegrationError"
    assert direct.json() == wire.json()


def test_malformed_results_fail_alike_over_real_http(tmp_path: Path) -> None:
    (tmp_path / "shapes.pickle").write_bytes(pickle.dumps([result for result, _ in MALFORMED]))
    (tmp_path / "index.py").write_text(
        textwrap.dedent(
            """
            import pickle
            SHAPES = pickle.load(open("shapes.pickle", "rb"))
            def handler(event, context):
                return SHAPES[int(event["queryStringParameters"]["i"])]
            """
        )
    )
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler"}) as srv, httpx.Client(base_url=srv.url, timeout=5) as http:
        for i, (result, _) in enumerate(MALFORMED):
            wire = http.get("/", params={"i": i})
            direct = invoke(_returning(result))
            assert wire.status_code == direct.status_code == 502, result
            assert wire.json() == direct.json(), result


def test_invoke_runs_async_handlers_and_keeps_the_timeout() -> None:
    async def slow(event: Any, context: Any) -> Any:
        await asyncio.sleep(5)

    async def fast(event: Any, context: Any) -> Any:
        return {"body": context.request_id}

    timed_out = invoke(slow, context=make_context(timeout=0.2))
    assert timed_out.status_code == 504
    assert timed_out.error == {"errorMessage": timed_out.json()["errorMessage"], "errorType": "Timeout"}
    event = make_event()
    assert invoke(fast, event).text == event["requestContext"]["requestId"]


def test_invoke_passes_the_event_and_context_through() -> None:
    seen: list[Any] = []

    def handler(event: Any, context: Any) -> Any:
        seen.append((event, context))
        return {"body": "ok"}

    event = {"messages": [{"details": {"payload": "timer"}}]}  # a trigger's event works too
    context = make_context(function_name="timer-fn")
    assert invoke(handler, event, context).text == "ok"
    assert seen == [(event, context)]
    with pytest.raises(TypeError, match="not both"):
        invoke(handler, event, method="POST")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_ainvoke_in_async_tests(anyio_backend: str) -> None:
    result = await ainvoke(echo, method="POST", json={"k": "v"})
    assert json.loads(result.json()["body"]) == {"k": "v"}
    with pytest.raises(RuntimeError, match="await sf_asgi.testing.ainvoke"):
        invoke(echo)


def test_client_runs_the_cold_start_and_raw_integration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sf_asgi")
    (tmp_path / "index.py").write_text(
        "COLD = []\nCOLD.append(1)\ndef handler(event, context):\n    return {'got': event, 'cold': len(COLD)}\n"
    )
    with Client("index.handler", source_dir=str(tmp_path)) as client:
        assert "Instance 1" in caplog.text  # started on entering, before any request
        raw = client.post("/?integration=raw", json={"a": 1})
    assert raw.status_code == 200
    assert raw.json() == {"got": {"a": 1}, "cold": 1}


def test_client_reports_a_failed_cold_start(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("x = 1 / 0\n")
    with pytest.raises(RuntimeError, match="ZeroDivisionError"), Client("index.handler", source_dir=str(tmp_path)):
        pass


def test_client_startup_errors_name_keywords_and_show_no_frames_of_sf_asgi(tmp_path: Path) -> None:
    """Run as a user runs it: pytest in a folder of their own, where the source folder is wrong."""
    (tmp_path / "index.py").write_text("def handler(event, context):\n    return {}\n")
    (tmp_path / "test_user.py").write_text(
        "def test_it(sf_client):\n    sf_client('index.handler', source_dir='demo')\n"
        "def test_mistyped(sf_client):\n    sf_client('idx.handler')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 1, out
    assert "of the entry point index.handler does not exist: set source_dir to the function's folder" in out
    assert "No idx.py in" in out and "for the entry point idx.handler" in out and "or set source_dir" in out
    assert "SF_SOURCE_DIR" not in out
    assert "sf_asgi/testing.py" not in out and "sf_asgi/_pytest_plugin.py" not in out  # the user's lines only


@pytest.mark.parametrize("raised", [GeneratorExit("bye"), SystemExit(2), KeyboardInterrupt()])
def test_invoke_reports_any_base_exception_as_a_user_error(raised: BaseException) -> None:
    def handler(event: Any, context: Any) -> Any:
        raise raised

    result = invoke(handler)
    assert result.status_code == 502
    assert result.error is not None and result.error["errorType"] == type(raised).__name__


def test_invoke_trims_header_values_as_the_wire_does() -> None:
    result = invoke(lambda e, c: {"headers": {"X-A": " v\t"}, "multiValueHeaders": {"X-B": ["\t1 ", " 2"]}})
    assert result.headers["X-A"] == "v"
    assert result.headers.get_list("X-B") == ["1", "2"]


def test_sf_client_fixture(sf_client: Any, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def handler(event, context):\n    return {'body': context.function_name}\n")
    client = sf_client("main.handler", source_dir=str(tmp_path), function_name="via-fixture")
    assert client.get("/").text == "via-fixture"
