"""`GatewayApp`: a Yandex API Gateway spec served locally, each function with its own instances.

The ASGI app routes as the gateway does (`_gateway_spec`), builds the gateway's event for a
`cloud_functions` integration (`_gateway_event`) and runs it on that function's FunctionApp,
so the result goes through the same response rules as a direct call. `dummy` is answered
here; integrations that need the cloud answer 501 and are marked in the route table.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from ._app import FunctionApp, _read_body, _send
from ._config import ConfigError, in_words
from ._event import build_event, new_request_ids
from ._gateway_auth import Authorizers
from ._gateway_event import gateway_event, substitute, version_1
from ._gateway_http import container, proxy
from ._gateway_spec import Route, SpecError, function_ids, load_routes, param_names
from ._logging import logger
from ._response import HTTPResponse, gateway_error, wire_headers
from ._types import Receive, Scope, Send

# The gateway's own request and response limit (gateway-facts §1.9), read as MiB like the function's [choice].
GATEWAY_MAX = 2_621_440
_DELIVERED = (b"cookie", b"authorization")  # stripped on a direct call, delivered by the gateway


def load_spec(spec: str | Path | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The spec as data, and what to call it in messages (its file name)."""
    if isinstance(spec, Mapping):
        return spec, "the spec"
    path = str(spec)
    return read_yaml(path, path, "give the path of the gateway's OpenAPI spec") or {}, path


def read_yaml(path: str, label: str, fix: str) -> Any:
    """A YAML file's data; SpecError naming `label`, with the line and column of a syntax error."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - the gateway extra brings it
        raise SpecError('reading YAML needs PyYAML: pip install "sf_asgi[gateway]"') from None
    try:
        with open(path, encoding="utf-8") as file:
            return yaml.safe_load(file)
    except OSError as exc:
        raise SpecError(f"{label}: {exc.strerror}: {fix}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{label}: {where}not valid YAML: {problem}") from None


def settings_of(target: str | Mapping[str, Any]) -> dict[str, Any]:
    """A function's mapping: `functions/todo/index.handler` (a folder, then the entry point) or its settings."""
    if isinstance(target, str):
        folder, _, entry = target.rpartition("/")
        return {"source": folder or ".", "handler": entry}
    return dict(target)


def function_app(function_id: str, target: str | Mapping[str, Any], base: str) -> FunctionApp:
    """`functions/todo/index.handler` (a folder, then the entry point) or a mapping of settings."""
    settings = settings_of(target)
    if "source" in settings:
        settings["source_dir"] = settings.pop("source")
    settings.setdefault("function_name", function_id)
    settings["source_dir"] = os.path.normpath(os.path.join(base, settings.get("source_dir", ".")))
    if settings.get("env_file"):
        settings["env_file"] = os.path.join(base, settings["env_file"])
    environment = settings.pop("environment", None)
    if environment:  # the version's inline environment, as a deploy config has it: an env file of its own
        if not isinstance(environment, Mapping):
            raise SpecError(f"function {function_id}: environment is a mapping of NAME: value")
        fd, path = tempfile.mkstemp(prefix=f"sf-asgi-{function_id}-", suffix=".env")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(f"{name}={value}\n" for name, value in environment.items())
        settings["env_file"] = path
    handler = settings.pop("handler", "")
    if not handler:
        raise SpecError(
            f"function {function_id}: give its entry point, e.g. {function_id}=functions/todo/index.handler"
        )
    return FunctionApp(handler, **settings)


def _function_app(function_id: str, target: str | Mapping[str, Any], base: str) -> FunctionApp:
    """`function_app`, with its errors naming the function and the field to fix."""
    try:
        app = function_app(function_id, target, base)
    except (ConfigError, TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"function {function_id}: {in_words(str(exc), 'code')}") from None
    if not os.path.isdir(app.settings.source_dir):
        raise SpecError(
            f"function {function_id}: its folder {app.settings.source_dir} does not exist: "
            "fix its source: in --functions FILE, or the DIR of --function ID=DIR/FILE.FUNCTION"
        )
    return app


class GatewayApp:
    """Serve an API Gateway spec, e.g. `GatewayApp("openapi.yaml", functions={"d4e1abc": "todo/index.handler"})`."""

    def __init__(
        self,
        spec: str | Path | Mapping[str, Any],
        functions: Mapping[str, str | Mapping[str, Any]] | None = None,
        variables: Mapping[str, str] | None = None,
        gateway_id: str = "d5dsfc6jvc4rb8kgsavq",
        buckets: Mapping[str, str] | None = None,
        containers: Mapping[str, str] | None = None,
    ) -> None:
        data, self.source = load_spec(spec)
        self.routes, self.ignore_trailing_slashes = load_routes(data, dict(variables or {}), self.source)
        functions = dict(functions or {})
        base = "." if isinstance(spec, Mapping) else str(Path(str(spec)).parent)
        for function_id, operations in function_ids(self.routes).items():
            if function_id not in functions:
                raise SpecError(
                    f"{self.source}: {', '.join(operations)} call function_id {function_id}, which has no local "
                    f"function: add --function {function_id}=DIR/FILE.FUNCTION (or map it in --functions FILE)"
                )
        self.functions = {fid: _function_app(fid, target, base) for fid, target in functions.items()}
        self._targets, self._base = functions, base
        # A tag names a version: each (function, tag) is a function version of its own, with its own
        # instances and its tag as context.function_version, as on the platform [choice: one local code].
        self._versions: dict[tuple[str, str], FunctionApp] = {}
        self.gateway_id = gateway_id
        # object_storage integrations read a local folder per bucket (relative to the spec's folder).
        self.containers = dict(containers or {})  # serverless_containers: container_id -> a local URL
        self.buckets = {name: os.path.normpath(os.path.join(base, folder)) for name, folder in (buckets or {}).items()}
        self._authorizers = Authorizers(self._call_authorizer, base)
        self._names = {route.template: param_names(route.template) for route in self.routes}

    def route_table(self) -> list[str]:
        """One line per route, as `sam local start-api` prints them."""
        rows = []
        for route in sorted(self.routes, key=lambda r: (r.template, r.method)):
            integration = route.integration
            if route.kind == "cloud_functions":
                app = self.functions[str(integration["function_id"])]
                target = f"{integration['function_id']} -> {app.settings.source_dir}/{app.settings.handler}"
            elif route.kind == "dummy":
                target = f"{integration.get('http_code', 200)}"
            elif route.kind == "object_storage" and str(integration.get("bucket")) in self.buckets:
                target = f"bucket {integration['bucket']} -> {self.buckets[str(integration['bucket'])]}/"
            elif route.kind == "http":
                target = f"proxy -> {integration.get('url', '')}"
            elif route.kind == "serverless_containers":
                cid = str(integration.get("container_id"))
                target = (
                    f"container {cid} -> {self.containers[cid]}"
                    if cid in self.containers
                    else (f"no --container {cid}=URL: answers 501")
                )
            elif route.kind == "object_storage":
                target = f"no --bucket {integration.get('bucket')}=DIR: answers 501"
            else:
                target = "not run locally: answers 501"
            rows.append(
                f"{route.method if route.method != '*' else 'ANY':<7} {route.template:<32} {route.kind:<16} {target}"
            )
        return rows

    async def startup(self) -> None:
        for line in self.route_table():
            logger.info("Route %s", line)
        for app in self.functions.values():
            await app.startup()

    async def shutdown(self) -> None:
        for app in [*self.functions.values(), *self._versions.values()]:
            await app.shutdown()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # ConfigError or LoadError of one of the functions: it names the fix
                    await send({"type": "lifespan.startup.failed", "message": f"sf_asgi gateway: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def match(
        self, method: str, path: str
    ) -> tuple[tuple[Route, dict[str, str]] | HTTPResponse, dict[str, Any] | None]:
        """(the route for a request and its path parameters, or the gateway's 404 or 405 [choice]),
        and the CORS rule of its path (every route of a path carries the same)."""
        on_path: Route | None = None
        fallback: tuple[Route, dict[str, str]] | None = None
        for route in self.routes:
            found = route.match(path, self.ignore_trailing_slashes)
            if found is None:
                continue
            on_path = on_path or route
            names = self._names[route.template]
            params = {names[group]: value for group, value in found.items()}
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return (route, params), route.cors
            if route.method == "*" and fallback is None:
                fallback = (route, params)
        if on_path is None:
            return gateway_error(404, "Not Found"), None
        return fallback or gateway_error(405, "Method Not Allowed"), on_path.cors

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(scope, receive)
        if body is None:
            return
        if isinstance(body, HTTPResponse):
            await _send(send, body)
            return
        if len(body) > GATEWAY_MAX:
            await _send(send, gateway_error(413, "Request Entity Too Large"))
            return
        path = scope.get("path", "/")
        found, rule = self.match(scope["method"], path)
        origin = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"origin"), None)
        if scope["method"] == "OPTIONS" and rule is not None and rule["origin"] is not False:
            await _send(send, preflight(rule, origin, scope["headers"]))  # answered by the gateway itself
            return
        if isinstance(found, HTTPResponse):
            await _send(send, found)
            return
        route, params = found
        response = await self._integrate(route, params, scope, body)
        if len(response.body) > GATEWAY_MAX:
            response = gateway_error(502, "Response is over the gateway's 2.5 MB limit")
        if rule is not None and rule["origin"] is not False and origin is not None:
            response.headers.extend(cors_headers(rule, origin))
        await send({"type": "http.response.start", "status": response.status, "headers": wire_headers(response)})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else response.body})

    def _version(self, function_id: str, tag: Any, params: Mapping[str, str]) -> FunctionApp:
        """The function, or the version its `tag` (with {param}s substituted) names."""
        name = str(substitute(str(tag), params)) if tag else "$latest"
        if name == "$latest":
            return self.functions[function_id]
        app = self._versions.get((function_id, name))
        if app is None:
            settings = {**settings_of(self._targets[function_id]), "function_version": name}
            app = function_app(function_id, settings, self._base)
            self._versions[(function_id, name)] = app  # started by its first invocation
        return app

    async def _call_authorizer(self, function_id: str, event: dict[str, Any]) -> HTTPResponse:
        return (await self.functions[function_id].invoke_event(event, raw=True))[1]

    def _event(
        self, route: Route, params: dict[str, str], scope: Scope, body: bytes
    ) -> tuple[str, dict[str, Any], str]:
        """(request id, the gateway's 0.1 event, the raw path) for a request on `route`."""
        request_id, trace_id = new_request_ids()
        query = scope.get("query_string", b"")
        event = build_event(
            scope["method"], scope["headers"], query, body, scope.get("client"), request_id, trace_id, time.time()
        )
        delivered = [(n.decode(), v.decode("utf-8", "replace")) for n, v in scope["headers"] if n in _DELIVERED]
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("utf-8", "replace") or scope["path"]
        routed = gateway_event(
            dict(event),
            template=route.template,
            raw_path=raw_path,
            query=query.decode("utf-8", "replace"),
            path_params=params,
            parameters=route.parameters,
            delivered=delivered,
            integration=route.integration,
            gateway_id=self.gateway_id,
            scheme=scope.get("scheme", "http"),
        )
        return request_id, routed, raw_path

    async def _integrate(self, route: Route, params: dict[str, str], scope: Scope, body: bytes) -> HTTPResponse:
        """The authorizer's verdict, then the integration's answer."""
        if route.kind == "object_storage":
            folder = self.buckets.get(str(route.integration.get("bucket")))
            if folder is None:
                bucket = route.integration.get("bucket")
                return gateway_error(501, f"bucket {bucket} has no local folder: add --bucket {bucket}=DIR")
            return _object(route, params, folder)
        if route.kind == "serverless_containers":
            container_id = str(route.integration.get("container_id"))
            if container_id not in self.containers:
                return gateway_error(
                    501, f"container {container_id} has no local URL: add --container {container_id}=URL"
                )
            _, event, _ = self._event(route, params, scope, body)
            return await container(self.containers[container_id], route.integration, event["params"], scope, body)
        if route.kind == "http":
            _, event, _ = self._event(route, params, scope, body)  # for the declared parameters' values
            return await proxy(route.integration, event["params"], scope, body)
        if route.kind not in ("dummy", "cloud_functions"):
            return gateway_error(
                501, f"sf_asgi does not run {route.kind} integrations locally ({route.method} {route.template})"
            )
        if route.kind == "dummy" and route.authorizer is None:
            return _dummy(route, params, scope)
        request_id, event, raw_path = self._event(route, params, scope, body)
        if route.authorizer is not None:
            cookie = event["headers"].get("Cookie", "")
            verdict = await self._authorizers.verdict(route.authorizer, event, route.template, raw_path, cookie)
            if isinstance(verdict, HTTPResponse):
                return verdict
            event["requestContext"]["authorizer"] = verdict
        if route.kind == "dummy":
            return _dummy(route, params, scope)
        if str(route.integration.get("payload_format_version", "0.1")) == "1.0":
            event = version_1(event, raw_path, route.operation_id)
        app = self._version(str(route.integration["function_id"]), route.integration.get("tag"), params)
        return (await app.invoke_event(event, raw=False, request_id=request_id))[1]


def _object(route: Route, params: Mapping[str, str], folder: str) -> HTTPResponse:
    """`type: object_storage` (object-storage.md) from a local folder: `object` with {param}s,
    `default_object` instead of a 404 (with a 200), `error_object` as the body of a 404 [choice]."""
    integration = route.integration

    def read(key: str) -> tuple[bytes, str] | None:
        path = os.path.normpath(os.path.join(folder, key.lstrip("/")))
        if not path.startswith(folder + os.sep) or not os.path.isfile(path):  # no way out of the bucket
            return None
        with open(path, "rb") as file:
            return file.read(), mimetypes.guess_type(path)[0] or "application/octet-stream"

    found = read(str(substitute(integration.get("object", ""), params)))
    status = 200
    if found is None and integration.get("default_object"):
        found = read(str(integration["default_object"]))
    if found is None and integration.get("error_object"):
        found, status = read(str(integration["error_object"])), 404
    if found is None:
        return gateway_error(404, "Not Found")
    body, content_type = found
    return HTTPResponse(status, [(b"content-type", content_type.encode())], body)


def _listed(value: Any) -> str:
    return ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)


def cors_headers(rule: Mapping[str, Any], origin: str | None) -> list[tuple[bytes, bytes]]:
    """The CORS headers of a response, from the path's rule (cors.md)."""
    allowed = rule["origin"]
    if allowed is True:
        value = origin or "*"
    elif isinstance(allowed, list):  # the request's Origin when listed, else the first [choice]
        value = origin if origin is not None and origin in allowed else (str(allowed[0]) if allowed else "")
    else:
        value = str(allowed)
    headers = [(b"access-control-allow-origin", value.encode())]
    if "exposedHeaders" in rule:
        headers.append((b"access-control-expose-headers", _listed(rule["exposedHeaders"]).encode()))
    if "credentials" in rule:
        headers.append((b"access-control-allow-credentials", b"true" if rule["credentials"] else b"false"))
    return headers


def preflight(rule: Mapping[str, Any], origin: str | None, request: list[tuple[bytes, bytes]]) -> HTTPResponse:
    """The gateway's answer to an OPTIONS request on a path with a CORS rule."""
    headers = cors_headers(rule, origin)
    asked = {name: value for name, value in request if name.startswith(b"access-control-request-")}
    # Without `methods` the docs say the gateway echoes the request's headers; the method is what a
    # browser needs, so that is echoed [choice].
    methods = _listed(rule["methods"]).encode() if "methods" in rule else asked.get(b"access-control-request-method")
    if methods:
        headers.append((b"access-control-allow-methods", methods))
    if "allowedHeaders" in rule:
        headers.append((b"access-control-allow-headers", _listed(rule["allowedHeaders"]).encode()))
    if "maxAge" in rule:
        headers.append((b"access-control-max-age", str(int(rule["maxAge"])).encode()))
    return HTTPResponse(int(rule.get("optionsSuccessStatus", 200)), headers, b"")


def _dummy(route: Route, params: Mapping[str, str], scope: Scope) -> HTTPResponse:
    """`type: dummy` (dummy.md): `content` by the client's Accept, `*` as the fallback, else 415."""
    integration = route.integration
    content = integration.get("content") or {}
    accept = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"accept"), "")
    chosen = _negotiate(accept, list(content))
    if chosen is None:
        return gateway_error(415, "Unsupported Media Type")
    headers = [
        (str(name).encode(), str(substitute(value, params)).encode())
        for name, value in (integration.get("http_headers") or {}).items()
    ]
    if chosen != "*" and not any(name.lower() == b"content-type" for name, _ in headers):
        headers.append((b"content-type", chosen.encode()))
    text = str(substitute(content.get(chosen, ""), params)) if content else ""
    return HTTPResponse(integration.get("http_code", 200), headers, text.encode())


def _negotiate(accept: str, offered: list[str]) -> str | None:
    """The offered media type that best matches Accept (then `*`), or None: the 415."""
    if not offered:
        return "*"
    if not accept.strip():
        return offered[0]  # no Accept: any of them (dummy.md)
    ranges = []
    for part in accept.split(","):
        media, *options = (item.strip() for item in part.split(";"))
        quality = 1.0
        for option in options:
            if option.startswith("q="):
                with contextlib.suppress(ValueError):
                    quality = float(option[2:])
        ranges.append((quality, media.lower()))
    best: tuple[float, int, str] | None = None
    for quality, media in ranges:
        if quality <= 0:
            continue
        for offer in offered:
            if offer == "*":
                continue
            kind = offer.lower().partition("/")[0]
            if media in (offer.lower(), "*/*", f"{kind}/*"):
                exact = 2 if media == offer.lower() else (1 if media != "*/*" else 0)
                if best is None or (quality, exact) > best[:2]:
                    best = (quality, exact, offer)
    if best is not None:
        return best[2]
    return "*" if "*" in offered else None
