"""`sf-asgi invoke` and `sf-asgi generate-event`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FUNCTION = """
import asyncio, json, time

def handler(event, context):
    print("printed by the handler")
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
    if isinstance(event, dict) and "httpMethod" in event:
        return {"statusCode": 201, "headers": {"X-Method": event["httpMethod"], "Host": "dropped"},
                "body": json.dumps(event.get("queryStringParameters"))}
    return {"raw": event}

async def ahandler(event, context):
    await asyncio.sleep(0)
    return {"kinds": [m["event_metadata"]["event_type"] for m in event["messages"]]}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "index.py").write_text(FUNCTION)
    return tmp_path


def sf_asgi(folder: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    return subprocess.run(
        [sys.executable, "-m", "sf_asgi", *args],
        cwd=folder,
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_http_event_file_gives_the_response_a_client_would_get(folder: Path) -> None:
    event: dict[str, Any] = {
        "httpMethod": "POST",
        "headers": {},
        "queryStringParameters": {"a": "1"},
        "body": "",
        "isBase64Encoded": False,
    }
    (folder / "event.json").write_text(json.dumps(event))
    result = sf_asgi(folder, "invoke", "index.handler", "--event", "event.json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "statusCode": 201,
        "headers": {"X-Method": "POST"},  # Host is dropped, as the platform drops it
        "body": '{"a": "1"}',
        "isBase64Encoded": False,
    }
    log = result.stderr
    assert "printed by the handler" in log
    assert log.index("START RequestID") < log.index("printed by the handler") < log.index("END RequestID")
    assert "Function Init Duration" in log  # a fresh instance: its cold start


def test_without_an_event_it_is_a_get(folder: Path) -> None:
    result = sf_asgi(folder, "invoke", "index.handler")
    assert result.returncode == 0 and json.loads(result.stdout)["headers"]["X-Method"] == "GET"


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_trigger_batch_on_an_async_handler(folder: Path, isolation: str) -> None:
    args = ["--trigger", "object_storage", "--payload", "a.jpg", "--payload", "b.jpg", "--isolation", isolation]
    result = sf_asgi(folder, "invoke", "index.ahandler", *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"kinds": ["yandex.cloud.events.storage.ObjectCreate"] * 2}


def test_generate_event_piped_into_invoke(folder: Path) -> None:
    generated = sf_asgi(folder, "generate-event", "message_queue", "--payload", "hello")
    assert generated.returncode == 0
    assert json.loads(generated.stdout)["messages"][0]["details"]["message"]["body"] == "hello"
    result = sf_asgi(folder, "invoke", "index.ahandler", "--event", "-", "--raw", stdin=generated.stdout)
    assert (result.returncode, json.loads(result.stdout)) == (
        0,
        {"kinds": ["yandex.cloud.events.messagequeue.QueueMessage"]},
    )


def test_a_raw_event_from_stdin(folder: Path) -> None:
    result = sf_asgi(folder, "invoke", "index.handler", "--raw", "--event", "-", stdin='["x", 1]')
    assert (result.returncode, json.loads(result.stdout)) == (0, {"raw": ["x", 1]})


@pytest.mark.parametrize(
    ("stdin", "args", "error_type"),
    [
        ('{"fail": true}', [], "ValueError"),
        ('{"sleep": 3}', ["--timeout", "0.5"], "Timeout"),
    ],
)
def test_an_error_exits_1_with_the_platforms_error_json(
    folder: Path, stdin: str, args: list[str], error_type: str
) -> None:
    result = sf_asgi(folder, "invoke", "index.handler", "--raw", "--event", "-", *args, stdin=stdin)
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorType"] == error_type
    assert "END RequestID" in result.stderr  # the log still has the invocation's end


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["generate-event", "cron"], None, "unknown trigger kind 'cron': use one of timer, message_queue"),
        (["invoke", "index.handler", "--trigger", "nope"], None, "unknown trigger kind 'nope'"),
        (["invoke", "index.handler", "--event", "-"], "not json", "--event stdin is not JSON"),
        (["invoke", "index.handler", "--event", "missing.json"], None, "--event missing.json: No such file"),
        (["invoke", "index.handler", "--event", "e.json", "--trigger", "timer"], None, "not both"),
        (["index.handler", "--timer", "every minute"], None, "--timer: cron 'every minute' has 2 fields"),
        (["generate-event", "budget", "--payload", "lots"], None, "the amount, a number"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix_and_exit_2(
    folder: Path, args: list[str], stdin: str | None, message: str
) -> None:
    result = sf_asgi(folder, *args, stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[0], result.stderr
    assert "Traceback" not in result.stderr
