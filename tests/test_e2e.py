"""End to end: real `uvicorn sf_asgi:app` processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
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
    deadline = time.monotonic() + 3  # the other request may run on another instance: wait for the first
    while "Client disconnected before invocation" not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Client disconnected before invocation" in server.log
    assert_clean_log(server)


def test_keep_alive_connection_serves_many(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as http:
        ids = {http.get("/").json()["context"]["request_id"] for _ in range(20)}
    assert len(ids) == 20


LOGGING_FUNCTION = """
import json, logging, time

logging.basicConfig(level=logging.DEBUG, format="IGNORED %(message)s")  # a no-op, as on the platform
log = logging.getLogger("fn")

def handler(event, context):
    if "custom" in event["queryStringParameters"]:
        for h in logging.getLogger().handlers:
            h.setFormatter(logging.Formatter("%(levelname)s|%(name)s|%(request_id)s|%(message)s"))
    logging.info("info is below WARNING")
    log.warning("warned")
    print("printed line")
    print(json.dumps({"message": "structured", "level": "INFO", "k": 1}))
    return {"body": context.request_id}
"""


@pytest.mark.parametrize("kind", ["def", "async def"])
@pytest.mark.parametrize("unbuffered", [{}, {"PYTHONUNBUFFERED": "1"}], ids=["buffered", "unbuffered"])
def test_lines_go_out_after_each_invocation_in_order(tmp_path: Path, unbuffered: dict[str, str], kind: str) -> None:
    # Buffered (Python's default for a pipe), sf_asgi flushes once per turn of the event loop
    # (async) or when the worker has nothing queued (sync): nobody else flushes here.
    (tmp_path / "index.py").write_text(
        f"{kind} handler(event, context):\n    print('hi')\n    return {{'body': context.request_id}}\n"
    )
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler", **unbuffered}, ["--no-access-log"]) as srv:
        ids = [httpx.get(srv.url, timeout=5).text for _ in range(2)]
        time.sleep(0.3)
        lines = [line.split(" Duration")[0] for line in srv.log.splitlines() if "RequestID" in line or line == "hi"]
    assert lines == [
        line
        for request_id in ids
        for line in (f"START RequestID: {request_id} Version: $latest", "hi", f"END RequestID: {request_id}",
                     f"REPORT RequestID: {request_id}")
    ]  # fmt: skip


def test_logs_look_like_the_platforms(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(textwrap.dedent(LOGGING_FUNCTION))
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler", "SF_FUNCTION_VERSION": "v7"}) as srv:
        first = httpx.get(srv.url, timeout=5).text
        second = httpx.get(srv.url, params={"custom": 1}, timeout=5).text
        time.sleep(0.2)
        lines = srv.log.splitlines()
    start = lines.index(f"START RequestID: {first} Version: v7")
    end = lines.index(f"END RequestID: {first}")
    body = lines[start + 1 : end]
    assert re.fullmatch(rf"\[WARNING\]\t\d{{4}}-\d\d-\d\d [\d:,]+\t{first}\twarned", body[0])
    assert body[1:] == ["printed line", '{"message": "structured", "level": "INFO", "k": 1}']
    assert lines[end + 1].startswith(f"REPORT RequestID: {first} Duration: ")
    assert "Function Init Duration" in lines[end + 1]
    assert f"WARNING|fn|{second}|warned" in lines
    assert "Function Init Duration" not in next(
        line for line in lines if line.startswith(f"REPORT RequestID: {second}")
    )
    assert not any("info is below" in line or "IGNORED" in line for line in lines)


def test_json_log_format(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("def handler(event, context):\n    return {'body': context.request_id}\n")
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler", "SF_LOG_FORMAT": "json"}) as srv:
        request_id = httpx.get(srv.url, timeout=5).text
        time.sleep(0.2)
        entries = [json.loads(line) for line in srv.log.splitlines() if line.startswith("{")]
    mine = [e for e in entries if e["request_id"] == request_id]
    assert [e["msg"].split(" ")[0] for e in mine] == ["START", "END", "REPORT"]
    assert all(e["level"] == "INFO" for e in mine)


def test_sigterm_lets_the_invocation_in_flight_finish(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(
        "import time\ndef handler(event, context):\n    time.sleep(1.0)\n    return {'body': 'finished'}\n"
    )
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler"}) as srv, httpx.Client(timeout=10) as http:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(http.get, srv.url)
            time.sleep(0.3)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            with pytest.raises(httpx.ConnectError):
                httpx.get(srv.url, timeout=2)  # no new requests once it is stopping
            response = in_flight.result(timeout=10)
        # It stops by itself once the invocation is done. uvicorn ends by re-raising the SIGTERM
        # it handled (status -15); the sf-asgi CLI turns that into 0.
        assert srv.proc.wait(10) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.log
    assert response.status_code == 200
    assert response.text == "finished"


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_streaming_100_mb_at_the_server_does_not_raise_its_memory(server: Server) -> None:
    httpx.post(server.url, content=b"warm-up", timeout=5)
    before = _peak_rss_kb(server.proc.pid)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        deadline = time.monotonic() + 30
        try:
            while sent < 100 * 1024 * 1024 and time.monotonic() < deadline:
                sock.sendall(frame)
                sent += len(chunk)
        except OSError:
            pass  # the server answered 413 and closed: the rest has nowhere to go
        answer = b""
        with contextlib.suppress(OSError):
            answer = sock.recv(65536)
    after = _peak_rss_kb(server.proc.pid)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert after - before < 3584 + 8192, f"peak RSS grew by {after - before} KiB"
    # And with the size declared up front, the answer comes before any body is sent.
    answer = raw_request(server.port, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 104857600\r\n\r\n", limit=3)
    assert answer.startswith(b"HTTP/1.1 413")
    assert httpx.get(server.url, timeout=5).status_code == 200
    assert_clean_log(server)


def test_log_level_warning_drops_the_system_lines_but_not_errors(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(
        "def handler(event, context):\n"
        "    if event['queryStringParameters'].get('fail'):\n"
        "        raise ValueError('shown anyway')\n"
        "    return {'body': 'ok'}\n"
    )
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler", "SF_LOG_LEVEL": "warning"}) as srv:
        assert httpx.get(srv.url, timeout=5).text == "ok"
        assert httpx.get(srv.url, params={"fail": 1}, timeout=5).status_code == 502
        time.sleep(0.2)
        log = srv.log
    assert "START RequestID" not in log and "REPORT RequestID" not in log
    assert "shown anyway" in log


BAD_INPUTS = """
def handler(event, context):
    if not isinstance(event, dict) or "httpMethod" not in event:  # ?integration=raw
        return {"kind": type(event).__name__, "size": len(event) if isinstance(event, (str, list)) else 0}
    do = event["queryStringParameters"].get("do")
    if do == "deep":
        extra = {}
        for _ in range(980):
            extra = {"a": extra}
        return {"statusCode": 201, "body": "deep", "extra": extra}
    if do == "generator_exit":
        raise GeneratorExit("bye")
    if do == "spaces":
        return {"statusCode": 200, "headers": {"X-Spaced": " v ", "X-Tabbed": "\\tw x\\t"}, "body": "ok"}
    headers = {"x-my-header": "1"}
    return {"statusCode": 200, "headers": headers, "multiValueHeaders": {"set-cookie": ["a=1"]}, "body": "ok"}
"""


@pytest.fixture(params=["httptools-process", "h11-process", "httptools-thread", "h11-thread"])
def bad_inputs_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    yield from _bad_inputs_server(request, tmp_path)


@pytest.fixture(params=["httptools-thread", "h11-process"])  # each HTTP implementation, each isolation once
def wire_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    yield from _bad_inputs_server(request, tmp_path)


def _bad_inputs_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    http, isolation = request.param.split("-")
    (tmp_path / "index.py").write_text(textwrap.dedent(BAD_INPUTS))
    env = {"SF_HANDLER": "index.handler", "SF_ISOLATION": isolation}
    with uvicorn(tmp_path, env, ["--http", http]) as srv:
        yield srv


def test_bad_inputs_get_the_platforms_answer_and_the_server_serves_on(bad_inputs_server: Server) -> None:
    srv = bad_inputs_server
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        nested = b"[" * 100_000 + b"]" * 100_000  # deeper than json.loads reads: passed as its text
        raw = http.post("/?integration=raw", content=nested)
        deep = http.get("/", params={"do": "deep"})  # Go reads 980 levels; Python's loads may not
        generator_exit = http.get("/", params={"do": "generator_exit"})
        ok = http.get("/")
    assert (raw.status_code, raw.json()) == (200, {"kind": "str", "size": 200_000})
    assert (deep.status_code, deep.text) == (201, "deep")
    assert generator_exit.status_code == 502
    assert generator_exit.headers["x-function-error"] == "true"
    assert generator_exit.json()["errorType"] == "GeneratorExit"
    assert generator_exit.json()["errorMessage"] == "bye"
    assert ok.status_code == 200
    assert_clean_log(srv)
    assert "please report this as a bug" not in srv.log


def test_header_values_are_trimmed_on_the_wire(wire_server: Server) -> None:
    bad_inputs_server = wire_server
    answer = raw_request(bad_inputs_server.port, b"GET /?do=spaces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = answer.partition(b"\r\n\r\n")[0].decode().lower()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert "\r\nx-spaced: v\r\n" in head
    assert "\r\nx-tabbed: w x\r\n" in head
    assert_clean_log(bad_inputs_server)


def test_connect_is_refused_without_a_traceback(wire_server: Server) -> None:
    bad_inputs_server = wire_server
    answer = raw_request(bad_inputs_server.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    if bad_inputs_server.proc.args[-1] == "httptools":  # type: ignore[index]
        assert answer.startswith(b"HTTP/1.1 400 ")  # httptools' parser refuses it before the app sees it
    else:
        assert answer.startswith(b"HTTP/1.1 405 ")
        assert b'"errorType": "MethodNotAllowed"' in answer
    ok = httpx.get(f"{bad_inputs_server.url}/", timeout=10)
    assert ok.status_code == 200
    assert_clean_log(bad_inputs_server)


@pytest.mark.parametrize(("http", "names"), [("httptools", "lower"), ("h11", "as-sent")])
def test_header_name_case_on_the_wire_is_the_http_implementations(tmp_path: Path, http: str, names: str) -> None:
    """What the README says about header-name case: Go-canonical in sf_asgi, then as the server writes it."""
    (tmp_path / "index.py").write_text(textwrap.dedent(BAD_INPUTS))
    with uvicorn(tmp_path, {"SF_HANDLER": "index.handler"}, ["--http", http]) as srv:
        answer = raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = answer.partition(b"\r\n\r\n")[0].decode()
    if names == "lower":
        assert "\r\nx-my-header: 1" in head and "\r\nset-cookie: a=1" in head and "\r\ncontent-length: 2" in head
    else:
        assert "\r\nX-My-Header: 1" in head and "\r\nSet-Cookie: a=1" in head
        assert "\r\ncontent-length: 2" in head  # written by sf_asgi in lower case, as ASGI servers expect


@pytest.mark.parametrize(
    ("args", "believed"),
    [
        ([], True),  # uvicorn's own default: --proxy-headers, trusting 127.0.0.1
        (["--no-proxy-headers"], False),
        (["--forwarded-allow-ips", "10.9.9.9"], False),
    ],
)
def test_uvicorn_proxy_headers_decide_the_source_ip(tmp_path: Path, args: list[str], believed: bool) -> None:
    with uvicorn(ROOT / "demo", {"SF_HANDLER": "index.handler"}, args, log_dir=tmp_path) as srv:
        event = httpx.get(f"{srv.url}/", headers={"X-Forwarded-For": "6.6.6.6"}, timeout=10).json()["event"]
    source_ip = event["requestContext"]["identity"]["sourceIp"]
    assert source_ip == ("6.6.6.6" if believed else "127.0.0.1")
