"""FunctionApp as an ASGI app: lifespan, `?integration=raw`, limits and bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sf_asgi import FunctionApp
from sf_asgi._response import MAX_PAYLOAD

from .conftest import client, echo_app, returning

pytestmark = pytest.mark.anyio


async def lifespan(app: Any) -> list[dict[str, Any]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            await inbox.put({"type": "lifespan.shutdown"})

    await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send), 5)
    return sent


async def call(app: Any, chunks: list[dict[str, Any]], headers: list[tuple[bytes, bytes]] | None = None) -> list[Any]:
    """Drive one HTTP request by hand: `chunks` are the messages receive() hands out."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 1),
    }
    pending = list(chunks)
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    sent: list[Any] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    return [received, *sent]


async def test_lifespan_imports_the_handler_at_startup(write_function: Callable[..., Path]) -> None:
    # The instance's cold start leaves a mark in its folder (its working directory), before any request.
    folder = write_function("open('cold', 'w').close()\ndef handler(e, c): return {'body': 'hi'}\n")
    app = FunctionApp("index.handler", source_dir=str(folder))
    sent = await lifespan(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert (folder / "cold").exists()


@pytest.mark.parametrize(
    ("code", "entry", "env", "first_line"),
    [
        (None, None, {}, "sf_asgi: SF_HANDLER is not set"),
        ("x = 1", "nope.handler", {}, "sf_asgi: No nope.py in"),
        ("x = 1", "index.handler", {}, "sf_asgi: "),
        ("handler = 3", "index.handler", {}, "sf_asgi: index.handler is a int, not a function"),
        ("import missing_dependency_xyz", "index.handler", {}, "sf_asgi: Importing index failed: ModuleNotFoundError"),
        ("x = 1", "index.handler", {"SF_TIMEOUT": "abc"}, "sf_asgi: SF_TIMEOUT='abc' is not a number"),
        ("x = 1", "nope.handler", {}, "for the entry point nope.handler (it has: index.py)"),
    ],
)
async def test_lifespan_startup_failures_name_the_fix(
    write_function: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    code: str | None,
    entry: str | None,
    env: dict[str, str],
    first_line: str,
) -> None:
    if code is not None:
        monkeypatch.setenv("SF_SOURCE_DIR", str(write_function(code)))
    if entry is not None:
        monkeypatch.setenv("SF_HANDLER", entry)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sent = await lifespan(FunctionApp())
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"].startswith(first_line) or first_line in sent[0]["message"]
    assert "source_dir" not in sent[0]["message"]  # run from the environment: named as SF_* variables


@pytest.mark.parametrize(
    ("via", "settings", "words", "not_words"),
    [
        ("env", {}, ["set SF_SOURCE_DIR", "entry point nope.handler"], ["--source", "source_dir"]),
        ("cli", {}, ["pass --source", "entry point nope.handler"], ["SF_SOURCE_DIR"]),
        ("code", {"handler": "nope.handler"}, ["set source_dir", "entry point nope.handler"], ["SF_SOURCE_DIR"]),
    ],
)
async def test_startup_errors_name_settings_the_way_they_were_given(
    write_function: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    via: str,
    settings: dict[str, str],
    words: list[str],
    not_words: list[str],
) -> None:
    monkeypatch.chdir(write_function("x = 1"))
    if via == "cli":
        monkeypatch.setenv("_SF_ASGI_VIA", "cli")  # what the sf-asgi command sets for its server
    if not settings:
        monkeypatch.setenv("SF_HANDLER", "nope.handler")
    message = (await lifespan(FunctionApp(**settings)))[0]["message"]
    for word in words:
        assert word in message
    for word in not_words:
        assert word not in message


async def test_module_level_app_uses_the_environment(
    write_function: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_function("def handler(event, context):\n    return {'body': context.function_name}\n")
    monkeypatch.setenv("SF_HANDLER", "index.handler")
    monkeypatch.setenv("SF_SOURCE_DIR", str(folder))
    monkeypatch.setenv("SF_FUNCTION_NAME", "from-env")
    import sf_asgi

    app = FunctionApp()  # what sf_asgi.app is, but fresh for this test
    assert isinstance(sf_asgi.app, FunctionApp)
    async with client(app) as http:
        assert (await http.get("/")).text == "from-env"


async def test_config_error_at_request_time(monkeypatch: pytest.MonkeyPatch) -> None:
    async with client(FunctionApp()) as http:
        response = await http.get("/")
    assert response.status_code == 500
    assert response.json()["errorType"] == "ConfigError"
    assert "SF_HANDLER is not set" in response.json()["errorMessage"]


# ?integration=raw (SPEC §7)


@pytest.mark.parametrize(
    ("body", "returned", "wire"),
    [
        (b'{"a": 1}', lambda e: {"statusCode": 404, "got": e}, b'{"statusCode": 404, "got": {"a": 1}}'),
        (b"41", lambda e: e + 1, b"42"),
        (b"plain text", lambda e: e.upper(), b'"PLAIN TEXT"'),
        (b"", lambda e: e, b'""'),
        (b"{}", lambda e: None, b"null"),
        (b"[1, 2]", lambda e: [*e, 3], b"[1, 2, 3]"),
    ],
)
async def test_raw_integration(body: bytes, returned: Callable[[Any], Any], wire: bytes) -> None:
    def handler(event: Any, context: Any) -> Any:
        return returned(event)

    async with client(FunctionApp(handler)) as http:
        response = await http.post("/?integration=raw", content=body, headers={"X-Hidden": "1"})
    assert response.status_code == 200
    assert response.content == wire


async def test_raw_integration_errors_are_still_502() -> None:
    def handler(event: Any, context: Any) -> Any:
        raise ValueError("bad input")

    async with client(FunctionApp(handler)) as http:
        response = await http.post("/?integration=raw", content=b"{}")
    assert response.status_code == 502
    assert response.json()["errorType"] == "ValueError"


async def test_raw_is_decided_by_the_last_integration_value() -> None:
    async with client(echo_app()) as http:
        response = await http.get("/?integration=raw&integration=http")
    assert response.json()["event"]["queryStringParameters"] == {"integration": "http"}


# Limits (SPEC §6) and bad input


async def test_declared_oversize_body_is_413_before_reading() -> None:
    app = returning({"body": "never"})
    result = await call(
        app,
        [{"type": "http.request", "body": b"x", "more_body": True}],
        [(b"content-length", str(MAX_PAYLOAD + 1).encode())],
    )
    received, start, body = result
    assert received == 0
    assert start["status"] == 413
    assert json.loads(body["body"])["errorType"] == "RequestTooLarge"


async def test_streamed_oversize_body_is_413_without_reading_it_all() -> None:
    chunk = b"x" * (1024 * 1024)
    chunks = [{"type": "http.request", "body": chunk, "more_body": True} for _ in range(100)]
    received, start, _ = await call(returning({"body": "never"}), chunks)
    assert start["status"] == 413
    assert received == 4  # 4 MiB read, then it stopped


async def test_event_over_the_limit_after_base64_is_413() -> None:
    async with client(echo_app()) as http:
        big = await http.post("/", content=b"\x00" * (3 * 1024 * 1024))  # 4 MiB once base64-encoded
        fits = await http.post("/", content=b"\x00" * (2 * 1024 * 1024))
    assert big.status_code == 413
    assert fits.status_code == 200


async def test_response_over_the_limit_is_502() -> None:
    async with client(returning({"body": "x" * MAX_PAYLOAD})) as http:
        response = await http.get("/")
    assert response.status_code == 502
    assert response.json()["errorType"] == "ResponseTooLarge"


async def test_disconnect_while_reading_the_body_sends_nothing() -> None:
    calls: list[Any] = []

    def handler(event: Any, context: Any) -> Any:
        calls.append(event)

    result = await call(FunctionApp(handler), [{"type": "http.request", "body": b"part", "more_body": True}])
    assert result == [2]  # two receive() calls, nothing sent
    assert calls == []


async def test_invalid_content_length_is_400() -> None:
    _, start, _ = await call(returning({}), [], [(b"content-length", b"ten")])
    assert start["status"] == 400


async def test_hundreds_of_headers() -> None:
    headers = [(f"x-h{i}", str(i)) for i in range(300)]
    async with client(echo_app()) as http:
        response = await http.get("/", headers=headers)
    assert response.status_code == 200
    assert response.json()["event"]["headers"]["X-H299"] == "299"


async def test_websocket_is_refused() -> None:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await FunctionApp(lambda e, c: None)({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1003}]


async def test_connect_is_refused_with_405() -> None:
    called: list[Any] = []
    async with client(FunctionApp(lambda e, c: called.append(e))) as http:
        response = await http.request("CONNECT", "/")
    assert response.status_code == 405
    assert response.json()["errorType"] == "MethodNotAllowed"
    assert called == []


@pytest.mark.parametrize("raised", [GeneratorExit("bye"), SystemExit(3), KeyboardInterrupt("ki"), ValueError("v")])
@pytest.mark.parametrize("kind", ["def", "async def"])
async def test_any_base_exception_from_a_handler_is_a_user_error(
    write_function: Callable[..., Path], raised: BaseException, kind: str
) -> None:
    def handler(event: Any, context: Any) -> Any:
        raise raised

    async def ahandler(event: Any, context: Any) -> Any:
        raise raised

    async with client(FunctionApp(handler if kind == "def" else ahandler)) as http:
        failed = await http.get("/")
        after = await http.get("/")
    assert failed.status_code == 502
    assert failed.json()["errorType"] == type(raised).__name__
    assert failed.json()["errorMessage"] == str(raised)
    assert after.status_code == 502  # served again: the instance and the server live on


async def test_head_request() -> None:
    async with client(echo_app()) as http:
        response = await http.head("/")
    assert response.status_code == 200


def test_bad_handler_argument() -> None:
    with pytest.raises(TypeError, match="handler must be a callable or an entry point string"):
        FunctionApp(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("via", "words"), [("code", "or set source_dir"), ("env", "or set SF_SOURCE_DIR"), ("cli", "or pass --source")]
)
async def test_a_load_error_at_request_time_names_settings_the_way_they_were_given(
    write_function: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, via: str, words: str
) -> None:
    folder = write_function("x = 1")
    if via == "code":
        app = FunctionApp("nope.handler", source_dir=str(folder))
    else:
        monkeypatch.setenv("SF_HANDLER", "nope.handler")
        monkeypatch.setenv("SF_SOURCE_DIR", str(folder))
        if via == "cli":
            monkeypatch.setenv("_SF_ASGI_VIA", "cli")
        app = FunctionApp()
    async with client(app) as http:  # no lifespan: the request meets the failed import (a process instance's)
        response = await http.get("/")
    assert response.status_code == 502
    assert words in response.json()["errorMessage"]
