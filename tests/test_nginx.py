"""sf_asgi behind real nginx, with the server block from demo/nginx/ (distinct loopback addresses)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .servers import NGINX, ROOT, Server, free_port, nginx, sf_asgi_cli

pytestmark = pytest.mark.skipif(
    not shutil.which(NGINX) and not os.environ.get("CI"), reason="nginx is not installed (CI installs it)"
)

CLIENT, PROXY = "127.0.0.3", "127.0.0.2"

FUNCTION = """
import base64, json

def handler(event, context):
    q = event["queryStringParameters"]
    if "fail" in q:
        raise ValueError("broken on purpose")
    if "png" in q:
        data = bytes(range(256)) * 64
        body = base64.b64encode(data).decode()
        return {"headers": {"Content-Type": "image/png"}, "body": body, "isBase64Encoded": True}
    if "size" in q:
        return {"body": json.dumps({"length": len(event["body"]), "base64": event["isBase64Encoded"]})}
    return {"body": json.dumps({"event": event})}
"""


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Server, Server]]:
    trusted = getattr(request, "param", PROXY)
    (tmp_path / "index.py").write_text(textwrap.dedent(FUNCTION))
    args = ["index.handler", "--proxy-headers", "--forwarded-allow-ips", trusted]
    with sf_asgi_cli(tmp_path, args) as app:
        proxy_port = free_port(PROXY)
        site = (ROOT / "demo" / "nginx" / "sf_asgi.conf").read_text()
        site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{app.port};")
        site = site.replace("listen 127.0.0.1:8000;", f"listen {PROXY}:{proxy_port};")
        # nginx connects to the app from its own address, so the app sees a distinct proxy.
        site = site.replace("proxy_pass http://sf_asgi;", f"proxy_pass http://sf_asgi;\n        proxy_bind {PROXY};")
        with nginx(site, tmp_path / "nginx", PROXY, proxy_port) as proxy:
            yield app, proxy


def _client() -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=CLIENT), timeout=10)


def _url(proxy: Server) -> str:
    return f"http://{PROXY}:{proxy.port}/"


def test_event_names_the_real_client_and_the_chain(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    with _client() as http:
        event = http.get(_url(proxy), headers={"X-Forwarded-For": "198.51.100.1"}).json()["event"]
    assert event["requestContext"]["identity"]["sourceIp"] == CLIENT
    assert event["headers"]["X-Real-Remote-Address"].startswith(f"[{CLIENT}]:")
    assert event["headers"]["X-Forwarded-For"] == f"198.51.100.1, {CLIENT}"
    assert event["headers"]["Host"] == PROXY


@pytest.mark.parametrize("stack", ["127.0.0.9"], indirect=True)
def test_an_untrusted_proxy_is_not_believed(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    with _client() as http:
        event = http.get(_url(proxy), headers={"X-Forwarded-For": "198.51.100.1"}).json()["event"]
    assert event["requestContext"]["identity"]["sourceIp"] == PROXY
    assert event["headers"]["X-Real-Remote-Address"].startswith(f"[{PROXY}]:")
    assert event["headers"]["X-Forwarded-For"] == f"198.51.100.1, {CLIENT}, {PROXY}"


def test_keep_alive_through_nginx(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    request = f"GET /?n=1 HTTP/1.1\r\nHost: {PROXY}\r\n\r\n".encode()
    with socket.create_connection((PROXY, proxy.port), timeout=5, source_address=(CLIENT, 0)) as sock:
        ids = []
        for _ in range(3):  # three requests, one connection
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")).split(b":")[1])
            while len(body) < length:
                body += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"connection: close" not in head.lower()
            ids.append(json.loads(body)["event"]["requestContext"]["requestId"])
    assert len(set(ids)) == 3


def test_uploads_download_and_errors_through_nginx(stack: tuple[Server, Server]) -> None:
    app, proxy = stack
    with _client() as http:
        text = json.dumps({"data": "x" * (3 * 1024 * 1024)})
        upload = http.post(_url(proxy) + "?size=1", content=text, headers={"Content-Type": "application/json"})
        binary = http.post(_url(proxy) + "?size=1", content=b"\x00" * (3 * 1024 * 1024))
        image = http.get(_url(proxy) + "?png=1")
        failed = http.get(_url(proxy) + "?fail=1")
    # 3 MB of JSON fits the event; 3 MB of bytes is 4 MB once base64-encoded: the platform's 413.
    assert upload.json() == {"length": len(text), "base64": False}
    assert binary.status_code == 413
    assert binary.json()["errorType"] == "RequestTooLarge"
    assert image.headers["content-type"] == "image/png"
    assert image.content == bytes(range(256)) * 64
    assert failed.status_code == 502
    assert failed.headers["x-function-error"] == "true"
    assert failed.json()["errorType"] == "ValueError"
    assert "Traceback" not in app.log
