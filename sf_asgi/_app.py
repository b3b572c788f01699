"""`FunctionApp`: the ASGI 3 application around one function instance."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from ._concurrency import InvocationTimeout, QueueFull, Sweeper
from ._config import ConfigError, Settings
from ._context import Context
from ._event import build_event, build_raw_event, new_request_ids, parse_query
from ._instance import Instance, UserCodeError
from ._loader import LoadError
from ._logging import logger, request_id_var, setup_logging
from ._response import (
    MAX_PAYLOAD,
    HTTPResponse,
    MalformedResult,
    error_response,
    malformed_response,
    platform_error,
    raw_response,
    render_result,
    result_text,
    wire_headers,
)
from ._types import Handler, Receive, Scope, Send

_MB = 1024 * 1024
_WATCH_AFTER = 0.05  # seconds


class FunctionApp:
    """Serve a Cloud Functions handler `handler(event, context)` over ASGI.

    `handler` is the callable itself or an entry point such as `"index.handler"`; with
    neither, `SF_HANDLER` names it. Every other setting is a keyword argument of
    `Settings` and falls back to its `SF_*` variable, then to its default.
    """

    def __init__(self, handler: str | Handler | None = None, **settings: Any) -> None:
        Settings.check_names(settings, "FunctionApp()")
        if isinstance(handler, str):
            settings["handler"] = handler
            handler = None
        elif handler is not None and not callable(handler):
            raise TypeError(f"handler must be a callable or an entry point string, got {type(handler).__name__}")
        self._callable = handler
        self._overrides = settings
        self._instance: Instance | None = None
        # Listening for a client that leaves starts only once an invocation has run for a
        # while: a listener task per request would cost more than the rest of the request path.
        self._watcher: Sweeper[_Watch] = Sweeper(_WATCH_AFTER, _listen_if_slow)

    @property
    def settings(self) -> Settings:
        return self._get_instance().settings

    def _get_instance(self) -> Instance:
        # Settings are read when first needed, so `sf_asgi.app` can be imported before SF_* are set.
        if self._instance is None:
            settings = Settings.from_env(**self._overrides)
            setup_logging(settings.log_format, settings.log_level)
            if settings.reload:
                sys.dont_write_bytecode = True  # no stale .pyc for an edit within the same second
            if self._callable is None and not settings.handler:
                raise ConfigError(
                    "SF_HANDLER is not set: name the handler as <file>.<function>, e.g. "
                    "SF_HANDLER=index.handler uvicorn sf_asgi:app"
                )
            self._instance = Instance(settings, self._callable)
        return self._instance

    async def startup(self) -> None:
        """The cold start: import the handler now. Raises ConfigError or LoadError.

        ASGI lifespan calls this; a host app that mounts this one and runs its own
        lifespan can call it from there. Without it, the first request imports the handler.
        """
        await self._get_instance().load()

    async def shutdown(self) -> None:
        self._watcher.close()
        if self._instance is not None:
            self._instance.close()
        for handler in logger.handlers:  # the last system lines, still in stdout's buffer
            handler.flush()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """For a host app that mounts this one: `Starlette(routes=..., lifespan=fn.lifespan)`."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # a function has no WebSocket endpoint: refuse the handshake
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except ConfigError as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"sf_asgi: {exc}"})
                    return
                except LoadError as exc:
                    if not self.settings.reload:
                        await send({"type": "lifespan.startup.failed", "message": f"sf_asgi: {exc.report()}"})
                        return
                    # The dev server stays up: requests get the error as a 502 until the file is fixed.
                    logger.error("sf_asgi: %s", exc.report())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self._instance
        if instance is None:
            try:
                instance = self._get_instance()
            except ConfigError as exc:
                await _send(send, platform_error(500, "ConfigError", str(exc)))
                return
        body = await _read_body(scope, receive)
        if body is None:
            return  # the client left before its request was complete
        if isinstance(body, HTTPResponse):
            await _send(send, body)
            return
        request_id, trace_id = new_request_ids()
        token = request_id_var.set(request_id)
        watch = _Watch(receive)
        self._watcher.watch(watch)
        try:
            request = _event(scope, body, request_id, trace_id)
            if isinstance(request, HTTPResponse):
                response = request
            else:
                event, raw = request
                response = await respond(instance, event, request_id, raw)
        except Exception:
            logger.exception("sf_asgi failed to handle a request; please report this as a bug")
            response = platform_error(500, "InternalError", "Internal error in sf_asgi")
        finally:
            self._watcher.unwatch(watch)
            request_id_var.reset(token)
        if watch.listener is not None:
            message = watch.listener
            if message.done() and not message.cancelled() and message.result()["type"] == "http.disconnect":
                # As on the platform, the invocation ran to its end; its response has nowhere to go.
                logger.warning(
                    "Client disconnected before invocation %s finished; its %d response was dropped",
                    request_id,
                    response.status,
                )
                return
            message.cancel()
        await send({"type": "http.response.start", "status": response.status, "headers": wire_headers(response)})
        await send({"type": "http.response.body", "body": response.body})


def _event(scope: Scope, body: bytes, request_id: str, trace_id: str) -> tuple[Any, bool] | HTTPResponse:
    """(event, whether it is `?integration=raw`), or the 413 for an event over the limit."""
    query: bytes = scope.get("query_string", b"")
    if b"integration" in query and parse_query(query)[0].get("integration") == "raw":
        return build_raw_event(body), True
    event = build_event(
        scope["method"], scope["headers"], query, body, scope.get("client"), request_id, trace_id, time.time()
    )
    # The request JSON is limited, not the body alone (SPEC §6): measure it when it can matter.
    if len(event["body"]) > MAX_PAYLOAD - 256 * 1024:
        size = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_PAYLOAD:
            return _too_large(size)
    return event, False


async def respond(
    instance: Instance, event: Any, request_id: str, raw: bool = False, context: Context | None = None
) -> HTTPResponse:
    """Run one invocation and answer as the platform would: the one path from result to response."""
    try:
        result, text = await instance.invoke(event, request_id, context)
    except QueueFull:
        return platform_error(
            429,
            "TooManyRequests",
            f"All executors are overloaded: {instance.waiting} requests are already waiting "
            f"(SF_MAX_QUEUE={instance.settings.max_queue})",
        )
    except InvocationTimeout:
        return platform_error(504, "Timeout", f"Function timed out after {instance.settings.timeout:g} s (SF_TIMEOUT)")
    except UserCodeError as exc:
        response = error_response(exc.error)
        logger.error("Invocation %s failed: %s", request_id, response.body.decode("utf-8"))
        return response
    if text is not None and len(text) > MAX_PAYLOAD:
        logger.error("Invocation %s returned %d bytes, over the 3.5 MB limit", request_id, len(text))
        return platform_error(502, "ResponseTooLarge", f"Function response is {len(text)} bytes, over the 3.5 MB limit")
    if raw:
        return raw_response(result_text(result, text))
    try:
        return render_result(text, result)
    except MalformedResult as exc:
        logger.error("Invocation %s returned a malformed response: %s", request_id, exc)
        return malformed_response(result_text(result, text))


class _Watch:
    __slots__ = ("listener", "receive", "since")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.since = time.monotonic()
        self.listener: asyncio.Future[Any] | None = None


def _listen_if_slow(watch: _Watch, now: float) -> None:
    if watch.listener is None and now - watch.since >= _WATCH_AFTER:
        watch.listener = asyncio.ensure_future(watch.receive())


async def _read_body(scope: Scope, receive: Receive) -> bytes | HTTPResponse | None:
    """The whole request body; a 413 as soon as it is sure to be over the limit; None on disconnect."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return platform_error(400, "BadRequest", "Invalid Content-Length")
            if declared > MAX_PAYLOAD:
                return _too_large(declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_PAYLOAD:  # stop reading: the event can only be larger than the body
                return _too_large(size, more=True)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, more: bool = False) -> HTTPResponse:
    at_least = "at least " if more else ""
    message = f"Request is {at_least}{size / _MB:.2f} MB; the platform limits the request JSON to 3.5 MB"
    return platform_error(413, "RequestTooLarge", message)


async def _send(send: Send, response: HTTPResponse) -> None:
    await send({"type": "http.response.start", "status": response.status, "headers": wire_headers(response)})
    await send({"type": "http.response.body", "body": response.body})
