"""The demo functions, the Starlette mount and the host-app example."""

from __future__ import annotations

import struct
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from sf_asgi import FunctionApp

from .conftest import client, running
from .servers import ROOT, free_port, serve

DEMO = ROOT / "demo"

pytestmark = pytest.mark.anyio


def demo(name: str) -> FunctionApp:
    return FunctionApp(f"{name}.handler", source_dir=str(DEMO))


async def test_echo_demo_is_the_platform_docs_example() -> None:
    async with client(demo("index")) as http:
        body = (await http.post("/?param=one", json={"hello": "world"})).json()
    assert body["event"]["body"] == '{"hello":"world"}'
    assert set(body["context"]) >= {"request_id", "deadline_ms", "token"}


async def test_form_demo() -> None:
    async with client(demo("form")) as http:
        page = await http.get("/")
        posted = await http.post("/", data={"name": "Ада <b>"})
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<form" in page.text
    assert "Thank you, Ада &lt;b&gt;!" in posted.text


async def test_image_demo() -> None:
    async with client(demo("image")) as http:
        image = await http.get("/", params={"color": "ff8800"})
        bad = await http.get("/", params={"color": "zz"})
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", image.content[16:24]) == (64, 32)
    assert bad.status_code == 400


async def test_cookies_demo() -> None:
    async with client(demo("cookies")) as http:
        response = await http.get("/", params={"visits": "2"})
    assert response.json() == {"visits": 3}
    assert response.headers.get_list("set-cookie") == [
        "visits=3; Path=/; Max-Age=3600",
        "theme=dark; Path=/; HttpOnly; SameSite=Lax",
    ]


async def test_api_demo() -> None:
    async with client(demo("api")) as http:
        created = await http.post("/", json={"title": "write tests"})
        listed = await http.get("/")
        wrong = await http.post("/", content=b"title=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
        invalid = await http.post("/", content=b"{", headers={"Content-Type": "application/json"})
        deleted = await http.delete("/", params={"id": created.json()["id"]})
        missing = await http.delete("/", params={"id": 999})
        put = await http.put("/")
    assert created.status_code == 201
    assert listed.json() == {"todos": [{"id": 1, "title": "write tests", "done": False}]}
    assert (wrong.status_code, invalid.status_code, deleted.status_code, missing.status_code) == (415, 400, 200, 404)
    assert put.status_code == 405


async def test_mount_inside_starlette_with_its_routes_middleware_and_lifespan(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(
        textwrap.dedent(
            """
            open("imported", "w").close()
            def handler(event, context):
                return {"body": event["queryStringParameters"].get("x", "")}
            """
        )
    )
    fn = FunctionApp("index.handler", source_dir=str(tmp_path))

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def tag(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-host"] = "yes"
        return response

    host = Starlette(
        routes=[Route("/health", health), Mount("/fn", app=fn)],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=tag)],
        lifespan=fn.lifespan,
    )
    async with running(host), client(host) as http:
        assert (tmp_path / "imported").exists()  # imported at the host's startup
        assert (await http.get("/health")).text == "ok"
        response = await http.get("/fn/some/path?x=42")
        assert response.text == "42"
        assert response.headers["x-host"] == "yes"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a sync test among async ones
def test_host_app_example_under_uvicorn(tmp_path: Path, anyio_backend: str) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "host_app:app", "--host", "127.0.0.1", "--port", str(port)]
    with serve(cmd, DEMO, {}, port, tmp_path / "host.log") as srv:
        health = httpx.get(f"{srv.url}/health", timeout=5)
        fn = httpx.get(f"{srv.url}/fn/?x=1", timeout=5)
        log = srv.log
    assert health.text == "ok"
    assert fn.json()["event"]["queryStringParameters"] == {"x": "1"}
    assert fn.json()["context"]["function_name"] == "echo"
    assert fn.headers["x-powered-by"] == "host-app"
    assert "Application startup complete" in log
