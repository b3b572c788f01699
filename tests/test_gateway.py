"""GatewayApp in-process (the 0.1 event field by field, dummy, errors) and `sf-asgi gateway` end to end."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sf_asgi import GatewayApp
from sf_asgi._gateway_spec import SpecError

from .servers import ROOT, free_port, instance_pids, serve

pytestmark = pytest.mark.anyio

ECHO = """
import json, os

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"event": event, "pid": os.getpid(), "name": context.function_name})}
"""

SPEC = {
    "openapi": "3.0.0",
    "paths": {
        "/items/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True}],
            "get": {
                "operationId": "getItem",
                "parameters": [{"name": "limit", "in": "query"}, {"name": "X-Client", "in": "header"}],
                "x-yc-apigateway-integration": {
                    "type": "cloud_functions",
                    "function_id": "fn1",
                    "context": {"item": "{id}", "fixed": 1},
                },
            },
        },
        "/health": {
            "get": {
                "x-yc-apigateway-integration": {
                    "type": "dummy",
                    "http_code": 203,
                    "http_headers": {"X-Health": "yes"},
                    "content": {"application/json": '{"ok": true}', "text/plain": "ok", "*": "any"},
                }
            }
        },
        "/strict": {"get": {"x-yc-apigateway-integration": {"type": "dummy", "content": {"text/plain": "only text"}}}},
        "/ydb": {"get": {"x-yc-apigateway-integration": {"type": "cloud_ydb", "database": "d"}}},
    },
}


@pytest.fixture
def gateway(tmp_path: Path) -> GatewayApp:
    (tmp_path / "index.py").write_text(textwrap.dedent(ECHO))
    return GatewayApp(
        SPEC, functions={"fn1": {"source": str(tmp_path), "handler": "index.handler", "isolation": "thread"}}
    )


@contextlib.asynccontextmanager
async def serving(app: GatewayApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the started gateway; its functions are shut down on leaving."""
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.local") as client:
        await app.startup()
        try:
            yield client
        finally:
            await app.shutdown()


async def request(app: GatewayApp, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with serving(app) as client:
        return await client.request(method, url, **kwargs)


async def test_the_01_event_field_by_field(gateway: GatewayApp) -> None:
    headers = {"Cookie": "session=s1", "Authorization": "Bearer t1", "X-Client": "cli"}
    response = await request(gateway, "GET", "/items/42?limit=5&limit=7", headers=headers)
    assert response.status_code == 200
    body = response.json()
    event = body["event"]
    assert body["name"] == "fn1"  # the function_id is the function's name
    assert event["url"] == "/items/42?limit=5&limit=7"
    assert event["path"] == "/items/{id}"  # the template
    assert event["pathParams"] == {"id": "42"}
    assert event["params"] == {"id": "42", "limit": "7", "X-Client": "cli"}  # every declared parameter
    assert event["multiValueParams"] == {"id": ["42"], "limit": ["5", "7"], "X-Client": ["cli"]}
    assert event["queryStringParameters"] == {"limit": "7"}
    h = event["headers"]
    assert (h["Cookie"], h["Authorization"]) == ("session=s1", "Bearer t1")  # delivered through the gateway
    assert h["X-Real-Remote-Address"] == "10.1.2.3:5555"  # no brackets
    assert h["X-Forwarded-Proto"] == "http"
    assert h["X-Envoy-Original-Path"] == "/items/42?limit=5&limit=7"
    assert h["X-Api-Gateway-Function-Id"] == "fn1"
    assert h["X-Serverless-Gateway-Id"] == gateway.gateway_id
    assert h["Traceparent"].startswith("00-") and len(h["Uber-Trace-Id"].split(":")) == 4
    assert event["requestContext"]["apiGateway"] == {"operationContext": {"item": "42", "fixed": 1}}
    assert event["requestContext"]["requestId"] == h["X-Request-Id"]


async def test_url_has_a_trailing_question_mark_without_a_query(gateway: GatewayApp) -> None:
    event = (await request(gateway, "GET", "/items/1")).json()["event"]
    assert (event["url"], event["params"], event["multiValueParams"]) == ("/items/1?", {"id": "1"}, {"id": ["1"]})


@pytest.mark.parametrize(
    ("path", "accept", "status", "body", "content_type"),
    [
        ("/health", "application/json", 203, '{"ok": true}', "application/json"),
        ("/health", "text/*;q=0.9, application/json;q=0.1", 203, "ok", "text/plain"),
        ("/health", "image/png", 203, "any", None),  # no match: the * content
        ("/strict", "image/png", 415, None, None),  # no match and no *: 415
        ("/strict", "", 200, "only text", "text/plain"),  # no Accept: any of them
    ],
)
async def test_dummy_content_by_accept(
    gateway: GatewayApp, path: str, accept: str, status: int, body: str | None, content_type: str | None
) -> None:
    response = await request(gateway, "GET", path, headers={"Accept": accept} if accept else {})
    assert response.status_code == status
    if body is not None:
        assert response.text == body
    if content_type is not None:
        assert response.headers["content-type"] == content_type
    if path == "/health":
        assert response.headers["x-health"] == "yes"


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nowhere", 404, "Not Found"),
        ("POST", "/health", 405, "Method Not Allowed"),
        ("GET", "/ydb", 501, "sf_asgi does not run cloud_ydb integrations locally (GET /ydb)"),
    ],
)
async def test_what_the_gateway_answers_itself(
    gateway: GatewayApp, method: str, path: str, status: int, message: str
) -> None:
    response = await request(gateway, method, path)
    assert (response.status_code, response.json()) == (status, {"message": message})


async def test_a_request_over_the_gateways_limit_is_413(gateway: GatewayApp) -> None:
    response = await request(gateway, "GET", "/items/1", content=b"x" * 2_700_000)
    assert response.status_code == 413


def test_an_unmapped_function_id_names_the_operation_and_the_flag() -> None:
    with pytest.raises(
        SpecError,
        match=r"getItem call function_id fn1, which has no local function: add --function fn1=DIR/FILE.FUNCTION",
    ):
        GatewayApp(SPEC, functions={})


def test_a_yaml_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text("openapi: 3.0.0\npaths:\n  /a: [unclosed\n")
    with pytest.raises(SpecError, match=r"openapi.yaml: line \d+, column \d+: not valid YAML"):
        GatewayApp(str(tmp_path / "openapi.yaml"))


def test_the_route_table_marks_what_is_not_run(gateway: GatewayApp) -> None:
    table = "\n".join(gateway.route_table())
    assert "GET     /items/{id}" in table and "cloud_functions  fn1 -> " in table
    assert "cloud_ydb        not run locally: answers 501" in table


@pytest.fixture
def demo_gateway(tmp_path: Path) -> Iterator[Any]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "sf_asgi",
        "gateway",
        "openapi.yaml",
        "--functions",
        "functions.yaml",
        "--bucket",
        "static=static",
        "--port",
        str(port),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    with serve(cmd, ROOT / "demo" / "gateway", env, port, tmp_path / "gateway.log") as srv:
        yield srv


def test_the_demo_api_end_to_end_with_an_instance_per_function(demo_gateway: Any) -> None:
    with httpx.Client(base_url=demo_gateway.url, timeout=10) as http:
        assert http.get("/health").text == "ok"
        assert http.post("/todos", json={"title": "no token"}).status_code == 401
        assert http.post("/todos", json={"title": "bad"}, headers={"Authorization": "Bearer x"}).status_code == 403
        token = {"Authorization": "Bearer demo-token"}
        created = http.post("/todos", json={"title": "ship it"}, headers=token)
        assert created.status_code == 201
        assert http.get("/todos").json() == {"todos": [created.json()]}
        assert http.get(f"/todos/{created.json()['id']}/").json() == created.json()
        whoami = http.get("/whoami/ada", params={"verbose": "1"}, headers={"Authorization": "Bearer t"}).json()
        assert whoami["params"] == {"name": "ada", "verbose": "1"}
        assert whoami["operation"] == {"greeting": "hello, ada"}
        assert whoami["authorization"] == "Bearer t"
        assert http.delete(f"/todos/{created.json()['id']}", headers=token).status_code == 204
        assert http.get("/static/index.html").text == "<h1>static</h1>\n"
        assert http.get("/static/css/site.css").status_code == 404
        assert http.get("/missing").status_code == 404
    log = demo_gateway.log
    assert "Route GET     /todos/{id}" in log
    assert len(set(instance_pids(log))) == 3  # each function (and the authorizer) has its own instance
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["openapi.yaml"], "add --function d4e1todo00000000000a=DIR/FILE.FUNCTION"),
        (["nope.yaml"], "nope.yaml: No such file or directory"),
        (["openapi.yaml", "--functions", "functions.yaml", "--var", "todo_function"], "--var takes NAME=VALUE"),
    ],
)
def test_a_broken_start_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    result = subprocess.run(
        [sys.executable, "-m", "sf_asgi", "gateway", *args],
        cwd=ROOT / "demo" / "gateway",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


CORS_SPEC = {
    "openapi": "3.0.0",
    "x-yc-apigateway": {"cors": {"origin": "*", "methods": "*", "allowedHeaders": "*"}},
    "paths": {
        "/open": {"get": {"x-yc-apigateway-integration": {"type": "dummy", "content": {"*": "open"}}}},
        "/echo": {
            "x-yc-apigateway-cors": {
                "origin": True,
                "methods": ["GET", "POST"],
                "allowedHeaders": "x-custom",
                "exposedHeaders": ["x-a", "x-b"],
                "credentials": True,
                "maxAge": 3600,
                "optionsSuccessStatus": 204,
            },
            "get": {"x-yc-apigateway-integration": {"type": "dummy", "content": {"*": "echo"}}},
        },
        "/listed": {
            "x-yc-apigateway-cors": {"$ref": "#/components/x-yc-apigateway-cors-rules/two"},
            "get": {"x-yc-apigateway-integration": {"type": "dummy", "content": {"*": "listed"}}},
        },
        "/own": {
            "x-yc-apigateway-cors": {"origin": False},
            "options": {
                "x-yc-apigateway-integration": {
                    "type": "dummy",
                    "http_code": 299,
                    "content": {"*": "the integration's own OPTIONS"},
                }
            },
        },
    },
    "components": {"x-yc-apigateway-cors-rules": {"two": {"origin": ["https://a.example", "https://b.example"]}}},
}


@pytest.mark.parametrize(
    ("method", "path", "origin", "status", "expected"),
    [
        # Preflight answered by the gateway, from the top-level rule.
        (
            "OPTIONS",
            "/open",
            "https://x.example",
            200,
            {
                "access-control-allow-origin": "*",
                "access-control-allow-methods": "*",
                "access-control-allow-headers": "*",
            },
        ),
        # A path's own rule, origin: true echoes the Origin; optionsSuccessStatus.
        (
            "OPTIONS",
            "/echo",
            "https://x.example",
            204,
            {
                "access-control-allow-origin": "https://x.example",
                "access-control-allow-methods": "GET, POST",
                "access-control-allow-headers": "x-custom",
                "access-control-expose-headers": "x-a, x-b",
                "access-control-allow-credentials": "true",
                "access-control-max-age": "3600",
            },
        ),
        # The CORS headers on a normal response.
        ("GET", "/echo", "https://x.example", 200, {"access-control-allow-origin": "https://x.example"}),
        ("GET", "/listed", "https://b.example", 200, {"access-control-allow-origin": "https://b.example"}),
        ("GET", "/listed", "https://evil.example", 200, {"access-control-allow-origin": "https://a.example"}),
        # origin: false passes OPTIONS to the integration, with no CORS headers.
        ("OPTIONS", "/own", "https://x.example", 299, {"access-control-allow-origin": None}),
    ],
)
async def test_cors(method: str, path: str, origin: str, status: int, expected: dict[str, str | None]) -> None:
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
    response = await request(GatewayApp(CORS_SPEC), method, path, headers=headers)
    assert response.status_code == status
    for name, value in expected.items():
        assert response.headers.get(name) == value


def test_a_cors_ref_that_points_nowhere_stops_startup() -> None:
    broken = {**CORS_SPEC, "components": {}}
    with pytest.raises(SpecError, match=r"paths./listed.x-yc-apigateway-cors.\$ref: .* points nowhere"):
        GatewayApp(broken)


async def test_payload_format_10(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(textwrap.dedent(ECHO))
    spec = {
        "openapi": "3.0.0",
        "paths": {
            "/items/{id}": {
                "get": {
                    "operationId": "getItem",
                    "parameters": [{"name": "id", "in": "path"}, {"name": "q", "in": "query"}],
                    "x-yc-apigateway-integration": {
                        "type": "cloud_functions",
                        "function_id": "fn1",
                        "payload_format_version": "1.0",
                    },
                }
            }
        },
    }
    function = {"source": str(tmp_path), "handler": "index.handler", "isolation": "thread"}
    event = (await request(GatewayApp(spec, functions={"fn1": function}), "GET", "/items/9?q=a&q=b")).json()["event"]
    assert set(event) == {
        "version", "resource", "path", "httpMethod", "headers", "multiValueHeaders", "queryStringParameters",
        "multiValueQueryStringParameters", "requestContext", "pathParameters", "body", "isBase64Encoded",
        "parameters", "multiValueParameters", "operationId",
    }  # fmt: skip
    assert (event["version"], event["resource"], event["path"]) == ("1.0", "/items/{id}", "/items/9")
    assert event["pathParameters"] == {"id": "9"}
    assert (event["parameters"], event["multiValueParameters"]) == (
        {"id": "9", "q": "b"},
        {"id": ["9"], "q": ["a", "b"]},
    )
    assert event["operationId"] == "getItem"


AUTHORIZER = """
import json

CALLS = []

def handler(event, context):
    CALLS.append(event["path"])
    token = event["headers"].get("Authorization", "") or event["queryStringParameters"].get("key", "")
    if token.endswith("boom"):
        raise RuntimeError("authorizer broke")
    if token.endswith("garbage"):
        return "yes"
    return {"isAuthorized": token.endswith("good"), "context": {"user": "ada", "calls": len(CALLS),
            "seen": sorted(event), "cookies": event["cookies"]}}
"""


def auth_spec(scheme: dict[str, Any], ttl: int = 0) -> dict[str, Any]:
    authorizer = {"type": "function", "function_id": "auth", "authorizer_result_ttl_in_seconds": ttl}
    return {
        "openapi": "3.0.0",
        "paths": {
            "/items/{id}": {
                "get": {
                    "security": [{"guard": []}],
                    "x-yc-apigateway-integration": {"type": "cloud_functions", "function_id": "fn1"},
                }
            },
            "/open": {"get": {"x-yc-apigateway-integration": {"type": "cloud_functions", "function_id": "fn1"}}},
        },
        "components": {"securitySchemes": {"guard": {**scheme, "x-yc-apigateway-authorizer": authorizer}}},
    }


@pytest.fixture
def functions(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "index.py").write_text(textwrap.dedent(ECHO))
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "index.py").write_text(textwrap.dedent(AUTHORIZER))
    return {
        "fn1": {"source": str(tmp_path / "fn"), "handler": "index.handler", "isolation": "thread"},
        "auth": {"source": str(tmp_path / "auth"), "handler": "index.handler", "isolation": "thread"},
    }


BEARER = {"type": "http", "scheme": "bearer"}


@pytest.mark.parametrize(
    ("scheme", "url", "headers", "status"),
    [
        (BEARER, "/items/1", {"Authorization": "Bearer good"}, 200),
        (BEARER, "/items/1", {"Authorization": "Bearer bad"}, 403),  # isAuthorized: false
        (BEARER, "/items/1", {}, 401),  # missing credentials
        (BEARER, "/items/1", {"Authorization": "Basic good"}, 401),  # not the scheme's
        (BEARER, "/items/1", {"Authorization": "Bearer boom"}, 500),  # the authorizer failed
        (BEARER, "/items/1", {"Authorization": "Bearer garbage"}, 500),  # a malformed verdict
        (BEARER, "/open", {}, 200),  # no security on the operation
        ({"type": "http", "scheme": "basic"}, "/items/1", {"Authorization": "Basic good"}, 200),
        ({"type": "apiKey", "in": "query", "name": "key"}, "/items/1?key=good", {}, 200),
        ({"type": "apiKey", "in": "query", "name": "key"}, "/items/1", {}, 401),
        ({"type": "apiKey", "in": "header", "name": "X-Api-Key"}, "/items/1", {"X-Api-Key": "k"}, 403),
    ],
)
async def test_function_authorizer_outcomes(
    functions: dict[str, Any], scheme: dict[str, Any], url: str, headers: dict[str, str], status: int
) -> None:
    response = await request(GatewayApp(auth_spec(scheme), functions=functions), "GET", url, headers=headers)
    assert response.status_code == status, response.text


async def test_the_authorizers_context_reaches_the_function(functions: dict[str, Any]) -> None:
    headers = {"Authorization": "Bearer good", "Cookie": "session=s1; theme=dark"}
    event = (
        await request(GatewayApp(auth_spec(BEARER), functions=functions), "GET", "/items/1", headers=headers)
    ).json()["event"]
    authorizer = event["requestContext"]["authorizer"]
    assert authorizer["user"] == "ada"
    assert authorizer["seen"] == sorted(
        [
            "resource",
            "path",
            "httpMethod",
            "headers",
            "queryStringParameters",
            "pathParameters",
            "requestContext",
            "cookies",
        ]
    )
    assert authorizer["cookies"] == {"session": "s1", "theme": "dark"}


@pytest.mark.parametrize(("ttl", "calls"), [(0, [1, 2, 3]), (300, [1, 1, 1])])
async def test_verdicts_are_cached_for_the_ttl(functions: dict[str, Any], ttl: int, calls: list[int]) -> None:
    app = GatewayApp(auth_spec(BEARER, ttl=ttl), functions=functions)
    async with serving(app) as client:
        seen = []
        for item in (1, 2, 3):  # mode "path": one template, so one cache entry
            response = await client.get(f"/items/{item}", headers={"Authorization": "Bearer good"})
            seen.append(response.json()["event"]["requestContext"]["authorizer"]["calls"])
    assert seen == calls


def test_an_authorizer_without_a_local_function_stops_startup(functions: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="the authorizer guard call function_id auth"):
        GatewayApp(auth_spec(BEARER), functions={"fn1": functions["fn1"]})


@pytest.fixture
def bucket_gateway(tmp_path: Path) -> GatewayApp:
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>home</h1>")
    (site / "css" / "main.css").write_text("body {}")
    (site / "404.html").write_text("<h1>missing</h1>")
    (tmp_path / "secret.txt").write_text("outside the bucket")
    integration = {"type": "object_storage", "bucket": "site", "object": "{file}"}
    spec = {
        "openapi": "3.0.0",
        "paths": {
            "/static/{file+}": {"get": {"x-yc-apigateway-integration": integration}},
            "/app/{file+}": {"get": {"x-yc-apigateway-integration": {**integration, "default_object": "index.html"}}},
            "/err/{file+}": {"get": {"x-yc-apigateway-integration": {**integration, "error_object": "404.html"}}},
            "/other/{file+}": {"get": {"x-yc-apigateway-integration": {**integration, "bucket": "unmapped"}}},
        },
    }
    return GatewayApp(spec, buckets={"site": str(site)})


@pytest.mark.parametrize(
    ("path", "status", "body", "content_type"),
    [
        ("/static/index.html", 200, "<h1>home</h1>", "text/html"),
        ("/static/css/main.css", 200, "body {}", "text/css"),  # a greedy path, its content type
        ("/static/nope.html", 404, None, None),
        ("/static/..%2Fsecret.txt", 404, None, None),  # never out of the bucket's folder
        ("/app/some/route", 200, "<h1>home</h1>", "text/html"),  # default_object instead of a 404
        ("/err/nope", 404, "<h1>missing</h1>", "text/html"),  # error_object as the 404's body
        ("/other/x", 501, None, None),
    ],
)
async def test_object_storage_from_a_local_folder(
    bucket_gateway: GatewayApp, path: str, status: int, body: str | None, content_type: str | None
) -> None:
    response = await request(bucket_gateway, "GET", path)
    assert response.status_code == status
    if body is not None:
        assert response.text == body
    if content_type is not None:
        assert response.headers["content-type"] == content_type
    if status == 501:
        assert "add --bucket unmapped=DIR" in response.json()["message"]


HTTP_INTEGRATION = {
    "type": "http",
    "url": "http://127.0.0.1:{port}/backend/{path}",
    "headers": {"X-Added": ["one", "two"], "X-From-Param": "{X-Client}"},
    "query": {"fixed": "1", "item": "{path}"},
}


@pytest.mark.parametrize(
    ("integration", "sent", "not_sent"),
    [
        # By default only User-Agent goes on, with the spec's own headers and query.
        (
            HTTP_INTEGRATION,
            {"user-agent": "ua/1", "x-added": "one,two", "x-from-param": "cli", "query": "fixed=1&item=a%2Fb"},
            ["x-secret"],
        ),
        # '*': '*' forwards the request's own, an empty value with omitEmpty... drops one.
        (
            {
                **HTTP_INTEGRATION,
                "headers": {"*": "*", "X-Secret": None},
                "query": {"*": "*", "drop": ""},
                "omitEmptyHeaders": True,
                "omitEmptyQueryParameters": True,
            },
            {"user-agent": "ua/1", "x-client": "cli", "query": "keep=k"},
            ["x-secret"],
        ),
    ],
)
async def test_http_integration_forwards_what_the_gateway_forwards(
    integration: dict[str, Any], sent: dict[str, str], not_sent: list[str], tmp_path: Path
) -> None:
    backend = tmp_path / "backend.py"
    backend.write_text(
        "import json\n"
        "async def app(scope, receive, send):\n"
        "    headers = {k.decode(): v.decode() for k, v in scope['headers']}\n"
        "    headers['query'] = scope['query_string'].decode()\n"
        "    headers['path'] = scope['path']\n"
        "    await send({'type': 'http.response.start', 'status': 207, 'headers': [(b'x-backend', b'yes')]})\n"
        "    await send({'type': 'http.response.body', 'body': json.dumps(headers).encode()})\n"
    )
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "backend:app", "--host", "127.0.0.1", "--port", str(port)]
    with serve(cmd, tmp_path, {}, port, tmp_path / "backend.log"):
        spec_integration = {**integration, "url": integration["url"].replace("{port}", str(port))}
        spec = {
            "openapi": "3.0.0",
            "paths": {
                "/proxy/{path+}": {
                    "get": {
                        "parameters": [{"name": "path", "in": "path"}, {"name": "X-Client", "in": "header"}],
                        "x-yc-apigateway-integration": spec_integration,
                    }
                }
            },
        }
        headers = {"User-Agent": "ua/1", "X-Client": "cli", "X-Secret": "s"}
        response = await request(GatewayApp(spec), "GET", "/proxy/a/b?keep=k&drop=d", headers=headers)
    assert (response.status_code, response.headers["x-backend"]) == (207, "yes")
    got = response.json()
    assert got["path"] == "/backend/a/b"
    for name, value in sent.items():
        assert got.get(name) == value, (name, got)
    for name in not_sent:
        assert name not in got


async def test_http_integration_to_nothing_is_502() -> None:
    port = free_port()
    spec = {
        "openapi": "3.0.0",
        "paths": {"/p": {"get": {"x-yc-apigateway-integration": {"type": "http", "url": f"http://127.0.0.1:{port}/"}}}},
    }
    response = await request(GatewayApp(spec), "GET", "/p")
    assert response.status_code == 502 and "Bad Gateway" in response.json()["message"]


async def test_serverless_containers_get_the_request_and_the_operation_context(tmp_path: Path) -> None:
    (tmp_path / "backend.py").write_text(
        "import json\n"
        "async def app(scope, receive, send):\n"
        "    headers = {k.decode(): v.decode() for k, v in scope['headers']}\n"
        "    got = {'path': scope['path'], 'query': scope['query_string'].decode(), 'headers': headers}\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': json.dumps(got).encode()})\n"
    )
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "backend:app", "--host", "127.0.0.1", "--port", str(port)]
    integration = {"type": "serverless_containers", "container_id": "bba1", "context": {"user": "{name}"}}
    spec = {
        "openapi": "3.0.0",
        "paths": {
            "/c/{name}": {
                "get": {"parameters": [{"name": "name", "in": "path"}], "x-yc-apigateway-integration": integration}
            },
            "/none": {"get": {"x-yc-apigateway-integration": {**integration, "container_id": "other"}}},
        },
    }
    app = GatewayApp(spec, containers={"bba1": f"http://127.0.0.1:{port}"})
    with serve(cmd, tmp_path, {}, port, tmp_path / "backend.log"):
        got = (await request(app, "GET", "/c/ada?x=1", headers={"X-Mine": "m"})).json()
    assert (got["path"], got["query"], got["headers"]["x-mine"]) == ("/c/ada", "x=1", "m")
    context = base64.b64decode(got["headers"]["x-yc-apigateway-operation-context"])
    assert json.loads(context) == {"user": "ada"}
    missing = await request(app, "GET", "/none")
    assert missing.status_code == 501 and "add --container other=URL" in missing.json()["message"]


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[Any, dict[str, Any]]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]}


def jwt_spec(jwks: str) -> dict[str, Any]:
    authorizer = {
        "type": "jwt",
        "jwksUri": jwks,
        "identitySource": {"in": "header", "name": "Authorization", "prefix": "Bearer "},
        "issuers": ["https://issuer.example"],
        "audiences": ["api"],
        "requiredClaims": ["email"],
    }
    return {
        "openapi": "3.0.0",
        "paths": {
            "/me": {
                "get": {
                    "security": [{"jwtAuth": ["profile:read"]}],
                    "x-yc-apigateway-integration": {"type": "cloud_functions", "function_id": "fn1"},
                }
            }
        },
        "components": {
            "securitySchemes": {
                "jwtAuth": {
                    "type": "openIdConnect",
                    "openIdConnectUrl": "https://issuer.example/.well-known/openid-configuration",
                    "x-yc-apigateway-authorizer": authorizer,
                }
            }
        },
    }


GOOD_CLAIMS = {"iss": "https://issuer.example", "aud": "api", "email": "ada@example.com", "scope": "profile:read x"}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({}, 200),
        ({"exp": 1}, 401),  # expired
        ({"aud": "other"}, 401),
        ({"iss": "https://evil.example"}, 401),
        ({"email": None}, 401),  # a required claim missing
        ({"scope": "profile:write"}, 403),  # valid, without the operation's scope
        ("no token", 401),
        ("signed by another key", 401),
    ],
)
async def test_jwt_authorizer(
    tmp_path: Path, functions: dict[str, Any], rsa_keys: tuple[Any, dict[str, Any]], change: Any, status: int
) -> None:
    import time as clock

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private, jwks = rsa_keys
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    claims: dict[str, Any] = {**GOOD_CLAIMS, "exp": int(clock.time()) + 60}
    key = private
    if isinstance(change, dict):
        claims.update(change)
        claims = {k: v for k, v in claims.items() if v is not None}
    elif change == "signed by another key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    headers = {} if change == "no token" else {"Authorization": f"Bearer {token}"}
    app = GatewayApp(jwt_spec(str(tmp_path / "jwks.json")), functions={"fn1": functions["fn1"]})
    response = await request(app, "GET", "/me", headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        context = response.json()["event"]["requestContext"]["authorizer"]["jwt"]
        assert context["claims"]["email"] == "ada@example.com"
        assert context["scopes"] == ["profile:read", "x"]


async def test_jwt_authorizer_without_its_jwks_is_500(tmp_path: Path, functions: dict[str, Any]) -> None:
    app = GatewayApp(jwt_spec(str(tmp_path / "missing.json")), functions={"fn1": functions["fn1"]})
    response = await request(app, "GET", "/me", headers={"Authorization": "Bearer a.b.c"})
    assert response.status_code == 500 and "could not be read" in response.json()["message"]


async def test_functions_take_their_own_settings_and_inline_environment(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(
        "import json, os\n"
        "def handler(event, context):\n"
        "    return {'body': json.dumps([os.environ.get('GREETING'), context.memory_limit_in_mb])}\n"
    )
    function = {
        "source": str(tmp_path),
        "handler": "index.handler",
        "memory_limit_mb": 256,
        "environment": {"GREETING": "hi"},
    }
    response = await request(GatewayApp(SPEC, functions={"fn1": function}), "GET", "/items/1")
    assert response.json() == ["hi", 256]


async def test_an_edit_reloads_only_that_functions_instances(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.py").write_text(
            f"import os\ndef handler(e, c):\n    return {{'body': '{name} ' + str(os.getpid())}}\n"
        )

    def route(fid: str) -> dict[str, Any]:
        return {"get": {"x-yc-apigateway-integration": {"type": "cloud_functions", "function_id": fid}}}

    spec = {"openapi": "3.0.0", "paths": {"/a": route("a"), "/b": route("b")}}
    functions = {fid: {"source": str(tmp_path / fid), "handler": "index.handler", "reload": True} for fid in ("a", "b")}
    app = GatewayApp(spec, functions=functions)
    async with serving(app) as client:
        before = {fid: (await client.get(f"/{fid}")).text for fid in ("a", "b")}
        source = tmp_path / "a" / "index.py"
        source.write_text(source.read_text().replace("'a '", "'a2 '"))
        os.utime(source, (time.time() + 2, time.time() + 2))
        for _ in range(60):  # bounded: a reload takes well under a second
            await anyio.sleep(0.05)
            if (await client.get("/a")).text.startswith("a2 "):
                break
        after = {fid: (await client.get(f"/{fid}")).text for fid in ("a", "b")}
    assert after["a"].startswith("a2 ") and after["a"] != before["a"]
    assert after["b"] == before["b"]  # the same instance, untouched


def tagged(tag: str) -> dict[str, Any]:
    integration = {"type": "cloud_functions", "function_id": "f", "tag": tag}
    return {"get": {"x-yc-apigateway-integration": integration}}


async def test_a_tag_is_a_version_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(
        "import os\ndef handler(e, c):\n    return {'body': c.function_version + ' ' + str(os.getpid())}\n"
    )
    spec = {
        "openapi": "3.0.0",
        "paths": {"/latest": tagged("$latest"), "/prod": tagged("prod"), "/v/{t}": tagged("{t}")},
    }
    app = GatewayApp(spec, functions={"f": {"source": str(tmp_path), "handler": "index.handler"}})
    async with serving(app) as client:
        answers = [(await client.get(path)).text.split() for path in ("/latest", "/prod", "/v/canary", "/prod")]
    assert [version for version, _ in answers] == ["$latest", "prod", "canary", "prod"]
    assert len({pid for _, pid in answers[:3]}) == 3 and answers[1][1] == answers[3][1]  # one instance per version


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ({"source": "nope", "handler": "index.handler"}, "function fn1: its folder"),
        (
            {"source": ".", "handler": "index.handler", "bogus_key": 1},
            "function fn1: FunctionApp() got unknown setting(s) bogus_key",
        ),
        (
            {"source": ".", "handler": "index.handler", "memory_limit_mb": "lots"},
            "function fn1: memory_limit_mb must be a whole number",
        ),
    ],
)
def test_a_broken_function_mapping_names_the_function_and_the_fix(
    tmp_path: Path, function: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        GatewayApp(SPEC, functions={"fn1": {**function, "source": str(tmp_path / function["source"])}})
