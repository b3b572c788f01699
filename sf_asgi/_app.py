"""`FunctionApp`: the ASGI 3 application around one function instance."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from . import _reload, _timers, _triggers
from ._background import Task, library, spawn
from ._concurrency import QueueFull, Sweeper
from ._config import VIA_VARIABLE, ConfigError, Settings, in_words
from ._cron import Schedule, parse_timers
from ._event import build_event, build_raw_event, new_request_ids, parse_query
from ._instance import Instance
from ._invocation import queue_full, respond, respond_call, run_event
from ._loader import LoadError
from ._logging import logger, request_id_var, setup_logging
from ._output import Output
from ._pool import ClientGone, Pool, Waiter
from ._response import (
    MAX_PAYLOAD,
    HTTPResponse,
    platform_error,
    user_error_response,
    wire_headers,
)
from ._types import Handler, Receive, Scope, Send

_MB = 1024 * 1024
_CONNECT_REFUSED = platform_error(405, "MethodNotAllowed", "CONNECT is not served: a function answers requests")
_WATCH_AFTER = 0.05  # seconds


class FunctionApp:
    """Serve a Cloud Functions handler `handler(event, context)` over ASGI.

    `handler` is the callable itself or an entry point such as `"index.handler"`; with
    neither, `SF_HANDLER` names it. Every other setting is a keyword argument of
    `Settings` and falls back to its `SF_*` variable, then to its default.
    """

    def __init__(self, handler: str | Handler | None = None, **settings: Any) -> None:
        Settings.check_names(settings, "FunctionApp()")
        if isinstance(settings.get("timer"), list | tuple):  # timer=["0 9 ? * * *=morning", ...]
            settings["timer"] = "\n".join(settings["timer"])
        if isinstance(handler, str):
            settings["handler"] = handler
            handler = None
        elif handler is not None and not callable(handler):
            raise TypeError(f"handler must be a callable or an entry point string, got {type(handler).__name__}")
        if handler is not None and settings.get("isolation", "thread") != "thread":
            raise ConfigError(
                "a callable handler runs inside the server's process (isolation='thread'): "
                "give an entry point such as FunctionApp('index.handler') for process instances"
            )
        try:  # a wrong keyword value fails here, where it was written, not at startup
            Settings(**settings)
        except ConfigError as exc:
            raise ConfigError(in_words(str(exc), "code")) from None
        self._callable = handler
        self._overrides = settings
        # Messages name settings the way they were given (SF_*, flags, or keywords).
        self._via = "code" if handler is not None or settings else ""  # "": read when needed (the CLI sets it)
        self._instance: Instance | None = None
        self._pool: Pool | None = None
        self._settings: Settings | None = None
        self._started = False
        self._reloader: Task | None = None
        self._in_background = 0  # async invocations and timer firings in flight
        self._timers: Task | None = None
        # Listening for a client that leaves starts only once an invocation has run for a
        # while: a listener task per request would cost more than the rest of the request path.
        self._watcher: Sweeper[_Watch] = Sweeper(_WATCH_AFTER, _listen_if_slow)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._configure()
        assert self._settings is not None
        return self._settings

    def _configure(self) -> Instance | Pool:
        """The thread instance or the process pool, made when first needed.

        Settings are read then, so `sf_asgi.app` can be imported before SF_* are set.
        """
        if self._instance is not None:
            return self._instance
        if self._pool is not None:
            return self._pool
        overrides = self._overrides
        if self._callable is not None:
            overrides = {**overrides, "isolation": "thread"}  # a callable lives in this process
        settings = Settings.from_env(**overrides)
        setup_logging(settings.log_format, settings.log_level)
        if self._callable is None and not settings.handler:
            raise ConfigError(
                "SF_HANDLER is not set: name the handler as <file>.<function>, e.g. SF_HANDLER=index.handler"
            )
        self._settings = settings
        if settings.isolation == "process":
            self._pool = Pool(settings, Output(settings.log_format, settings.log_level))
            return self._pool
        if library() != "asyncio":
            raise ConfigError(
                f"isolation 'thread' runs on asyncio only, and this server runs {library()}: "
                "use SF_ISOLATION=process, or an asyncio worker"
            )
        if settings.reload:
            sys.dont_write_bytecode = True  # no stale .pyc for an edit within the same second
        self._instance = Instance(settings, self._callable)
        return self._instance

    def _get_instance(self) -> Instance:
        target = self._configure()
        if not isinstance(target, Instance):
            raise TypeError("this FunctionApp runs process instances (isolation='process')")
        return target

    async def startup(self) -> None:
        """The cold start: import the handler now. Raises ConfigError or LoadError.

        ASGI lifespan calls this; a host app that mounts this one and runs its own
        lifespan can call it from there. Without it, the first request imports the handler.
        In process isolation it starts `min_instances` instances and waits for them.
        """
        target = self._configure()
        self._started = True
        if isinstance(target, Instance):
            await target.load()
        else:
            self._watch_edits(target)
            await target.start()
        self._start_timers()

    def _start_timers(self) -> None:
        """Timer triggers (SF_TIMER) fire on the same instances as the requests."""
        if self._timers is not None or not self.settings.timer:
            return
        timers = parse_timers(self.settings.timer)
        if timers:
            for schedule, payload in timers:
                logger.info("Timer trigger %r will fire with payload %r", schedule.text, payload)
            self._timers = spawn(_timers.run, timers, self._fire_timer, name="sf_asgi timers")

    async def _fire_timer(self, schedule: Schedule, payload: str) -> None:
        target = self._configure()
        event = _triggers.timer(payload, trigger_id=_trigger_id(schedule.text))
        request_id = new_request_ids()[0]
        logger.info("Timer %r fired: invocation %s", schedule.text, request_id)
        self._in_background += 1
        await self._background_invocation(target, event, request_id, "Timer invocation")

    def _reload(self, paths: list[str]) -> None:
        shown = ", ".join(os.path.relpath(path, self.settings.source_dir) for path in paths[:3])
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        logger.info("Reloading: %s%s changed; new instances import the new code", shown, more)
        if self._pool is not None:
            self._pool.retire_all()

    def kill_instances(self) -> None:
        """Kill every process instance at once, without the event loop (a forced exit)."""
        if self._pool is not None:
            self._pool.kill_all()

    async def shutdown(self) -> None:
        self._watcher.close()
        if self._timers is not None:
            self._timers.cancel()
            self._timers = None
        await self._drain_background()
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None
        if self._instance is not None:
            self._instance.close()
        if self._pool is not None:
            await self._pool.close()
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
            try:
                message = await receive()
            except asyncio.CancelledError:
                # The server stops without a lifespan shutdown (uvicorn after a second signal): the
                # instances go now, and the server's own teardown is not shown a traceback of ours.
                self.kill_instances()
                return
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except ConfigError as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"sf_asgi: {self._words(exc)}"})
                    return
                except LoadError as exc:
                    if self._settings is None or not self._settings.reload:
                        await send({"type": "lifespan.startup.failed", "message": f"sf_asgi: {self._words(exc)}"})
                        return
                    # The dev server stays up: requests get the error as a 502 until the file is fixed.
                    # The line looks as the server prints a failed startup, when it is uvicorn.
                    server_log = logging.getLogger("uvicorn.error") if logging.getLogger("uvicorn").handlers else logger
                    server_log.error("sf_asgi: %s", self._words(exc))
                    logger.warning("sf_asgi: serving the error as a 502 until the code is fixed (reload is on)")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _in_users_words(self, response: HTTPResponse | None) -> HTTPResponse | None:
        """An instance's LoadError names SF_* variables; the client is told in the user's words."""
        if response is None or not response.error or response.error.get("errorType") != "LoadError":
            return response
        words = in_words(str(response.error["errorMessage"]), self._how_run())
        return user_error_response({**response.error, "errorMessage": words})

    def _words(self, error: ConfigError | LoadError) -> str:
        """The error's message (and a LoadError's traceback), naming settings as the user gave them."""
        text = error.report() if isinstance(error, LoadError) else str(error)
        return in_words(text, self._how_run())

    def _how_run(self) -> str:
        """How settings were given: "code", "cli" (the sf-asgi command says so) or "env"."""
        return self._via or os.environ.get(VIA_VARIABLE, "env")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "CONNECT":
            # A 2xx would turn the connection into a tunnel, which a function cannot serve [choice].
            await _send(send, _CONNECT_REFUSED)
            return
        instance = self._instance
        pool = None
        if instance is None:
            try:
                target = self._configure()
            except ConfigError as exc:
                await _send(send, platform_error(500, "ConfigError", self._words(exc)))
                return
            if isinstance(target, Pool):
                pool = target
                self._start_lazily(pool)
            else:
                instance = target  # the first request, here only once
                self._start_timers()  # no lifespan ran: the first request starts them
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
                response: HTTPResponse | None = request
            else:
                event, integration = request
                raw = integration == "raw"
                if integration == "async":
                    self._run_async(instance or pool, event, request_id)  # type: ignore[arg-type]
                    response = _accepted(request_id)
                elif instance is not None:
                    response = await respond(instance, event, request_id, raw)
                else:
                    assert pool is not None
                    response = await _respond_process(pool, event, request_id, raw, watch, send)
                    response = self._in_users_words(response)
            if response is None:
                return  # nothing more to send
        except Exception:
            logger.exception("sf_asgi failed to handle a request; please report this as a bug")
            response = platform_error(500, "InternalError", "Internal error in sf_asgi")
        finally:
            self._watcher.unwatch(watch)
            watch.stop()
            request_id_var.reset(token)
        if watch.disconnected:
            # As on the platform, the invocation ran to its end; its response has nowhere to go.
            logger.warning(
                "Client disconnected before invocation %s finished; its %d response was dropped",
                request_id,
                response.status,
            )
            return
        await send({"type": "http.response.start", "status": response.status, "headers": wire_headers(response)})
        await send({"type": "http.response.body", "body": response.body})

    def _run_async(self, target: Instance | Pool, event: Any, request_id: str) -> None:
        """`?integration=async`: the invocation runs in the background; its outcome goes to the log."""
        self._in_background += 1
        spawn(self._background_invocation, target, event, request_id, name="sf_asgi async invocation")

    async def _background_invocation(
        self, target: Instance | Pool, event: Any, request_id: str, what: str = "Async invocation"
    ) -> None:
        try:
            _, response = await run_event(target, event, raw=True, request_id=request_id)
            # The platform can send the outcome to a queue; sf_asgi logs it (an error is logged already).
            if response.error is None:
                text = response.body.decode("utf-8", "replace")
                shown = text if len(text) <= 4096 else f"{text[:4096]}... ({len(text)} characters)"
                logger.info("%s %s returned: %s", what, request_id, shown)
            else:
                logger.warning("%s %s ended with a %d", what, request_id, response.status)
        except Exception:  # the server goes on serving; this is sf_asgi's own fault
            logger.exception("sf_asgi failed to run %s %s; please report this as a bug", what.lower(), request_id)
        finally:
            self._in_background -= 1

    async def _drain_background(self) -> None:
        """Async invocations and timer firings in flight finish (each within its timeout) before the pool closes."""
        if not self._in_background or self._settings is None:
            return
        limit = time.monotonic() + (self._settings.timeout or 60.0) + 2.0
        while self._in_background and time.monotonic() < limit:
            await anyio.sleep(0.01)

    async def invoke_event(self, event: Any, raw: bool = True, request_id: str = "") -> tuple[str, HTTPResponse]:
        """One invocation without HTTP (a trigger, `sf-asgi invoke`, the gateway): its request id and the response."""
        target = self._configure()
        if isinstance(target, Pool):
            self._start_lazily(target)
        self._in_background += 1
        try:
            return await run_event(target, event, raw, request_id)
        finally:
            self._in_background -= 1

    def _start_lazily(self, pool: Pool) -> None:
        """No lifespan ran (daphne, a host app that does not forward it): the first request starts the pool."""
        if not self._started:
            self._started = True
            self._watch_edits(pool)
            pool.start_lazily()
            self._start_timers()

    def _watch_edits(self, pool: Pool) -> None:
        if pool.settings.reload and self._reloader is None:
            self._reloader = spawn(_reload.watch, pool.settings.source_dir, self._reload, name="sf_asgi reload")


async def _respond_process(
    pool: Pool, event: Any, request_id: str, raw: bool, watch: _Watch, send: Send
) -> HTTPResponse | None:
    """One invocation on a process instance; None when there is nothing (more) to send."""
    payload = json.dumps(event, ensure_ascii=False).encode("utf-8")
    try:
        call = await pool.invoke(request_id, {"rid": request_id}, payload, watch.on_queue)
    except asyncio.CancelledError:  # the server's loop is torn down under it (a forced exit)
        with contextlib.suppress(Exception):
            await _send(send, platform_error(503, "ShuttingDown", "The server stopped before the invocation ended"))
        return None
    except QueueFull:
        return queue_full(pool.waiting, pool.settings.max_queue)
    except ClientGone:
        logger.info("Client left while request %s waited for an instance", request_id)
        return None
    return respond_call(call, request_id, raw)


def _event(scope: Scope, body: bytes, request_id: str, trace_id: str) -> tuple[Any, str] | HTTPResponse:
    """(event, its integration: "http", "raw" or "async"), or the 413 for an event over the limit."""
    query: bytes = scope.get("query_string", b"")
    if b"integration" in query:
        integration = parse_query(query)[0].get("integration")
        if integration in ("raw", "async"):  # both pass the body as it is (SPEC §7)
            return build_raw_event(body), integration
    event = build_event(
        scope["method"], scope["headers"], query, body, scope.get("client"), request_id, trace_id, time.time()
    )
    # The request JSON is limited, not the body alone (SPEC §6): measure it when it can matter.
    if len(event["body"]) > MAX_PAYLOAD - 256 * 1024:
        size = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_PAYLOAD:
            return _too_large(size)
    return event, "http"


def _trigger_id(text: str) -> str:
    """One trigger id per schedule, the same at every firing, as a real trigger's [choice]."""
    digest = hashlib.sha1(text.encode()).hexdigest()
    return "a1s" + digest[:17]


def _accepted(request_id: str) -> HTTPResponse:
    """`?integration=async`: the platform answers 202 at once [choice: no body; the request id, to find the log]."""
    return HTTPResponse(202, [(b"x-request-id", request_id.encode())], b"")


class _Watch:
    """Listens for the client leaving: at once for a queued request, after a while for a running one."""

    __slots__ = ("disconnected", "receive", "scope", "since", "waiter")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.since = time.monotonic()
        self.scope: Task | None = None
        self.disconnected = False
        self.waiter: Waiter | None = None

    def listen(self) -> None:
        if self.scope is None:
            self.scope = spawn(self._listen, name="sf_asgi disconnect watch")

    def on_queue(self, waiter: Waiter) -> None:
        """A queued client counts against max_queue only while it is connected (SPEC §6)."""
        self.waiter = waiter
        self.listen()

    async def _listen(self) -> None:
        # The body has been read: what receive() gives now can only be the disconnect.
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        if self.waiter is not None:
            self.waiter.leave()

    def stop(self) -> None:
        if self.scope is not None:
            self.scope.cancel()


def _listen_if_slow(watch: _Watch, now: float) -> None:
    if watch.scope is None and now - watch.since >= _WATCH_AFTER:
        watch.listen()


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
