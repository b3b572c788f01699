"""The event API Gateway sends a function (payload format 0.1), from the function's own HTTP event (pure).

cloud-functions.md#request_v0: the direct-invocation event plus `url` (the request's path
and query), `path` (the spec's template), `pathParams`, `params` (every declared parameter)
and `multiValueParams`; `Cookie` and `Authorization` are delivered; the gateway adds its
own headers.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from ._event import canonical_header_key

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def substitute(value: Any, params: Mapping[str, str]) -> Any:
    """`{name}` replaced by a declared parameter's value, in strings at any depth (unknown names stay)."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: params.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {key: substitute(item, params) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, params) for item in value]
    return value


def declared_params(
    parameters: tuple[dict[str, Any], ...], path_params: Mapping[str, str], event: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """`params` and `multiValueParams`: the values of every parameter the operation declares."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for parameter in parameters:
        name, where = str(parameter.get("name", "")), parameter.get("in")
        values: list[str] = []
        if where == "path" and name in path_params:
            values = [path_params[name]]
        elif where == "query":
            values = list(event["multiValueQueryStringParameters"].get(name, []))
        elif where == "header":
            values = list(event["multiValueHeaders"].get(canonical_header_key(name), []))
        if values:
            single[name], multi[name] = values[-1], values
    return single, multi


def gateway_event(
    event: dict[str, Any],
    *,
    template: str,
    raw_path: str,
    query: str,
    path_params: Mapping[str, str],
    parameters: tuple[dict[str, Any], ...],
    delivered: list[tuple[str, str]],
    integration: Mapping[str, Any],
    gateway_id: str,
    scheme: str,
) -> dict[str, Any]:
    """The 0.1 event for `event` (built as for a direct call) routed through `template`."""
    headers, multi = event["headers"], event["multiValueHeaders"]
    for name, value in delivered:  # Cookie and Authorization reach the function through the gateway
        key = canonical_header_key(name)
        headers[key] = value
        multi.setdefault(key, []).append(value)
    address = headers.get("X-Real-Remote-Address", "")
    if address.startswith("["):  # the gateway writes ip:port, without the brackets of a direct call
        address = address[1:].replace("]:", ":", 1)
    trace = secrets.token_hex(16)
    span = secrets.token_hex(8)
    added = {
        "X-Real-Remote-Address": address,
        "X-Forwarded-Proto": scheme,
        "X-Envoy-Original-Path": raw_path + (f"?{query}" if query else ""),
        "X-Serverless-Gateway-Id": gateway_id,
        "X-Api-Gateway-Function-Id": str(integration.get("function_id", "")),
        "Traceparent": f"00-{trace}-{span}-01",
        "Uber-Trace-Id": f"{trace[:16]}:{span}:0:1",
    }
    for key, value in added.items():
        headers[key] = value
        multi[key] = [value]
    params, multi_params = declared_params(parameters, path_params, event)
    event["url"] = f"{raw_path}?{query}"  # with the query, and a trailing ? when there is none (seen in captures)
    event["path"] = template
    event["pathParams"] = dict(path_params)
    event["params"] = params
    event["multiValueParams"] = multi_params
    if "context" in integration:
        event["requestContext"]["apiGateway"] = {"operationContext": substitute(integration["context"], params)}
    return event


def version_1(event: dict[str, Any], raw_path: str, operation_id: str) -> dict[str, Any]:
    """Payload format 1.0 (cloud-functions.md#request_v1): AWS REST v1 keys, plus Yandex's three."""
    return {
        "version": "1.0",
        "resource": event["path"],
        "path": raw_path,
        "httpMethod": event["httpMethod"],
        "headers": event["headers"],
        "multiValueHeaders": event["multiValueHeaders"],
        "queryStringParameters": event["queryStringParameters"],
        "multiValueQueryStringParameters": event["multiValueQueryStringParameters"],
        "requestContext": event["requestContext"],
        "pathParameters": event["pathParams"],
        "body": event["body"],
        "isBase64Encoded": event["isBase64Encoded"],
        "parameters": event["params"],
        "multiValueParameters": event["multiValueParams"],
        "operationId": operation_id,
    }
