"""Invocation logs and the user's logging (SPEC §6)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sf_asgi import FunctionApp
from sf_asgi._logging import JsonFormatter, TextFormatter, billed_ms, max_memory_mb, request_id_var

from .conftest import client

REPORT = re.compile(
    r"REPORT RequestID: (?P<id>[0-9a-f-]{36}) Duration: (?P<duration>\d+\.\d{3}) ms "
    r"Billed Duration: (?P<billed>\d+) ms Memory Size: (?P<size>\d+) MB Max Memory Used: (?P<used>\d+) MB "
    r"Queuing Duration: (?P<queued>\d+\.\d{3}) ms(?: Function Init Duration: (?P<init>\d+\.\d{3}) ms)?$"
)


def sf_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sf_asgi" and r.levelno == logging.INFO]


def system_lines(isolation: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """START/END/REPORT: records of sf_asgi's logger in a thread instance, stdout lines from a process one."""
    lines = sf_lines(caplog) if isolation == "thread" else capsys.readouterr().out.splitlines()
    return [line for line in lines if line.startswith(("START ", "END ", "REPORT "))]


@pytest.mark.parametrize(
    ("duration", "billed"), [(0.001, 100), (99.9, 100), (100.0, 100), (100.001, 200), (236.606, 300), (1000.0, 1000)]
)
def test_billed_duration_rounds_up_to_100_ms(duration: float, billed: int) -> None:
    assert billed_ms(duration) == billed


def test_max_memory_is_read_at_most_once_a_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from sf_asgi import _logging

    readings: list[int] = []
    real = resource.getrusage
    monkeypatch.setattr(resource, "getrusage", lambda who: readings.append(who) or real(who))
    monkeypatch.setattr(_logging, "_peak", (-1.0, 0))
    used = max_memory_mb(100.0)
    assert used == real(resource.RUSAGE_SELF).ru_maxrss // 1024 > 0
    assert max_memory_mb(100.0009) == used
    assert len(readings) == 1
    max_memory_mb(100.0011)
    assert len(readings) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("isolation", ["process", "thread"])
async def test_start_end_report_lines(
    write_function: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    isolation: str,
) -> None:
    caplog.set_level(logging.INFO, logger="sf_asgi")
    folder = write_function(
        """
        import time
        time.sleep(0.05)  # the cold start
        def handler(event, context):
            time.sleep(0.12)
            return {"body": context.request_id}
        """
    )
    app = FunctionApp(
        "index.handler", source_dir=str(folder), function_version="v42", memory_limit_mb=256, isolation=isolation
    )
    async with client(app) as http:
        ids = [(await http.get("/")).text for _ in range(2)]
    await app.shutdown()
    lines = system_lines(isolation, caplog, capsys)
    assert lines[0] == f"START RequestID: {ids[0]} Version: v42"
    assert lines[1] == f"END RequestID: {ids[0]}"
    assert lines[3] == f"START RequestID: {ids[1]} Version: v42"
    assert lines[4] == f"END RequestID: {ids[1]}"
    reports = [REPORT.match(lines[2]), REPORT.match(lines[5])]
    assert all(reports), lines
    for report, request_id in zip(reports, ids, strict=True):
        assert report is not None
        assert report["id"] == request_id
        duration = float(report["duration"])
        assert duration >= 120
        assert int(report["billed"]) == billed_ms(duration)
        assert int(report["billed"]) % 100 == 0
        assert int(report["size"]) == 256
        assert int(report["used"]) > 10
        assert float(report["queued"]) < duration
    assert reports[0] is not None and reports[1] is not None
    assert float(reports[0]["init"]) >= 50  # the cold start, once
    assert reports[1]["init"] is None


@pytest.mark.anyio
@pytest.mark.parametrize("isolation", ["process", "thread"])
async def test_init_duration_of_a_lifespan_cold_start_goes_with_the_first_report(
    write_function: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    isolation: str,
) -> None:
    caplog.set_level(logging.INFO, logger="sf_asgi")
    folder = write_function("import time\ntime.sleep(0.05)\ndef handler(e, c):\n    return None\n")
    app = FunctionApp("index.handler", source_dir=str(folder), isolation=isolation)
    await app.startup()
    async with client(app) as http:
        await http.get("/")
        await http.get("/")
    await app.shutdown()
    reports = [REPORT.match(line) for line in system_lines(isolation, caplog, capsys) if line.startswith("REPORT")]
    assert [r["init"] is not None for r in reports if r] == [True, False]


@pytest.mark.anyio
async def test_queuing_duration_counts_the_wait(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sf_asgi")

    async def handler(event: Any, context: Any) -> None:
        await asyncio.sleep(0.1)

    async with client(FunctionApp(handler)) as http:
        await asyncio.gather(http.get("/"), http.get("/"))
    queued = sorted(float(m["queued"]) for line in sf_lines(caplog) if (m := REPORT.match(line)))
    assert queued[0] < 50
    assert queued[1] >= 90


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_request_id_on_every_record_of_interleaved_invocations(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = logging.getLogger("user_code")

    def sync_handler(event: Any, context: Any) -> dict[str, Any]:
        user.warning("before")
        time.sleep(0.01)
        user.warning("after")
        return {"body": context.request_id}

    async def async_handler(event: Any, context: Any) -> dict[str, Any]:
        user.warning("before")
        await asyncio.sleep(0.01)
        user.warning("after")
        return {"body": context.request_id}

    app = FunctionApp(sync_handler if kind == "sync" else async_handler, concurrency=4)
    async with client(app) as http:
        responses = await asyncio.gather(*(http.get("/") for _ in range(12)))
    ids = {r.text for r in responses}
    records = [r for r in caplog.records if r.name == "user_code"]
    assert len(records) == 24
    by_id: dict[str, list[str]] = {}
    for record in records:
        by_id.setdefault(record.request_id, []).append(record.getMessage())  # type: ignore[attr-defined]
    assert set(by_id) == ids
    assert all(messages == ["before", "after"] for messages in by_id.values())
    assert request_id_var.get() == ""  # nothing leaks out of the request


def _record(level: int, message: str) -> logging.LogRecord:
    record = logging.LogRecord("sf_asgi", level, __file__, 1, message, None, None)
    record.request_id = "rid"
    return record


@pytest.mark.parametrize(
    ("level", "text", "entry"),
    [
        (logging.INFO, "START RequestID: rid Version: v", {"level": "INFO", "msg": "START RequestID: rid Version: v"}),
        (logging.WARNING, "timed out", {"level": "WARN", "msg": "timed out"}),
        (logging.ERROR, "failed: ошибка", {"level": "ERROR", "msg": "failed: ошибка"}),
        (logging.CRITICAL, "down", {"level": "FATAL", "msg": "down"}),
    ],
)
def test_formatters(level: int, text: str, entry: dict[str, str]) -> None:
    line = JsonFormatter().format(_record(level, text))
    assert "\n" not in line
    assert json.loads(line) == {**entry, "request_id": "rid"}
    plain = TextFormatter().format(_record(level, text))
    assert plain == text if level == logging.INFO else plain == f"[{logging.getLevelName(level)}]\trid\t{text}"


@pytest.mark.anyio
async def test_client_disconnect_during_the_invocation_is_logged_and_nothing_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished: list[bool] = []

    async def handler(event: Any, context: Any) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        finished.append(True)
        return {"body": "too late"}

    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0.1)  # the client leaves while the handler runs
        return {"type": "http.disconnect"}

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "query_string": b"", "headers": [], "client": ("127.0.0.1", 1)}
    await FunctionApp(handler)(scope, receive, send)
    assert finished == [True]
    assert sent == []
    assert "Client disconnected before invocation" in caplog.text


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_system_lines_written_without_a_record_match_the_full_path(formatter: logging.Formatter) -> None:
    import io

    from sf_asgi._logging import _StdoutHandler

    lines = ("START RequestID: rid-1 Version: v", "END RequestID: rid-1", "REPORT RequestID: rid-1 Duration: 1.000 ms")
    outputs = []
    for shortcut in (False, True):
        stream = io.StringIO()
        handler = _StdoutHandler(stream)
        handler.setFormatter(formatter)
        token = request_id_var.set("rid-1")
        try:
            if shortcut:
                handler.write_system(formatter.system_lines(lines[:1]), flush=False)  # type: ignore[attr-defined]
                handler.write_system(formatter.system_lines(lines[1:]), flush=True)  # type: ignore[attr-defined]
            else:
                for message in lines:
                    record = _record(logging.INFO, message)
                    record.request_id = "rid-1"
                    handler.handle(record)
        finally:
            request_id_var.reset(token)
        outputs.append(stream.getvalue())
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == 3


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_system_lines_go_to_stdout_when_the_server_set_up_logging_first(tmp_path: Path, isolation: str) -> None:
    """As daphne does: the root logger already writes to stderr in the server's format."""
    (tmp_path / "index.py").write_text("def handler(event, context):\n    return {'body': 'ok'}\n")
    script = f"""
import logging, sys
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)-8s %(message)s")
from sf_asgi.testing import Client
with Client("index.handler", source_dir={str(tmp_path)!r}, isolation={isolation!r}) as client:
    assert client.get("/").text == "ok"
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^START RequestID: \S+ Version: \$latest$", result.stdout, re.M), result
    assert re.search(r"^REPORT RequestID: ", result.stdout, re.M)
    assert "RequestID" not in result.stderr
