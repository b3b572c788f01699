"""One invocation's outcome as the platform answers it, on a thread instance or the process pool.

The HTTP front, `sf-asgi invoke`, the timers and `?integration=async` all end here, so a
result becomes a response by one set of rules (SPEC §4, §5, §6).
"""

from __future__ import annotations

import json
from typing import Any

from ._concurrency import InvocationTimeout, QueueFull
from ._context import Context
from ._event import new_request_ids
from ._instance import Instance, UserCodeError
from ._logging import logger, request_id_var
from ._pool import Pool, Waiter
from ._process import Call
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
    user_error_response,
)


def respond_call(call: Call, request_id: str, raw: bool) -> HTTPResponse:
    """A process instance's outcome as the platform answers it (SPEC §4, §5, §6)."""
    if call.failure is not None:
        return call.failure
    meta = call.meta
    if not meta.get("ok"):
        response = user_error_response(meta.get("error") or {"errorMessage": "", "errorType": "Exception"})
        logger.error("Invocation %s failed: %s", request_id, response.body.decode("utf-8"))
        return response
    if "too_large" in meta:
        size = int(meta["too_large"])
        logger.error("Invocation %s returned %d bytes, over the 3.5 MB limit", request_id, size)
        return platform_error(502, "ResponseTooLarge", f"Function response is {size} bytes, over the 3.5 MB limit")
    text = call.payload.decode("utf-8")
    if raw:
        return raw_response(text)
    try:
        return render_result(text)
    except MalformedResult as exc:
        logger.error("Invocation %s returned a malformed response: %s", request_id, exc)
        return malformed_response(text)


def _queue_full(waiting: int, max_queue: int) -> HTTPResponse:
    return platform_error(
        429,
        "TooManyRequests",
        f"All executors are overloaded: {waiting} requests are already waiting (SF_MAX_QUEUE={max_queue})",
    )


async def respond(
    instance: Instance, event: Any, request_id: str, raw: bool = False, context: Context | None = None
) -> HTTPResponse:
    """Run one invocation and answer as the platform would: the one path from result to response."""
    try:
        result, text = await instance.invoke(event, request_id, context)
    except QueueFull:
        return queue_full(instance.waiting, instance.settings.max_queue)
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


def queue_full(waiting: int, max_queue: int) -> HTTPResponse:
    return platform_error(
        429,
        "TooManyRequests",
        f"All executors are overloaded: {waiting} requests are already waiting (SF_MAX_QUEUE={max_queue})",
    )


def _not_watched(waiter: Waiter) -> None:
    """Nobody can leave the queue: the invocation has no client (a timer, the async integration)."""


async def run_event(target: Instance | Pool, event: Any, raw: bool, request_id: str = "") -> tuple[str, HTTPResponse]:
    """One invocation without an HTTP client: (its request id, the response the platform would give)."""
    request_id = request_id or new_request_ids()[0]
    token = request_id_var.set(request_id)
    try:
        if isinstance(target, Instance):
            return request_id, await respond(target, event, request_id, raw)
        payload = json.dumps(event, ensure_ascii=False).encode("utf-8")
        try:
            call = await target.invoke(request_id, {"rid": request_id}, payload, _not_watched)
        except QueueFull:
            return request_id, queue_full(target.waiting, target.settings.max_queue)
        return request_id, respond_call(call, request_id, raw)
    finally:
        request_id_var.reset(token)
