"""Function authorizers (function-authorizer.md): credentials, the authorizer's event, its verdict, its cache.

401 when the credentials are missing, 403 when the function says `isAuthorized: false`, 500
when it fails or answers something else; its `context` becomes `requestContext.authorizer`
of the integration's event. Verdicts are cached for `authorizer_result_ttl_in_seconds`, by
the path template (or the URI) with the method and the credentials.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ._event import canonical_header_key
from ._response import HTTPResponse, gateway_error

Verdict = dict[str, Any] | HTTPResponse  # the context on success, else the gateway's answer


def cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def credentials(authorizer: Mapping[str, Any], event: Mapping[str, Any], cookie: str) -> str | None:
    """What the scheme reads (the Authorization header, or the API key), or None when it is missing."""
    kind = authorizer["kind"]
    if kind in ("basic", "bearer"):
        value = event["headers"].get("Authorization", "")
        prefix = "Basic " if kind == "basic" else "Bearer "
        return value if value[: len(prefix)].lower() == prefix.lower() and value[len(prefix) :].strip() else None
    where, key = authorizer["in"], authorizer["key"]
    if where == "query":
        found = event["queryStringParameters"].get(key)
    elif where == "cookie":
        found = cookies(cookie).get(key)
    else:
        found = event["headers"].get(canonical_header_key(key))
    prefix = authorizer.get("prefix", "")
    if found and prefix:  # a JWT's identitySource prefix, e.g. "Bearer "
        found = found[len(prefix) :] if found.startswith(prefix) else None
    return found or None


def authorizer_event(event: Mapping[str, Any], template: str, raw_path: str, cookie: str) -> dict[str, Any]:
    return {
        "resource": template,
        "path": raw_path,
        "httpMethod": event["httpMethod"],
        "headers": event["headers"],
        "queryStringParameters": event["queryStringParameters"],
        "pathParameters": event["pathParams"],
        "requestContext": event["requestContext"],
        "cookies": cookies(cookie),
    }


class Authorizers:
    """The verdicts of the spec's function authorizers, cached as the gateway caches them."""

    def __init__(self, call: Callable[[str, dict[str, Any]], Awaitable[HTTPResponse]], base: str = ".") -> None:
        self._call = call  # (function_id, event) -> the raw invocation's response
        self._base = base  # the spec's folder: a JWKS file is relative to it
        self._cache: dict[tuple[str, ...], tuple[float, Verdict]] = {}

    async def verdict(
        self, authorizer: Mapping[str, Any], event: Mapping[str, Any], template: str, raw_path: str, cookie: str
    ) -> Verdict:
        secret = credentials(authorizer, event, cookie)
        if secret is None:
            return gateway_error(401, "Unauthorized")
        where = template if authorizer["mode"] == "path" else f"{raw_path}?{event.get('url', '').partition('?')[2]}"
        key = (authorizer["function_id"], where, event["httpMethod"], secret)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if authorizer["kind"] == "jwt":
            verdict = await self._jwt(authorizer, secret)
        else:
            response = await self._call(authorizer["function_id"], authorizer_event(event, template, raw_path, cookie))
            verdict = _read(response)
        if authorizer["ttl"] > 0 and not (isinstance(verdict, HTTPResponse) and verdict.status == 500):
            self._cache[key] = (now + authorizer["ttl"], verdict)
        return verdict

    async def _jwt(self, authorizer: Mapping[str, Any], token: str) -> Verdict:
        """A JWT checked as the gateway checks it: signature by the JWKS key of its kid, exp, nbf, iat,
        iss, aud, the required claims (401 when any fails), then the operation's scopes (403)."""
        import jwt

        try:
            keys = await _jwks(authorizer["jwks"], self._base)
        except (OSError, ValueError) as exc:
            return gateway_error(
                500, f"Internal Server Error: the JWKS at {authorizer['jwks']} could not be read: {exc}"
            )
        try:
            header = jwt.get_unverified_header(token)
            key = keys[header["kid"]] if "kid" in header else next(iter(keys.values()))
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[a for a in _ALGORITHMS if a == header.get("alg")],
                audience=authorizer["audiences"] or None,
                issuer=authorizer["issuers"] or None,
                options={"require": authorizer["required"], "verify_aud": bool(authorizer["audiences"])},
            )
        except (jwt.PyJWTError, KeyError, StopIteration):
            return gateway_error(401, "Unauthorized")
        granted = claims.get("scope", claims.get("scp", ""))
        scopes = granted.split() if isinstance(granted, str) else [str(item) for item in granted]
        if not set(authorizer["scopes"]) <= set(scopes):
            return gateway_error(403, "Forbidden")
        return {
            "jwt": {
                "claims": {k: v if isinstance(v, str) else json.dumps(v) for k, v in claims.items()},
                "scopes": scopes,
            }
        }


_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")


async def _jwks(where: str, base: str) -> dict[str, Any]:
    """The keys of a JWKS, by kid: from a URL, or a file (relative to the spec's folder)."""
    import jwt

    if where.startswith(("http://", "https://")):
        import httpx

        async with httpx.AsyncClient(timeout=5) as client:
            try:
                answer = await client.get(where)
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                raise OSError(str(exc)) from None
            data = answer.json()
    else:
        import os

        path = where.removeprefix("file://")
        with open(os.path.join(base, path), encoding="utf-8") as file:
            data = json.load(file)
    try:
        keys = jwt.PyJWKSet.from_dict(data).keys
    except jwt.PyJWTError as exc:
        raise ValueError(str(exc)) from None
    return {str(key.key_id): key for key in keys}


def _read(response: HTTPResponse) -> Verdict:
    if response.error is not None or response.status != 200:
        return gateway_error(500, "Internal Server Error: the authorizer failed")
    try:
        result = json.loads(response.body)
    except ValueError:
        result = None
    if not isinstance(result, dict) or type(result.get("isAuthorized")) is not bool:
        return gateway_error(500, 'Internal Server Error: the authorizer must return {"isAuthorized": true or false}')
    if not result["isAuthorized"]:
        return gateway_error(403, "Forbidden")
    context = result.get("context")
    return dict(context) if isinstance(context, dict) else {}
