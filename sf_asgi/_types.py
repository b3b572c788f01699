"""The shapes sf_asgi exchanges with handlers and with the ASGI server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NotRequired, TypedDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A handler is `handler(event, context)`, sync or `async def`.
Handler = Callable[[Any, Any], Any]


class Identity(TypedDict):
    sourceIp: str
    userAgent: str


class RequestContext(TypedDict):
    identity: Identity
    httpMethod: str
    requestId: str
    requestTime: str
    requestTimeEpoch: int


class Event(TypedDict):
    """The event of an HTTP invocation (SPEC §2)."""

    httpMethod: str
    headers: dict[str, str]
    multiValueHeaders: dict[str, list[str]]
    queryStringParameters: dict[str, str]
    multiValueQueryStringParameters: dict[str, list[str]]
    requestContext: RequestContext
    body: str
    isBase64Encoded: bool
    url: str
    params: dict[str, Any]
    multiValueParams: dict[str, list[Any]]
    pathParams: dict[str, str]


class HandlerResponse(TypedDict, total=False):
    """What an HTTP handler returns (SPEC §4); every key is optional."""

    statusCode: int
    headers: dict[str, str]
    multiValueHeaders: dict[str, list[str]]
    body: str
    isBase64Encoded: bool


class ErrorBody(TypedDict):
    """The JSON body of a 502 for an error in user code (SPEC §5)."""

    errorMessage: str
    errorType: str
    stackTrace: NotRequired[list[str]]


class TriggerEvent(TypedDict):
    """What a trigger calls a function with (`integration=raw`): always a list, even of one."""

    messages: list[dict[str, Any]]
