"""Routing as the gateway does it, and broken specs stopped with the place and the fix (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from sf_asgi._gateway_spec import SpecError, load_routes

DUMMY = {"type": "dummy", "http_code": 200, "content": {"*": "x"}}


def spec(paths: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"openapi": "3.0.0", "paths": paths, **top}


def route_for(the_spec: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, str]] | None:
    routes, ignore = load_routes(the_spec, {}, "openapi.yaml")
    fallback = None
    for route in routes:
        found = route.match(path, ignore)
        if found is not None:
            if route.method == method:
                return f"{route.method} {route.template}", found
            if route.method == "*" and fallback is None:
                fallback = (f"ANY {route.template}", found)
    return fallback


ROUTING = spec(
    {
        "/todos": {"get": {"x-yc-apigateway-integration": DUMMY}},
        "/todos/{id}": {"get": {"x-yc-apigateway-integration": DUMMY}},
        "/todos/new": {"get": {"x-yc-apigateway-integration": DUMMY}},
        "/static/{file+}": {"get": {"x-yc-apigateway-integration": DUMMY}},
        "/a/{x}/b/{y}": {"x-yc-apigateway-integration": DUMMY, "post": {}},
        "/{proxy+}": {"x-yc-apigateway-any-method": {"x-yc-apigateway-integration": DUMMY}},
    }
)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/todos", ("GET /todos", {})),
        ("GET", "/todos/", ("GET /todos", {})),  # ignoreTrailingSlashes defaults to true
        ("GET", "/todos/7", ("GET /todos/{id}", {"id": "7"})),
        ("GET", "/todos/new", ("GET /todos/new", {})),  # a literal segment wins over a parameter
        ("GET", "/static/css/site/main.css", ("GET /static/{file+}", {"file": "css/site/main.css"})),  # greedy
        ("POST", "/a/1/b/2", ("POST /a/{x}/b/{y}", {"x": "1", "y": "2"})),  # a path-level integration
        ("DELETE", "/todos/7", ("ANY /{proxy+}", {"proxy": "todos/7"})),  # any-method: methods not defined
        ("GET", "/else/where", ("ANY /{proxy+}", {"proxy": "else/where"})),
    ],
)
def test_routing(method: str, path: str, expected: tuple[str, dict[str, str]]) -> None:
    assert route_for(ROUTING, method, path) == expected


def test_trailing_slashes_count_when_the_spec_says_so() -> None:
    strict = spec(
        {"/todos": {"get": {"x-yc-apigateway-integration": DUMMY}}},
        **{"x-yc-apigateway": {"ignoreTrailingSlashes": False}},
    )
    assert route_for(strict, "GET", "/todos") is not None
    assert route_for(strict, "GET", "/todos/") is None


def test_refs_and_variables() -> None:
    the_spec = spec(
        {
            "/f": {
                "get": {
                    "x-yc-apigateway-integration": {"$ref": "#/components/x-yc-apigateway-integrations/${var.which}"}
                }
            },
            "/d": {
                "get": {
                    "x-yc-apigateway-integration": {
                        "type": "dummy",
                        "http_code": "${var.code}",
                        "content": {"*": "in ${var.env}"},
                    }
                }
            },
        },
        **{
            "x-yc-apigateway": {
                "variables": {
                    "which": {"default": "fn"},
                    "env": {"default": "prod", "enum": ["prod", "dev"]},
                    "code": {"default": 201},
                }
            },
            "components": {"x-yc-apigateway-integrations": {"fn": {"type": "cloud_functions", "function_id": "abc"}}},
        },
    )
    routes, _ = load_routes(the_spec, {"env": "dev"}, "openapi.yaml")
    by_path = {route.template: route.integration for route in routes}
    assert by_path["/f"] == {"type": "cloud_functions", "function_id": "abc"}
    assert (
        by_path["/d"]["content"] == {"*": "in dev"} and by_path["/d"]["http_code"] == 201
    )  # a whole value keeps its type


@pytest.mark.parametrize(
    ("the_spec", "variables", "message"),
    [
        ([1, 2], {}, "openapi.yaml: the spec is not a YAML mapping"),
        (spec({}), {}, "openapi.yaml: no paths: add a paths: section"),
        (spec({"/a": {"get": {}}}), {}, "openapi.yaml: paths./a.get: no x-yc-apigateway-integration: add one"),
        (
            spec({"/a": {"get": {"x-yc-apigateway-integration": {"type": "lambda"}}}}),
            {},
            "unknown type 'lambda': use one of",
        ),
        (
            spec(
                {
                    "/a": {
                        "get": {
                            "x-yc-apigateway-integration": {"$ref": "#/components/x-yc-apigateway-integrations/nope"}
                        }
                    }
                }
            ),
            {},
            "points nowhere",
        ),
        (spec({"/a": {"get": {"x-yc-apigateway-integration": {"type": "cloud_functions"}}}}), {}, "needs function_id"),
        (
            spec({"/a": {"get": {"x-yc-apigateway-integration": {"type": "dummy", "content": {"*": "${var.x}"}}}}}),
            {},
            "${var.x} is not defined: add it to x-yc-apigateway.variables with a default, or pass --var x=VALUE",
        ),
        (
            spec(
                {"/a": {"get": {"x-yc-apigateway-integration": DUMMY}}},
                **{"x-yc-apigateway": {"variables": {"env": {"default": "a", "enum": ["a"]}}}},
            ),
            {"env": "b"},
            "--var env=b: the spec allows a",
        ),
        (spec({"a": {"get": {"x-yc-apigateway-integration": DUMMY}}}), {}, "paths.a: a path starts with /"),
        (
            spec(
                {
                    "/a": {
                        "get": {"x-yc-apigateway-integration": DUMMY},
                        "x-yc-apigateway-any-method": {"x-yc-apigateway-integration": DUMMY},
                    }
                }
            ),
            {},
            "cannot stand beside other methods",
        ),
    ],
)
def test_broken_specs_name_the_place_and_the_fix(the_spec: Any, variables: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_routes(the_spec, variables, "openapi.yaml")
    assert message in str(info.value)


def with_operation(operation: Any = None, item: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    if operation is None:
        operation = {"x-yc-apigateway-integration": DUMMY}
    return spec({"/a": {"get": operation, **(item or {})}}, **top)


def dummy(**fields: Any) -> dict[str, Any]:
    return {"x-yc-apigateway-integration": {"type": "dummy", **fields}}


@pytest.mark.parametrize(
    ("the_spec", "message"),
    [
        # Found by an outside attack: each crashed the startup with a traceback, or started and failed later.
        (with_operation([1, 2]), "paths./a.get: give a mapping"),
        (
            spec({"/a": {"get": dummy()}}, **{"x-yc-apigateway": {"variables": [1]}}),
            "x-yc-apigateway.variables: give a mapping",
        ),
        (
            spec({"/a": {"get": dummy()}}, components={"x-yc-apigateway-integrations": [1]}),
            "components.x-yc-apigateway-integrations: give a mapping",
        ),
        (with_operation({**dummy(), "security": "bearerAuth"}), "security: give a list"),
        (with_operation(dummy(content="ok")), "content: give a mapping"),
        (with_operation(dummy(http_headers=["a"])), "http_headers: give a mapping"),
        (with_operation(dummy(http_code="abc")), "http_code: give an HTTP status from 100 to 599"),
        (with_operation(dummy(http_code=999)), "http_code: give an HTTP status from 100 to 599"),
        (with_operation({**dummy(), "parameters": {"name": "id"}}), "give a list of parameters"),
        (spec({"/a/{id": {"get": dummy()}}), "a parameter is written {name} or {name+}"),
        (
            with_operation(
                {
                    "x-yc-apigateway-integration": {
                        "type": "cloud_functions",
                        "function_id": "f",
                        "payload_format_version": "9",
                    }
                }
            ),
            "use 0.1 or 1.0",
        ),
        (with_operation(item={"fetch": dummy()}), "paths./a.fetch: not an HTTP method"),
        (with_operation(dummy(context=[1])), "context: give a mapping"),
        (with_operation({"x-yc-apigateway-integration": {"type": "object_storage", "bucket": "b"}}), "needs object"),
        (
            spec(
                {"/a": {"get": dummy()}}, **{"x-yc-apigateway": {"variables": {"v": {"default": "x", "enum": ["a"]}}}}
            ),
            "the default is not in its enum",
        ),
    ],
)
def test_spec_mistakes_stop_at_startup_naming_the_place(the_spec: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_routes(the_spec, {}, "openapi.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("openapi.yaml: ")
