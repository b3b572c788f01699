"""The context (SPEC §3)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from sf_asgi import Context, FunctionApp, Settings
from sf_asgi._context import make_context

from .conftest import client

KEYS = {
    "request_id",
    "aws_request_id",
    "function_name",
    "invoked_function_arn",
    "function_version",
    "log_stream_name",
    "log_group_name",
    "memory_limit_in_mb",
    "deadline_ms",
    "token",
}


def test_documented_dump_prints_exactly_the_platform_keys() -> None:
    settings = Settings(function_name="d4eo2", function_version="d4e3v", log_group="ckgj", memory_limit_mb=256)
    context = make_context(settings, "req-1", started=1000.0, issued_at=1000.0)
    dumped = json.loads(json.dumps({"context": context}, default=vars))["context"]
    assert set(dumped) == KEYS
    assert dumped == {
        "request_id": "req-1",
        "aws_request_id": "req-1",
        "function_name": "d4eo2",
        "invoked_function_arn": "d4eo2",
        "function_version": "d4e3v",
        "log_stream_name": "d4e3v",
        "log_group_name": "ckgj",
        "memory_limit_in_mb": 256,
        "deadline_ms": 1_010_000,
        "token": None,
    }
    assert isinstance(context, Context)


def test_token_from_iam_token() -> None:
    settings = Settings(iam_token="t1.secret")
    context = make_context(settings, "r", started=5000.0, issued_at=1000.0)
    assert context.token == {"access_token": "t1.secret", "expires_in": 43_200 - 4000, "token_type": "Bearer"}


@pytest.mark.parametrize(("timeout", "budget_ms"), [(10, 10_000), (2.5, 2_500), (0, 3_600_000)])
def test_deadline_and_remaining_time(timeout: float, budget_ms: int) -> None:
    now = time.time()
    context = make_context(Settings(timeout=timeout), "r", started=now, issued_at=now)
    assert context.deadline_ms == int((now * 1000) + budget_ms)
    remaining = context.get_remaining_time_in_millis()
    assert budget_ms - 1000 < remaining <= budget_ms


@pytest.mark.anyio
async def test_context_through_the_app() -> None:
    seen: list[Any] = []

    def handler(event: Any, context: Any) -> dict[str, Any]:
        seen.append((context, context.get_remaining_time_in_millis()))
        return {"body": json.dumps(context, default=vars)}

    app = FunctionApp(handler, timeout=3, memory_limit_mb=512, function_name="fn", iam_token="tok")
    async with client(app) as http:
        response = await http.get("/")
    dumped = response.json()
    assert set(dumped) == KEYS
    assert dumped["memory_limit_in_mb"] == 512
    assert dumped["function_name"] == dumped["invoked_function_arn"] == "fn"
    assert dumped["token"]["access_token"] == "tok"
    assert dumped["token"]["token_type"] == "Bearer"
    context, remaining = seen[0]
    assert 2000 < remaining <= 3000
    assert abs(context.deadline_ms - (time.time() * 1000 + 3000)) < 1500
