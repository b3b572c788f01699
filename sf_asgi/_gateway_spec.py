"""A Yandex API Gateway spec as routes: parsing, variables, `$ref`s and path templates (pure).

Facts: yandex-cloud/docs en/api-gateway/concepts/extensions/ (index, parametrization,
greedy-parameters, any-method, cloud-functions, dummy). A broken spec raises SpecError with
the file, the place in it and the fix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ANY_METHOD = "x-yc-apigateway-any-method"
INTEGRATION = "x-yc-apigateway-integration"
CORS = "x-yc-apigateway-cors"
# What sf_asgi runs locally; the rest are named in the route table and answered with a 501.
RUNNABLE = frozenset({"cloud_functions", "dummy", "http", "object_storage", "serverless_containers"})
KNOWN = RUNNABLE | {
    "http",
    "object_storage",
    "serverless_containers",
    "cloud_datasphere",
    "cloud_datastreams",
    "cloud_ymq",
    "cloud_ydb",
    "swagger",
    "serverless_workflows",
}
_VARIABLE = re.compile(r"\$\{var\.([A-Za-z_][A-Za-z0-9_.-]*)\}")
_PARAM = re.compile(r"\{([^{}/]+?)(\+?)\}")


class SpecError(ValueError):
    """The spec cannot be served; the message names the file, the place and the fix."""


@dataclasses.dataclass(frozen=True)
class Route:
    method: str  # upper case, or "*" for x-yc-apigateway-any-method
    template: str  # the spec's path, e.g. /todos/{id}
    pattern: re.Pattern[str]
    integration: dict[str, Any]
    operation_id: str
    parameters: tuple[dict[str, Any], ...]  # the operation's and the path's declared parameters
    cors: dict[str, Any] | None = None  # the path's CORS rule (or the spec's), None when none applies
    authorizer: dict[str, Any] | None = None  # the function authorizer that guards it (see _authorizer)

    @property
    def kind(self) -> str:
        return str(self.integration.get("type", ""))

    def match(self, path: str, ignore_trailing_slashes: bool) -> dict[str, str] | None:
        if ignore_trailing_slashes and len(path) > 1:
            path = path.rstrip("/") or "/"
        found = self.pattern.fullmatch(path)
        return None if found is None else {name: value for name, value in found.groupdict().items()}


def compile_template(template: str, ignore_trailing_slashes: bool) -> re.Pattern[str]:
    """`/a/{id}/{rest+}` as a regex: `{id}` is one segment, `{rest+}` any number of them (greedy-parameters.md)."""
    out, last = "^", 0
    for found in _PARAM.finditer(template):
        out += re.escape(template[last : found.start()])
        name = found.group(1)
        group = re.sub(r"\W", "_", name)
        out += f"(?P<{group}>.+)" if found.group(2) else f"(?P<{group}>[^/]+)"
        last = found.end()
    tail = template[last:]
    if ignore_trailing_slashes and len(template) > 1:
        tail = tail.rstrip("/")
    return re.compile(out + re.escape(tail) + "$")


def param_names(template: str) -> dict[str, str]:
    """Regex group name -> the spec's parameter name."""
    return {re.sub(r"\W", "_", m.group(1)): m.group(1) for m in _PARAM.finditer(template)}


def substitute_variables(value: Any, variables: Mapping[str, Any], where: str, source: str) -> Any:
    """`${var.name}` replaced everywhere in the spec (parametrization.md)."""
    if isinstance(value, str):
        whole = _VARIABLE.fullmatch(value)
        if whole:  # a whole value keeps its type (a number, a bool)
            return _variable(whole.group(1), variables, where, source)
        return _VARIABLE.sub(lambda m: str(_variable(m.group(1), variables, where, source)), value)
    if isinstance(value, dict):
        return {key: substitute_variables(item, variables, f"{where}.{key}", source) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_variables(item, variables, f"{where}[{i}]", source) for i, item in enumerate(value)]
    return value


def _variable(name: str, variables: Mapping[str, Any], where: str, source: str) -> Any:
    if name not in variables:
        raise SpecError(
            f"{source}: {where}: ${{var.{name}}} is not defined: add it to x-yc-apigateway.variables "
            f"with a default, or pass --var {name}=VALUE"
        )
    return variables[name]


def spec_variables(spec: Mapping[str, Any], given: Mapping[str, str], source: str) -> dict[str, Any]:
    """The defaults of `x-yc-apigateway.variables`, with the given values over them (checked against `enum`)."""
    top = _mapping(spec.get("x-yc-apigateway"), "x-yc-apigateway", source)
    declared = _mapping(top.get("variables"), "x-yc-apigateway.variables", source)
    values: dict[str, Any] = {}
    for name, definition in declared.items():
        if not isinstance(definition, dict) or "default" not in definition:
            raise SpecError(f"{source}: x-yc-apigateway.variables.{name}: give it a default")
        enum = definition.get("enum")
        if enum is not None and definition["default"] not in enum:
            raise SpecError(f"{source}: x-yc-apigateway.variables.{name}: the default is not in its enum")
        values[name] = definition["default"]
    for name, value in given.items():
        enum = (declared.get(name) or {}).get("enum")
        if enum is not None and value not in [str(item) for item in enum]:
            raise SpecError(f"{source}: --var {name}={value}: the spec allows {', '.join(map(str, enum))}")
        values[name] = value
    return values


def load_routes(spec: Mapping[str, Any], variables: Mapping[str, str], source: str) -> tuple[list[Route], bool]:
    """Every operation of the spec as a Route, most specific first, and `ignoreTrailingSlashes`."""
    if not isinstance(spec, dict):
        raise SpecError(f"{source}: the spec is not a YAML mapping: start it with openapi: 3.0.0 and paths:")
    values = spec_variables(spec, variables, source)
    spec = substitute_variables(spec, values, "spec", source)
    paths = spec.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise SpecError(f"{source}: no paths: add a paths: section with at least one operation")
    ignore = (spec.get("x-yc-apigateway") or {}).get("ignoreTrailingSlashes", True) is not False
    components = _mapping(spec.get("components"), "components", source)
    shared = _mapping(components.get(INTEGRATION + "s"), f"components.{INTEGRATION}s", source)
    cors_rules = _mapping(components.get(CORS + "-rules"), f"components.{CORS}-rules", source)
    schemes = _mapping(components.get("securitySchemes"), "components.securitySchemes", source)
    top_security = spec.get("security")
    top_cors = _cors_rule((spec.get("x-yc-apigateway") or {}).get("cors"), cors_rules, "x-yc-apigateway.cors", source)
    routes = []
    for template, item in paths.items():
        if not isinstance(template, str) or not template.startswith("/"):
            raise SpecError(f"{source}: paths.{template}: a path starts with /, e.g. /todos/{{id}}")
        if not isinstance(item, dict):
            raise SpecError(f"{source}: paths.{template}: give its operations (get:, post: ...)")
        _check_template(template, source)
        for key in item:
            if key not in (*METHODS, ANY_METHOD, INTEGRATION, CORS, *_PATH_FIELDS) and not str(key).startswith("x-"):
                raise SpecError(f"{source}: paths.{template}.{key}: not an HTTP method: use {', '.join(METHODS)}")
        path_parameters = _parameters(item.get("parameters"), f"paths.{template}.parameters", source)
        cors = _cors_rule(item[CORS], cors_rules, f"paths.{template}.{CORS}", source) if CORS in item else top_cors
        path_integration = item.get(INTEGRATION)
        pattern = compile_template(template, ignore)
        methods = [m for m in (*METHODS, ANY_METHOD) if m in item]
        if ANY_METHOD in item and len(methods) > 1:
            raise SpecError(f"{source}: paths.{template}: {ANY_METHOD} cannot stand beside other methods")
        for method in methods:
            where = f"paths.{template}.{method}"
            operation = _mapping(item[method], where, source)
            integration = operation.get(INTEGRATION, path_integration)
            if integration is None:
                raise SpecError(f"{source}: {where}: no {INTEGRATION}: add one (type: cloud_functions, dummy ...)")
            integration = _resolve(integration, shared, where, source)
            kind = integration.get("type")
            if kind not in KNOWN:
                kinds = ", ".join(sorted(KNOWN))
                raise SpecError(f"{source}: {where}.{INTEGRATION}.type: unknown type {kind!r}: use one of {kinds}")
            _check_integration(kind, integration, f"{where}.{INTEGRATION}", source)
            parameters = (*path_parameters, *_parameters(operation.get("parameters"), f"{where}.parameters", source))
            routes.append(
                Route(
                    "*" if method == ANY_METHOD else method.upper(),
                    template,
                    pattern,
                    integration,
                    str(operation.get("operationId", "")),
                    tuple(p for p in parameters if isinstance(p, dict)),
                    cors,
                    _authorizer(operation.get("security", top_security), schemes, where, source),
                )
            )
    # Literal segments beat parameters, parameters beat greedy ones [choice: the gateway's order is not documented].
    routes.sort(key=lambda route: _specificity(route.template))
    return routes, ignore


_PATH_FIELDS = ("parameters", "summary", "description", "servers", "$ref")
# What each integration needs to run (the docs' required fields).
_REQUIRED = {
    "cloud_functions": "function_id",
    "http": "url",
    "object_storage": "object",
    "serverless_containers": "container_id",
}


def _mapping(value: Any, where: str, source: str) -> dict[str, Any]:
    """A mapping the spec must hold there ({} when absent); SpecError otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{source}: {where}: give a mapping (NAME: value ...), not {type(value).__name__}")
    return value


def _parameters(value: Any, where: str, source: str) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, dict) and p.get("name") and p.get("in") for p in value):
        raise SpecError(f"{source}: {where}: give a list of parameters, each with name: and in: (path, query, header)")
    return tuple(value)


def _check_template(template: str, source: str) -> None:
    stripped = _PARAM.sub("", template)
    if "{" in stripped or "}" in stripped:
        raise SpecError(f"{source}: paths.{template}: a parameter is written {{name}} or {{name+}}")


def _check_integration(kind: str, integration: Mapping[str, Any], where: str, source: str) -> None:
    """What would fail at request time fails here, naming the field."""
    required = _REQUIRED.get(kind)
    if required and not integration.get(required):
        raise SpecError(f"{source}: {where}: a {kind} integration needs {required}")
    if kind == "cloud_functions":
        version = str(integration.get("payload_format_version", "0.1"))
        if version not in ("0.1", "1.0"):
            raise SpecError(f"{source}: {where}.payload_format_version: use 0.1 or 1.0, not {version!r}")
    if "context" in integration and not isinstance(integration["context"], dict):
        raise SpecError(f"{source}: {where}.context: give a mapping")
    if kind == "dummy":
        _mapping(integration.get("content"), f"{where}.content", source)
        _mapping(integration.get("http_headers"), f"{where}.http_headers", source)
        code = integration.get("http_code", 200)
        if type(code) is not int or not 100 <= code <= 599:
            raise SpecError(f"{source}: {where}.http_code: give an HTTP status from 100 to 599, not {code!r}")


def _specificity(template: str) -> tuple[int, int, int]:
    greedy = sum(1 for m in _PARAM.finditer(template) if m.group(2))
    params = sum(1 for _ in _PARAM.finditer(template))
    return (greedy, params, -len(template))


def _follow(value: dict[str, Any], table: Mapping[str, Any], section: str, where: str, source: str) -> dict[str, Any]:
    """`value`, or what its `$ref: "#/components/SECTION/NAME"` names, through any chain of them."""
    prefix = f"#/components/{section}/"
    for _ in range(len(table) + 1):  # a longer chain comes back to itself
        ref = value.get("$ref")
        if ref is None:
            return value
        name = str(ref)[len(prefix) :] if str(ref).startswith(prefix) else None
        if name is None or name not in table:
            known = ", ".join(prefix + key for key in table) or f"none: add components.{section}"
            raise SpecError(f"{source}: {where}.$ref: {ref!r} points nowhere; the spec has {known}")
        where, value = f"components.{section}.{name}", table[name]
        if not isinstance(value, dict):
            raise SpecError(f"{source}: {where}: give a mapping")
    raise SpecError(f"{source}: {where}.$ref: the $refs go round in a circle: point one at a definition")


def _resolve(integration: Any, shared: Mapping[str, Any], where: str, source: str) -> dict[str, Any]:
    """An integration, or a `$ref` to one in `components.x-yc-apigateway-integrations`."""
    if not isinstance(integration, dict):
        raise SpecError(f"{source}: {where}.{INTEGRATION}: give a mapping with type:")
    return _follow(integration, shared, INTEGRATION + "s", f"{where}.{INTEGRATION}", source)


def _cors_rule(rule: Any, rules: Mapping[str, Any], where: str, source: str) -> dict[str, Any] | None:
    """A CorsRuleObject, or a `$ref` to `components.x-yc-apigateway-cors-rules` (cors.md); None for none."""
    if rule is None:
        return None
    if not isinstance(rule, dict):
        raise SpecError(f"{source}: {where}: give a CORS rule (origin:, methods: ...) or a $ref to one")
    followed = _follow(rule, rules, CORS + "-rules", where, source)
    if "origin" not in followed:
        raise SpecError(f"{source}: {where}: a CORS rule needs origin: (true, false, a string or a list)")
    return followed


def _authorizer(security: Any, schemes: Mapping[str, Any], where: str, source: str) -> dict[str, Any] | None:
    """The function authorizer of an operation's `security` (function-authorizer.md), or None.

    Returns the scheme's kind (`basic`, `bearer` or `apikey`), where an API key is (`in`,
    `name`), and the authorizer's `function_id`, `ttl` and caching `mode`.
    """
    if security is not None and (not isinstance(security, list) or not all(isinstance(r, dict) for r in security)):
        raise SpecError(f"{source}: {where}.security: give a list, e.g. - bearerAuth: []")
    for requirement in security or ():
        for name in requirement or {}:
            scheme = schemes.get(name)
            if not isinstance(scheme, dict):
                raise SpecError(f"{source}: {where}.security: no securitySchemes.{name}: add it to components")
            authorizer = scheme.get("x-yc-apigateway-authorizer") or {}
            if authorizer.get("type") == "jwt":
                return _jwt(name, scheme, authorizer, list(requirement[name] or ()), source)
            if authorizer.get("type") != "function":
                continue  # not an authorizer the gateway runs (an API key the integration checks itself)
            if not authorizer.get("function_id"):
                raise SpecError(f"{source}: securitySchemes.{name}: a function authorizer needs function_id")
            kind = str(scheme.get("scheme", "")).lower() if scheme.get("type") == "http" else "apikey"
            if scheme.get("type") not in ("http", "apiKey") or (
                scheme.get("type") == "http" and kind not in ("basic", "bearer")
            ):
                raise SpecError(
                    f"{source}: securitySchemes.{name}: a function authorizer goes on type http "
                    "(scheme basic or bearer) or type apiKey"
                )
            return {
                "name": name,
                "kind": kind,
                "in": scheme.get("in", "header"),
                "key": str(scheme.get("name", "")),
                "function_id": str(authorizer["function_id"]),
                "ttl": _seconds(authorizer, name, source),
                "mode": str(authorizer.get("authorizer_result_caching_mode", "path")),
            }
    return None


def _seconds(authorizer: Mapping[str, Any], name: str, source: str) -> float:
    value = authorizer.get("authorizer_result_ttl_in_seconds") or 0
    if type(value) not in (int, float) or value < 0:
        raise SpecError(
            f"{source}: securitySchemes.{name}: authorizer_result_ttl_in_seconds is seconds, e.g. 300; not {value!r}"
        )
    return float(value)


def _jwt(
    name: str, scheme: Mapping[str, Any], authorizer: Mapping[str, Any], scopes: list[str], source: str
) -> dict[str, Any]:
    """A JWT authorizer (jwt-authorizer.md) on an openIdConnect scheme."""
    if scheme.get("type") != "openIdConnect":
        raise SpecError(f"{source}: securitySchemes.{name}: a jwt authorizer goes on type openIdConnect")
    identity = authorizer.get("identitySource") or authorizer.get("IdentitySource")
    if (
        not isinstance(identity, dict)
        or identity.get("in") not in ("header", "query", "cookie")
        or not identity.get("name")
    ):
        example = "{in: header, name: Authorization, prefix: 'Bearer '}"
        raise SpecError(f"{source}: securitySchemes.{name}: give identitySource: {example}")
    if not authorizer.get("jwksUri"):
        hint = "a JWKS file or URL; ${var.jwks} lets --var set it locally"
        raise SpecError(f"{source}: securitySchemes.{name}: give jwksUri ({hint})")
    return {
        "name": name,
        "kind": "jwt",
        "in": identity["in"],
        "key": str(identity["name"]),
        "prefix": str(identity.get("prefix", "")),
        "jwks": str(authorizer["jwksUri"]),
        "issuers": list(authorizer.get("issuers") or ()),
        "audiences": list(authorizer.get("audiences") or ()),
        "required": list(authorizer.get("requiredClaims") or ()),
        "scopes": scopes,
        "function_id": "",
        "ttl": _seconds(authorizer, name, source),
        "mode": str(authorizer.get("authorizer_result_caching_mode", "path")),
    }


def function_ids(routes: list[Route]) -> dict[str, list[str]]:
    """Each function_id the spec calls, with the operations that call it (or that it authorizes)."""
    found: dict[str, list[str]] = {}
    for route in routes:
        if route.authorizer is not None and route.authorizer["kind"] != "jwt":
            name = f"the authorizer {route.authorizer['name']}"
            if name not in found.setdefault(route.authorizer["function_id"], []):
                found[route.authorizer["function_id"]].append(name)
        if route.kind == "cloud_functions":
            name = route.operation_id or f"{route.method} {route.template}"
            found.setdefault(str(route.integration["function_id"]), []).append(name)
    return found
