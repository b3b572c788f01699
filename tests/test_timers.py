"""The timer loop with an injected clock, then real firings and `?integration=async` on real instances."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from sf_asgi import FunctionApp, _timers
from sf_asgi._cron import Schedule, parse_timers

from .conftest import client

pytestmark = pytest.mark.anyio

MINUTE = 1_796_169_600.0  # 2026-12-02 00:00:00 UTC, a minute boundary


async def test_the_loop_fires_each_schedule_at_its_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve minutes pass in no time: the clock is the loop's own, moved by its sleeps."""
    now = [MINUTE + 10]
    fired: list[tuple[str, str, float]] = []

    async def fake_sleep(seconds: float) -> None:
        for _ in range(5):  # the firings just spawned run first, at the time they were due
            await anyio.sleep(0)
        now[0] += seconds

    async def fire(schedule: Schedule, payload: str) -> None:
        fired.append((schedule.text, payload, now[0]))

    monkeypatch.setattr(_timers, "clock", lambda: now[0])
    monkeypatch.setattr(_timers, "sleep", fake_sleep)
    timers = parse_timers("*/5 * ? * * *=five\n* * ? * * *=every")
    with anyio.move_on_after(1):
        async with anyio.create_task_group() as group:
            group.start_soon(_timers.run, timers, fire)
            while now[0] < MINUTE + 12 * 60:
                await anyio.sleep(0)
            group.cancel_scope.cancel()
    minutes = [(text, payload, int(at - MINUTE) // 60) for text, payload, at in fired if at <= MINUTE + 12 * 60]
    assert [m for t, p, m in minutes if p == "every"] == list(range(1, 13))
    assert [m for t, p, m in minutes if p == "five"] == [5, 10]  # on the minute the schedule names, no drift
    assert all(at % 60 == 0 for _, _, at in fired)


@pytest.fixture
def folder(write_function: Callable[..., Path]) -> Path:
    return write_function(
        """
import time

def handler(event, context):
    if "messages" in event:
        print("tick payload:", event["messages"][0]["details"]["payload"])
        return {"fired": event["messages"][0]["event_metadata"]["event_type"]}
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"got": event}
"""
    )


@pytest.mark.parametrize("isolation", ["process", "thread"])
async def test_a_timer_fires_on_the_instances_while_http_is_served(
    folder: Path, isolation: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    caplog.set_level("INFO", logger="sf_asgi")
    start, base = time.time(), (int(time.time()) // 60 + 1) * 60 - 0.3  # 0.3 s before a minute
    monkeypatch.setattr(_timers, "clock", lambda: base + (time.time() - start))
    app = FunctionApp("index.handler", source_dir=str(folder), isolation=isolation, timer="* * * * ? *=tick")
    async with client(app) as http:
        assert (await http.post("/?integration=raw", json={"a": 1})).json() == {"got": {"a": 1}}
        await anyio.sleep(1.0)
    assert "tick payload: tick" in capsys.readouterr().out
    assert "Timer '* * * * ? *' fired: invocation" in caplog.text
    assert 'returned: {"fired": "yandex.cloud.events.serverless.triggers.TimerMessage"}' in caplog.text


@pytest.mark.parametrize("isolation", ["process", "thread"])
async def test_async_integration_answers_202_at_once_and_logs_the_outcome_later(
    folder: Path, isolation: str, capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    caplog.set_level("INFO", logger="sf_asgi")
    app = FunctionApp("index.handler", source_dir=str(folder), isolation=isolation)
    async with client(app) as http:
        began = time.monotonic()
        accepted = await http.post("/?integration=async", json={"sleep": 0.4, "n": 7})
        took = time.monotonic() - began
        request_id = accepted.headers["x-request-id"]
        assert (accepted.status_code, accepted.content) == (202, b"")
        assert took < 0.3  # answered before the invocation ended
        assert f"END RequestID: {request_id}" not in capsys.readouterr().out + caplog.text
        failed = await http.post("/?integration=async", json={"fail": True})
        await anyio.sleep(0.8)
    log = capsys.readouterr().out + caplog.text
    assert f"END RequestID: {request_id}" in log
    assert f'Async invocation {request_id} returned: {{"got": {{"sleep": 0.4, "n": 7}}}}' in log
    assert f"Async invocation {failed.headers['x-request-id']} ended with a 502" in log
    assert "asked to fail" in log


async def test_shutdown_waits_for_async_invocations_in_flight(folder: Path, caplog: Any) -> None:
    caplog.set_level("INFO", logger="sf_asgi")
    app = FunctionApp("index.handler", source_dir=str(folder))
    async with client(app) as http:
        accepted = await http.post("/?integration=async", json={"sleep": 0.3})
    assert f"Async invocation {accepted.headers['x-request-id']} returned" in caplog.text  # before the pool closed
