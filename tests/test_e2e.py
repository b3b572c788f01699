"""End to end: real `uvicorn sf_asgi:app` processes on 127.0.0.1."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .servers import ROOT, Server, raw_request, run_until_exit, uvicorn

FUNCTION = """
import json, time

def handler(event, context):
    q = event["queryStringParameters"]
    if "sleep" in q:
        time.sleep(float(q["sleep"]))
    if "fail" in q:
        raise RuntimeError("asked to fail")
    if "garbage" in q:
        return {"statusCode": "200", "headers": {"X-A": "1\\r\\nX-Injected: 1"}}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"event": event, "context": context}, default=vars)}
"""


@pytest.fixture(params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "index.py").write_text(textwrap.dedent(FUNCTION))
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler", "SF_TIMEOUT": "5"}, ["--http", request.param]) as srv:
        yield srv


def assert_clean_log(srv: Server) -> None:
    assert "Traceback" not in srv.log
    assert "Exception in ASGI application" not in srv.log


def test_demo_answers_like_the_platform(tmp_path: Path) -> None:
    with uvicorn(ROOT / "demo", {"SF_HANDLER": "index.handler"}, log_dir=tmp_path) as srv:
        response = httpx.post(
            f"{srv.url}/?param=one", content=b'{"hello": "world"}', headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200
    body = response.json()
    event, context = body["event"], body["context"]
    assert event["body"] == '{"hello": "world"}'
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"param": "one"}
    assert event["headers"]["X-Real-Remote-Address"].startswith("[127.0.0.1]:")
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert context["request_id"] == event["headers"]["X-Request-Id"]
    assert context["memory_limit_in_mb"] == 128
    assert "Traceback" not in srv.log


@pytest.mark.parametrize(
    ("files", "env", "expected"),
    [
        ({}, {}, ["SF_HANDLER is not set"]),
        ({"main.py": "x = 1"}, {"SF_HANDLER": "index.handler"}, ["No index.py in", "(it has: main.py)"]),
        ({"index.py": "x = 1"}, {"SF_HANDLER": "index.handler"}, ["has no 'handler'"]),
        ({"index.py": "handler = 1"}, {"SF_HANDLER": "index.handler"}, ["index.handler is a int, not a function"]),
        (
            {"index.py": "import json\nvalue = json.loads('{')\n"},
            {"SF_HANDLER": "index.handler"},
            [
                "Importing index failed: json.decoder.JSONDecodeError",
                'index.py", line 2, in <module>',
                "value = json.loads('{')",
            ],
        ),
        (
            {"index.py": "def handler(e, c)\n    pass\n"},
            {"SF_HANDLER": "index.handler"},
            ["Importing index failed: SyntaxError", "def handler(e, c)"],
        ),
        ({"index.py": "def handler(e, c): pass"}, {"SF_HANDLER": "index.handler", "SF_TIMEOUT": "x"}, ["SF_TIMEOUT="]),
    ],
)
def test_bad_sf_handler_exits_non_zero_with_the_cause(
    tmp_path: Path, files: dict[str, str], env: dict[str, str], expected: list[str]
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_until_exit(tmp_path, env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    cause = next(line for line in output.splitlines() if "sf_asgi: " in line)
    assert expected[0] in cause
    for text in expected[1:]:
        assert text in output
    assert "sf_asgi/_loader.py" not in output  # only the user's frames


def test_errors_and_garbage_keep_the_server_serving(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        failed = http.get("/", params={"fail": 1})
        garbage = http.get("/", params={"garbage": 1})
        ok = http.get("/")
    assert failed.status_code == 502
    assert failed.headers["x-function-error"] == "true"
    assert failed.json()["errorType"] == "RuntimeError"
    assert garbage.status_code == 502
    assert "x-injected" not in garbage.headers
    assert garbage.json()["errorType"] == "ProxyIntegrationError"
    assert ok.status_code == 200
    assert "Traceback" not in server.log.split("asked to fail")[0]  # the only traceback is the user's error


def test_invalid_utf8_in_query_and_headers(server: Server) -> None:
    answer = raw_request(
        server.port, b"GET /?x=%ff&y=%D0%BF HTTP/1.1\r\nHost: t\r\nX-Bad: ok\xff\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    event = json.loads(body)["event"]
    assert event["queryStringParameters"] == {"x": "\ufffd", "y": "п"}
    assert event["headers"]["X-Bad"] == "ok\ufffd"
    # Raw non-ASCII bytes in the request target: the server answers 400 itself, and serves on.
    answer = raw_request(server.port, b"GET /?y=\xfe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    assert httpx.get(server.url, timeout=5).status_code == 200
    assert_clean_log(server)


def test_hundreds_of_headers(server: Server) -> None:
    headers = "".join(f"X-H{i}: {i}\r\n" for i in range(200))
    answer = raw_request(server.port, f"GET / HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["event"]["headers"]["X-H199"] == "199"
    assert_clean_log(server)


def test_body_shorter_than_content_length_does_not_hang_the_instance(server: Server) -> None:
    raw_request(
        server.port,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly-ten!!",
        half_close=True,
        limit=1,
    )
    start = time.monotonic()
    ok = httpx.get(server.url, timeout=5)
    assert ok.status_code == 200
    assert time.monotonic() - start < 2
    assert_clean_log(server)


def test_client_that_disconnects_during_the_invocation(server: Server) -> None:
    raw_request(server.port, b"GET /?sleep=0.5 HTTP/1.1\r\nHost: t\r\n\r\n", read=False)
    time.sleep(0.1)
    ok = httpx.get(server.url, timeout=5)  # waits for the running invocation, then is served
    assert ok.status_code == 200
    assert_clean_log(server)


def test_keep_alive_connection_serves_many(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as http:
        ids = {http.get("/").json()["context"]["request_id"] for _ in range(20)}
    assert len(ids) == 20
