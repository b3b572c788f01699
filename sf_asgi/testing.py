"""Test Cloud Functions handlers with the platform's own events and response rules.

Everything here runs the code the adapter runs: `make_event` is the adapter's
request -> event mapping, `invoke` runs an instance and applies the same result ->
response rules, and `Client` speaks HTTP to a `FunctionApp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json as jsonlib
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from . import _triggers
from ._app import FunctionApp
from ._config import Settings
from ._context import Context
from ._context import make_context as _context_for
from ._event import build_event, new_request_id
from ._instance import Instance
from ._invocation import respond
from ._response import wire_headers
from ._types import Handler, TriggerEvent

__all__ = ["Client", "InvokeResult", "ainvoke", "invoke", "make_context", "make_event", "make_trigger_event"]

Query = Mapping[str, Any] | Sequence[tuple[str, Any]]
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
T = TypeVar("T")


def make_event(
    method: str = "GET",
    path: str = "/",
    *,
    query: Query | None = None,
    headers: Headers | None = None,
    json: Any = None,
    body: bytes | str | None = None,
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> dict[str, Any]:
    """The event the adapter builds for this request (SPEC §2), with fresh ids.

    `query` may repeat keys as a list of pairs; `json` is serialised and sent as
    `application/json`; `body` is sent as it is (the base64 rule then applies). Like a
    real client, it sends `Host: localhost` and a `Content-Length` unless you give them.
    """
    if json is not None and body is not None:
        raise TypeError("give json= or body=, not both")
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    names = {name.lower() for name, _ in pairs}
    if json is not None:
        data = jsonlib.dumps(json).encode("utf-8")
        if "content-type" not in names:
            pairs.append(("Content-Type", "application/json"))
    else:
        data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    if "host" not in names:
        pairs.insert(0, ("Host", "localhost"))
    if data and "content-length" not in names:
        pairs.append(("Content-Length", str(len(data))))
    raw_headers = [(name.lower().encode("latin-1"), value.encode("utf-8")) for name, value in pairs]
    return dict(
        build_event(
            method.upper(),
            raw_headers,
            _query_string(path, query),
            data,
            client,
            new_request_id(),
            new_request_id(),
            time.time(),
        )
    )


def _query_string(path: str, query: Query | None) -> bytes:
    parts = [urlsplit(path).query] if "?" in path else []
    if query:
        items = query.items() if isinstance(query, Mapping) else query
        parts.append(urlencode([(k, v) for k, v in items], doseq=True))
    return "&".join(p for p in parts if p).encode("ascii")


_CONTEXT_SETTINGS = {
    "function_name": "function_name",
    "function_version": "function_version",
    "log_group_name": "log_group",
    "memory_limit_in_mb": "memory_limit_mb",
    "timeout": "timeout",
    "iam_token": "iam_token",
}
_CONTEXT_ATTRIBUTES = ("request_id", "token", "deadline_ms")


def make_trigger_event(kind: str, **fields: Any) -> TriggerEvent:
    """The event a trigger of `kind` calls a function with (`integration=raw`), as the platform builds it.

    Kinds and what they take (a list where one value is taken gives a batch):
    `timer(payload, trigger_id, folder_id)`, `message_queue(body, attributes, queue, folder_id)`,
    `object_storage(key, bucket, action="create"|"update"|"delete", folder_id)`,
    `iot(payload, device_id, registry_id, topic)`, `data_streams(records)`,
    `logging(message, level, resource_type, resource_id, json_payload)`,
    `budget(amount, budgeted_amount, threshold_amount, threshold_type, currency, period, name)`,
    `mail(body, subject, sender, to, headers)`; most take `now` (a UNIX time) too.
    """
    __tracebackhide__ = True
    return _triggers.make(kind, **fields)


def make_context(**overrides: Any) -> Context:
    """A context as the adapter passes it: the settings' defaults, with these fields changed.

    Takes `request_id`, `function_name`, `function_version`, `log_group_name`,
    `memory_limit_in_mb`, `timeout` (seconds, sets the deadline), `iam_token`,
    `token` (the access token as a string, or the whole dict, or None) and `deadline_ms`.
    """
    token = overrides.get("token")
    if isinstance(token, str):  # the common case: the access token, dressed as the platform hands it out
        overrides = {**overrides, "iam_token": token}
        del overrides["token"]
    unknown = set(overrides) - set(_CONTEXT_SETTINGS) - set(_CONTEXT_ATTRIBUTES)
    if unknown:
        known = ", ".join(sorted([*_CONTEXT_SETTINGS, *_CONTEXT_ATTRIBUTES]))
        raise TypeError(f"make_context() got unknown field(s) {', '.join(sorted(unknown))}; it takes {known}")
    settings = Settings(**{_CONTEXT_SETTINGS[k]: v for k, v in overrides.items() if k in _CONTEXT_SETTINGS})
    now = time.time()
    context = _context_for(settings, overrides.get("request_id") or new_request_id(), now, now)
    if "token" in overrides:
        context.token = overrides["token"]
    if "deadline_ms" in overrides:
        context.deadline_ms = overrides["deadline_ms"]
    return context


@dataclasses.dataclass(frozen=True)
class InvokeResult:
    """What an HTTP client would get back."""

    status_code: int
    headers: httpx.Headers  # every value: two Set-Cookie lines are two entries
    body: bytes
    error: dict[str, Any] | None  # errorType, errorMessage... when the platform answered the error

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


async def ainvoke(handler: Handler, event: Any = None, context: Context | None = None, **request: Any) -> InvokeResult:
    """`invoke` for async tests."""
    if event is None:
        event = make_event(**request)
    elif request:
        raise TypeError(f"give event= or the request ({', '.join(sorted(request))}), not both")
    if context is None:
        request_id = new_request_id()
        if isinstance(event, dict) and isinstance(event.get("requestContext"), dict):
            request_id = event["requestContext"].get("requestId") or request_id
        context = make_context(request_id=request_id)
    timeout = max(0.001, context.deadline_ms / 1000 - time.time())
    instance = Instance(Settings(timeout=min(timeout, 3600.0)), handler)
    try:
        response = await respond(instance, event, context.request_id, context=context)
    finally:
        instance.close()
    return InvokeResult(response.status, httpx.Headers(wire_headers(response)), response.body, response.error)


def invoke(handler: Handler, event: Any = None, context: Context | None = None, **request: Any) -> InvokeResult:
    """Call a sync or async handler as an instance would, and answer as the platform would.

    `request` takes `make_event`'s arguments (`method`, `query`, `json`, ...) when no
    `event` is given. A malformed result gives the platform's 502, as in the cloud.
    """
    return _run(ainvoke(handler, event, context, **request))


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise RuntimeError("invoke() is synchronous; in async code use: await sf_asgi.testing.ainvoke(...)")


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan around the block, as a server would."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()
    stopped = asyncio.Event()
    failure: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.failed":
            failure.append(message.get("message", ""))
        if message["type"].startswith("lifespan.startup"):
            started.set()
        elif message["type"].startswith("lifespan.shutdown"):
            stopped.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 60)
    if failure:
        await task
        raise RuntimeError(failure[0])
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(stopped.wait(), 60)
        await task


class _Portal:
    """An event loop in a thread of its own, so that a sync client can drive the ASGI app."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="sf_asgi-client", daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._loop = self._thread = None


class _Transport(httpx.BaseTransport):
    def __init__(self, app: FunctionApp, portal: _Portal, client: tuple[str, int]) -> None:
        self._asgi = httpx.ASGITransport(app=app, client=client)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            response = await self._asgi.handle_async_request(forwarded)
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, body

        status, headers, body = self._portal.call(send())
        return httpx.Response(status, headers=headers, content=body, request=request)


class Client(httpx.Client):
    """An HTTP test client over `FunctionApp`, with `requests`-style methods.

    Use it as a context manager: entering runs the lifespan, i.e. imports the handler
    (the cold start), as a server would.

        with Client("index.handler", source_dir="demo") as client:
            assert client.post("/", json={"a": 1}).status_code == 200
    """

    def __init__(
        self,
        handler: str | Handler,
        *,
        base_url: str = "http://localhost",
        client: tuple[str, int] = ("127.0.0.1", 40000),
        **settings: Any,
    ) -> None:
        self.app = FunctionApp(handler, **settings)
        self._portal = _Portal()
        self._running: contextlib.AbstractAsyncContextManager[None] | None = None
        super().__init__(transport=_Transport(self.app, self._portal, client), base_url=base_url)

    def __enter__(self) -> Client:
        __tracebackhide__ = True  # pytest shows the test's line, not sf_asgi's frames
        super().__enter__()
        self._running = _lifespan(self.app)
        try:
            self._portal.call(self._running.__aenter__())
        except RuntimeError as exc:  # the startup failed: its message names the fix
            self._running = None
            self._portal.stop()
            raise RuntimeError(str(exc)) from None
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self._running is not None:
                self._portal.call(self._running.__aexit__(None, None, None))
                self._running = None
        finally:
            self._portal.stop()
            super().__exit__(*exc_info)
