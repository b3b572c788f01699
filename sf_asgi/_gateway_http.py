"""`type: http` (http.md): the request proxied to a URL, forwarding only what the gateway forwards.

By default only `User-Agent` and no query parameter go on; `'*': '*'` in `headers` or `query`
forwards the request's own, and the spec's entries override them. An array is sent as one
comma-joined value; with `omitEmptyHeaders` / `omitEmptyQueryParameters`, an empty one is
dropped. `{param}`s are substituted in `url`, `headers` and `query`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from ._gateway_event import substitute
from ._response import HTTPResponse, gateway_error

# Not forwarded either way: they describe one connection, not the request.
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"})
_RECOMPUTED = frozenset({"content-length", "content-encoding"})


def _request_headers(scope: Mapping[str, Any], drop: set[str]) -> list[tuple[str, str]]:
    """The request's headers as text, without those of its connection, its length and `drop`."""
    dropped = _HOP | {"content-length"} | drop
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name.decode("latin-1").lower() not in dropped
    ]


def _values(
    spec: Mapping[str, Any] | None, original: list[tuple[str, str]], params: Mapping[str, str], omit_empty: bool
) -> list[tuple[str, str]]:
    spec = dict(spec or {})
    out: dict[str, tuple[str, str]] = {}
    if spec.pop("*", None) == "*":
        for name, value in original:
            out[name.lower()] = (name, value)
    for name, value in spec.items():
        if value is None:
            value = ""
        text = ",".join(str(item) for item in value) if isinstance(value, list) else str(value)
        text = str(substitute(text, params))
        if omit_empty and text == "":
            out.pop(str(name).lower(), None)
            continue
        out[str(name).lower()] = (str(name), text)
    return list(out.values())


def request_parts(
    integration: Mapping[str, Any], params: Mapping[str, str], scope: Mapping[str, Any]
) -> tuple[str, str, list[tuple[str, str]], list[tuple[str, str]]]:
    """(method, url, headers, query) of the proxied request (pure)."""
    headers = _request_headers(scope, {"host"})
    agent = [(n, v) for n, v in headers if n.lower() == "user-agent"]
    spec_headers = dict(integration.get("headers") or {})
    if spec_headers.get("*") == "*":
        forwarded = _values(spec_headers, headers, params, bool(integration.get("omitEmptyHeaders")))
    else:
        forwarded = _values({**dict(agent), **spec_headers}, [], params, bool(integration.get("omitEmptyHeaders")))
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    sent_query = _values(integration.get("query"), query, params, bool(integration.get("omitEmptyQueryParameters")))
    method = str(integration.get("method") or scope["method"]).upper()
    return method, str(substitute(str(integration.get("url", "")), params)), forwarded, sent_query


async def proxy(
    integration: Mapping[str, Any], params: Mapping[str, str], scope: Mapping[str, Any], body: bytes
) -> HTTPResponse:
    method, url, headers, query = request_parts(integration, params, scope)
    return await _send_request(method, url, headers, query, body, integration.get("timeouts") or {})


async def container(
    base_url: str, integration: Mapping[str, Any], params: Mapping[str, str], scope: Mapping[str, Any], body: bytes
) -> HTTPResponse:
    """`type: serverless_containers` (containers.md): the request as it came, to the container's URL, with
    the integration's `context` base64-encoded in `X-Yc-ApiGateway-Operation-Context`."""
    import base64
    import json

    headers = _request_headers(scope, set())  # Host too: the container sees the gateway's
    if "context" in integration:
        context = json.dumps(substitute(integration["context"], params), separators=(",", ":"))
        headers.append(("X-Yc-ApiGateway-Operation-Context", base64.b64encode(context.encode()).decode()))
    raw_path = scope.get("raw_path") or str(scope["path"]).encode()
    query = scope.get("query_string", b"")
    url = base_url.rstrip("/") + raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    return await _send_request(str(scope["method"]), url, headers, [], body, integration.get("timeouts") or {})


async def _send_request(
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    query: list[tuple[str, str]],
    body: bytes,
    timeouts: Mapping[str, Any],
) -> HTTPResponse:
    import httpx

    timeout = httpx.Timeout(float(timeouts.get("read", 300)), connect=float(timeouts.get("connect", 5)))
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            answer = await client.request(
                method,
                url,
                headers=headers,
                params=httpx.QueryParams(tuple(query)) if query else None,
                content=body or None,
            )
    except httpx.TimeoutException:
        return gateway_error(504, f"Gateway Timeout: {url} did not answer in time")
    except httpx.HTTPError as exc:
        return gateway_error(502, f"Bad Gateway: {url}: {exc}")
    kept = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.headers.items()
        if name.lower() not in _HOP | _RECOMPUTED
    ]
    return HTTPResponse(answer.status_code, kept, answer.content)
