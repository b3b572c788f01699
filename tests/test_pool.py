"""The pool of process instances, in-process through the ASGI app, on asyncio and trio (SPEC §6)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sf_asgi import FunctionApp, _pool
from sf_asgi._config import ConfigError
from sf_asgi._loader import LoadError

from .conftest import client
from .handlers import ATTACK
from .servers import alive

pytestmark = pytest.mark.anyio

BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


@pytest.fixture
def folder(write_function: Callable[..., Path]) -> Path:
    return write_function(ATTACK)


@asynccontextmanager
async def started(folder: Path, entry: str = "index.handler", **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run around the block (min_instances started), and a client for it."""
    app = FunctionApp(entry, source_dir=str(folder), **settings)
    await app.startup()
    async with client(app) as http:  # shuts the app down on leaving
        yield http


async def gather(http: httpx.AsyncClient, paths: list[str]) -> list[httpx.Response]:
    """The requests at once; the responses in the order of `paths`."""
    responses: list[httpx.Response | None] = [None] * len(paths)

    async def one(i: int, path: str) -> None:
        responses[i] = await http.get(path, timeout=20)

    async with anyio.create_task_group() as group:
        for i, path in enumerate(paths):
            group.start_soon(one, i, path)
            await anyio.sleep(0.01)  # in this order
    return [r for r in responses if r is not None]


def pid(response: httpx.Response) -> int:
    return int(json.loads(response.text)["pid"])


@BACKENDS
async def test_busy_instances_scale_out_each_with_its_own_globals(folder: Path, anyio_backend: str) -> None:
    async with started(folder, min_instances=8, max_instances=8) as http:
        start = time.monotonic()
        responses = await gather(http, ["/?do=sleep&s=0.5"] * 8)
        elapsed = time.monotonic() - start
    assert [r.status_code for r in responses] == [200] * 8
    assert len({pid(r) for r in responses}) == 8
    assert [json.loads(r.text)["count"] for r in responses] == [1] * 8  # module globals are per instance
    assert elapsed < 1.3  # together, not one after another (4 s)


async def test_a_request_that_finds_all_busy_starts_an_instance(folder: Path) -> None:
    async with started(folder, max_instances=3) as http:
        responses = await gather(http, ["/?do=sleep&s=0.6"] * 3)
    assert len({pid(r) for r in responses}) == 3


async def test_at_max_instances_requests_wait_in_one_fifo_queue(folder: Path) -> None:
    async with started(folder, max_instances=1) as http:
        responses = await gather(http, ["/?do=sleep&s=0.2"] * 4)
    assert len({pid(r) for r in responses}) == 1
    assert [json.loads(r.text)["count"] for r in responses] == [1, 2, 3, 4]  # served in arrival order


@BACKENDS
async def test_max_queue_answers_429_naming_the_setting(folder: Path, anyio_backend: str) -> None:
    async with started(folder, max_instances=1, max_queue=1) as http:
        responses = await gather(http, ["/?do=sleep&s=0.5", "/", "/"])
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json()["errorType"] == "TooManyRequests"
    assert "SF_MAX_QUEUE=1" in responses[2].json()["errorMessage"]


async def _asgi_get(app: FunctionApp, query: bytes, leave_after: float | None = None) -> list[Any]:
    """One GET straight through ASGI; with `leave_after`, the client disconnects after that many seconds."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/", "raw_path": b"/", "query_string": query, "headers": [(b"host", b"t")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await anyio.sleep(leave_after if leave_after is not None else 3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_queued_clients_that_left_do_not_count_against_max_queue(folder: Path) -> None:
    app = FunctionApp("index.handler", source_dir=str(folder), max_instances=1, max_queue=2)
    await app.startup()
    results: dict[str, list[Any]] = {}

    async def run(name: str, query: bytes, leave_after: float | None = None) -> None:
        results[name] = await _asgi_get(app, query, leave_after)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(run, "busy", b"do=sleep&s=0.8")
            await anyio.sleep(0.1)
            group.start_soon(run, "left1", b"", 0.1)
            group.start_soon(run, "left2", b"", 0.1)
            await anyio.sleep(0.3)  # both have disconnected while queued
            group.start_soon(run, "third", b"")
            group.start_soon(run, "fourth", b"")
            await anyio.sleep(0.05)
            group.start_soon(run, "fifth", b"")  # the queue is full again: two connected clients wait
    finally:
        await app.shutdown()
    assert results["left1"] == results["left2"] == []  # nothing is written to a client that left
    assert results["third"][0]["status"] == results["fourth"][0]["status"] == 200
    assert results["fifth"][0]["status"] == 429


async def test_instances_above_min_stop_after_idle_timeout(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="sf_asgi")
    app = FunctionApp("index.handler", source_dir=str(folder), max_instances=3, idle_timeout=0.3)
    await app.startup()
    async with client(app) as http:
        await gather(http, ["/?do=sleep&s=0.3"] * 3)
        pool = app._pool
        assert pool is not None and len(pool.instances) == 3
        with anyio.fail_after(5):
            while len(pool.instances) > 1:
                await anyio.sleep(0.05)
        assert (await http.get("/")).status_code == 200
    assert caplog.text.count("without work (SF_IDLE_TIMEOUT)") == 2


@BACKENDS
@pytest.mark.parametrize(
    ("entry", "query"),
    [
        ("index.handler", "do=loop"),  # a sync handler that never returns
        ("index.ahandler", "do=block&s=5"),  # an async handler that blocks its loop
        ("index.ahandler", "do=swallow&s=5"),  # one that swallows the cancellation
    ],
)
async def test_the_deadline_kills_the_instance_and_the_next_request_is_served(
    folder: Path, entry: str, query: str, anyio_backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started(folder, entry, timeout=0.5, max_instances=1) as http:
        first_pid = pid(await http.get("/"))
        start = time.monotonic()
        stuck = await http.get(f"/?{query}")
        elapsed = time.monotonic() - start
        after = await http.get("/")
    assert stuck.status_code == 504
    assert stuck.json() == {"errorMessage": "Function timed out after 0.5 s (SF_TIMEOUT)", "errorType": "Timeout"}
    assert 0.5 <= elapsed < 0.8  # at the deadline, not when the code would have ended
    assert after.status_code == 200 and pid(after) != first_pid
    out = capsys.readouterr().out
    stuck_id = re.findall(r"START RequestID: (\S+)", out)[1]
    # The front writes END and REPORT for the killed one, billing the timeout (SPEC §6).
    assert f"END RequestID: {stuck_id}" in out
    assert re.search(rf"REPORT RequestID: {stuck_id} Duration: 500\.000 ms Billed Duration: 500 ms", out)


@BACKENDS
@pytest.mark.parametrize(
    ("query", "how"),
    [
        ("do=exit&code=3", "exited with code 3"),
        ("do=segv", "was killed by SIGSEGV (11)"),
        ("do=kill", "was killed by SIGKILL (9)"),
        ("do=closerange", "exited with code"),  # it closed its own pipes to the front
    ],
)
async def test_a_crash_fails_only_its_invocation(folder: Path, query: str, how: str, anyio_backend: str) -> None:
    async with started(folder, max_instances=2) as http:
        crashed, other = await gather(http, [f"/?{query}", "/?do=sleep&s=0.3"])
        after = await http.get("/")
    assert crashed.status_code == 502
    assert crashed.json()["errorType"] == "InstanceCrashed"
    assert how in crashed.json()["errorMessage"]
    assert other.status_code == after.status_code == 200


async def test_an_idle_instance_that_dies_is_replaced_without_a_failed_request(folder: Path) -> None:
    async with started(folder, max_instances=1) as http:
        first = pid(await http.get("/"))
        os.kill(first, signal.SIGKILL)
        await anyio.sleep(0.3)
        again = await http.get("/")
    assert again.status_code == 200 and pid(again) != first


@BACKENDS
async def test_memory_over_the_limit_kills_the_instance(
    folder: Path, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with started(folder, memory_limit_mb=128) as http:
        over = await http.get("/?do=mem&mb=600")
        after = await http.get("/")
    assert over.status_code == 502
    body = over.json()
    assert body["errorType"] == "MemoryLimitExceeded"
    assert "SF_MEMORY_LIMIT_MB" in body["errorMessage"]
    used = int(re.search(r"used (\d+) MB", body["errorMessage"]).group(1))  # type: ignore[union-attr]
    assert 128 < used < 600  # stopped on the way, not after the whole allocation
    assert after.status_code == 200


async def test_memory_over_the_limit_between_two_looks_is_caught_by_the_report(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pool, "_TICK", 30.0)  # the watchdog does not look during the invocation
    async with started(folder, memory_limit_mb=128) as http:
        over = await http.get("/?do=mem&mb=200")
        after = await http.get("/")
    assert over.status_code == 502 and over.json()["errorType"] == "MemoryLimitExceeded"
    assert after.status_code == 200


async def test_max_memory_used_is_the_instances_own_peak(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with started(folder, memory_limit_mb=512, max_instances=2, min_instances=2) as http:
        await http.get("/?do=mem&mb=100")
        await gather(http, ["/?do=sleep&s=0.3", "/?do=sleep&s=0.3"])  # one of them runs on the other instance
    out = capsys.readouterr().out
    used = [int(m) for m in re.findall(r"Max Memory Used: (\d+) MB", out)]
    assert len(used) == 3, out
    assert used[0] >= 100, out
    assert min(used[1:]) < 60, out


async def test_the_cold_start_of_a_new_instance_counts_in_the_deadline(
    write_function: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_function(ATTACK, **{".env": "IMPORT_SLEEP=0.6\n"})
    app = FunctionApp("index.handler", source_dir=str(folder), env_file=str(folder / ".env"), timeout=0.3)
    async with client(app) as http:  # no lifespan: the request starts the instance
        start = time.monotonic()
        response = await http.get("/")
        elapsed = time.monotonic() - start
        await anyio.sleep(0.2)  # the killed instance's exit
    assert response.status_code == 504
    assert elapsed < 0.55
    # Killed in its cold start, the invocation still has its system lines, billed at the timeout (helper's find).
    out = capsys.readouterr().out
    request_id = re.search(r"^START RequestID: (\S+) Version: \$latest$", out, re.M)
    assert request_id, out
    report = re.search(rf"^REPORT RequestID: {request_id.group(1)} Duration: (\d+\.\d+) ms", out, re.M)
    assert report and 290 <= float(report.group(1)) <= 400, out
    assert f"END RequestID: {request_id.group(1)}" in out


async def test_a_cold_start_over_the_timeout_fails_the_startup(write_function: Callable[..., Path]) -> None:
    folder = write_function(ATTACK, **{".env": "IMPORT_SLEEP=5\n"})
    app = FunctionApp("index.handler", source_dir=str(folder), env_file=str(folder / ".env"), timeout=0.3)
    with anyio.fail_after(3), pytest.raises(LoadError, match="cold start took longer than the timeout"):
        await app.startup()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("def handler(e, c)\n    pass\n", "SyntaxError"),
        ("import no_such_module_here\n", "No module named 'no_such_module_here'"),
        ("import sys\nsys.exit(3)\n", "SystemExit"),
    ],
)
async def test_an_import_that_fails_fails_the_startup_with_its_report(
    write_function: Callable[..., Path], code: str, message: str
) -> None:
    app = FunctionApp("index.handler", source_dir=str(write_function(code)))
    with anyio.fail_after(5), pytest.raises(LoadError, match=message):
        await app.startup()
    async with client(app) as http:  # and each request reports it, while it lasts (SPEC §5)
        response = await http.get("/")
    assert response.status_code == 502 and response.headers["x-function-error"] == "true"


@BACKENDS
async def test_concurrency_overlaps_async_invocations_on_one_loop(folder: Path, anyio_backend: str) -> None:
    async with started(folder, "index.ahandler", concurrency=4, max_instances=1) as http:
        start = time.monotonic()
        responses = await gather(http, ["/?do=sameloop&s=0.4"] * 4)
        elapsed = time.monotonic() - start
    assert elapsed < 0.9  # overlapping, not 1.6 s
    assert [r.json() for r in responses] == [False, True, True, True]  # one loop for the instance's life


async def test_without_concurrency_each_invocation_gets_a_fresh_loop(folder: Path) -> None:
    async with started(folder, "index.ahandler") as http:
        answers = [(await http.get("/?do=sameloop")).json() for _ in range(3)]
    assert answers == [False, False, False]  # asyncio.run per invocation, as the platform's runtime


async def test_the_instance_runs_in_its_folder_with_its_own_environment(
    write_function: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_function(ATTACK, **{"fn.env": "FN_GREETING=hello\n"})
    monkeypatch.setenv("SF_SOMETHING", "adapter setting")
    app = FunctionApp("index.handler", source_dir=str(folder), env_file=str(folder / "fn.env"))
    async with client(app) as http:
        env = (await http.get("/?do=env")).json()
        where = (await http.get("/?do=where")).json()
    assert env == {"FN_GREETING": "hello"}  # the function's own variables, none of sf_asgi's
    assert where == {"cwd": str(folder), "path0": str(folder), "stdin": ""}


async def test_output_reaches_stdout_in_whole_lines(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with started(folder, max_instances=2, min_instances=2) as http:
        await gather(http, ["/?do=print&tag=A&n=300&width=3000", "/?do=print&tag=B&n=300&width=3000"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("A-", "B-"))]
    assert len(lines) == 600
    assert all(re.fullmatch(r"[AB]-\d+-x{3000}", line) for line in lines)
    for tag in "AB":  # in order within an invocation
        assert [int(line.split("-")[1]) for line in lines if line[0] == tag] == list(range(300))


@pytest.mark.parametrize("query", ["do=garbage", "do=close"])
async def test_an_instance_that_garbles_or_closes_its_stdout_does_not_hurt_the_server(
    folder: Path, query: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started(folder, max_instances=1) as http:
        bad = await http.get(f"/?{query}")
        after = await http.get("/")
    assert bad.status_code == after.status_code == 200
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert out.out.count("REPORT RequestID") == 2


@BACKENDS
async def test_thread_isolation_on_trio_refuses_naming_process(anyio_backend: str) -> None:
    app = FunctionApp("index.handler", isolation="thread")
    if anyio_backend == "trio":
        with pytest.raises(ConfigError, match="SF_ISOLATION=process"):
            await app.startup()
    else:
        with pytest.raises(Exception, match="No index.py"):
            await app.startup()


def test_a_callable_cannot_run_in_a_process() -> None:
    with pytest.raises(ConfigError, match="entry point"):
        FunctionApp(lambda e, c: None, isolation="process")


async def test_a_new_instance_does_not_report_the_servers_peak_as_its_own(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Linux carries ru_maxrss over fork and exec: a big server must not make every instance look big.
    ballast = b"\x01" * (300 * 1024 * 1024)
    async with started(folder, memory_limit_mb=128) as http:
        response = await http.get("/")
    del ballast
    assert response.status_code == 200  # not MemoryLimitExceeded
    used = [int(m) for m in re.findall(r"Max Memory Used: (\d+) MB", capsys.readouterr().out)]
    assert used and used[0] < 100


def _instance_processes() -> list[int]:
    """Live instance processes started by this test process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                command = file.read()
        except OSError:
            continue
        if fields[0] != b"Z" and int(fields[1]) == os.getpid() and b"sf_asgi._runtime" in command:
            found.append(int(entry))
    return found


@BACKENDS
async def test_timeout_zero_means_no_timeout(folder: Path, anyio_backend: str) -> None:
    async with started(folder, timeout=0) as http:
        response = await http.get("/?do=sleep&s=0.2")
    assert response.status_code == 200


async def test_a_deadline_during_the_spawn_leaks_no_instance(folder: Path) -> None:
    async with started(folder, timeout=0.01, min_instances=0, max_instances=3) as http:
        for _ in range(5):
            answers = await gather(http, ["/?do=sleep&s=0"] * 3)
            assert {r.status_code for r in answers} <= {200, 504}
        with anyio.fail_after(5):
            while len(_instance_processes()) > 3:
                await anyio.sleep(0.05)
    with anyio.fail_after(5):
        while _instance_processes():
            await anyio.sleep(0.05)


async def test_a_crash_is_reported_at_once_even_if_the_handler_left_a_process(folder: Path) -> None:
    async with started(folder, timeout=5) as http:
        start = time.monotonic()
        crashed = await http.get("/?do=orphan")
        elapsed = time.monotonic() - start
        assert (await http.get("/")).status_code == 200
    assert crashed.status_code == 502 and "exited with code 3" in crashed.json()["errorMessage"]
    assert elapsed < 1.5  # not the timeout, though the left-over process holds the output pipe


async def test_the_process_a_handler_left_goes_with_its_instance(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started(folder, timeout=5) as http:
        await http.get("/?do=orphan")
        child = int(re.search(r"child (\d+)", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
        with anyio.fail_after(3):
            while alive(child):
                await anyio.sleep(0.05)


async def test_a_line_without_newline_ends_before_its_end_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started(folder) as http:
        await http.get("/?do=partial&text=first")
        await http.get("/?do=partial&text=second")
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("REPORT")]
    first, second = lines.index("first"), lines.index("second")
    assert lines[first + 1].startswith("END RequestID") and lines[second + 1].startswith("END RequestID")


async def test_a_crash_gets_its_end_and_report(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with started(folder) as http:
        await http.get("/?do=exit&code=1")
    out = capsys.readouterr().out
    request_id = re.search(r"START RequestID: (\S+)", out).group(1)  # type: ignore[union-attr]
    assert f"END RequestID: {request_id}" in out and f"REPORT RequestID: {request_id}" in out


async def test_after_a_crash_the_next_request_takes_the_replacement(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="sf_asgi")
    async with started(folder) as http:
        await http.get("/?do=exit&code=1")
        assert (await http.get("/")).status_code == 200
    assert caplog.text.count(") started in") == 2  # the first instance and its replacement, no third


async def test_closed_pipes_with_concurrency_give_a_502_at_once(folder: Path) -> None:
    async with started(folder, timeout=5, concurrency=4) as http:
        start = time.monotonic()
        crashed = await http.get("/?do=closerange")
        elapsed = time.monotonic() - start
    assert crashed.status_code == 502 and elapsed < 1.5


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
        ("import os\nos._exit(0)\n", "failed during its cold start"),
    ],
)
async def test_an_import_that_ends_the_instance_is_named(
    write_function: Callable[..., Path], code: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = FunctionApp("index.handler", source_dir=str(write_function(code)), timeout=5)
    with anyio.fail_after(5), pytest.raises(LoadError, match=message):
        await app.startup()
    assert "/sf_asgi/" not in capsys.readouterr().out


SIGNALLED_AT_IMPORT = """
import os, signal, sys
marker = os.path.join(os.path.dirname(__file__), "signalled")
if {always} or not os.path.exists(marker):
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIG{name})  # as a group signal that came before the instance's setsid

def handler(event, context):
    return {{"body": "served"}}
"""


@pytest.mark.parametrize("name", ["TERM", "HUP"])  # SIGINT is ignored by instances already
async def test_a_group_signal_during_the_spawn_gets_one_more_instance(
    write_function: Callable[..., Path], name: str
) -> None:
    """Found by running the README's gunicorn block: its killpg raced an instance's setsid; the worker exited 3."""
    folder = write_function(SIGNALLED_AT_IMPORT.format(always=False, name=name))
    async with started(folder) as http:
        assert (await http.get("/")).text == "served"


async def test_an_instance_that_always_dies_of_a_signal_still_fails_the_startup(
    write_function: Callable[..., Path],
) -> None:
    folder = write_function(SIGNALLED_AT_IMPORT.format(always=True, name="TERM"))
    app = FunctionApp("index.handler", source_dir=str(folder))
    with anyio.fail_after(10), pytest.raises(LoadError, match="SIGTERM"):
        await app.startup()
    await app.shutdown()
