"""The instance: how handlers run, one invocation at a time, queueing and timeouts (SPEC §6)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sf_asgi import FunctionApp

from .conftest import client

pytestmark = pytest.mark.anyio


async def test_sync_handler_runs_off_the_event_loop() -> None:
    seen: dict[str, Any] = {}

    def handler(event: Any, context: Any) -> dict[str, Any]:
        seen["thread"] = threading.current_thread().name
        try:
            asyncio.get_running_loop()
            seen["loop"] = True
        except RuntimeError:
            seen["loop"] = False
        return {"body": "ok"}

    async with client(FunctionApp(handler)) as http:
        assert (await http.get("/")).text == "ok"
    assert seen == {"thread": "sf_asgi-worker-0", "loop": False}


async def test_async_handler_is_awaited_on_the_servers_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def handler(event: Any, context: Any) -> dict[str, Any]:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return {"body": "async ok"}

    async with client(FunctionApp(handler)) as http:
        assert (await http.get("/")).text == "async ok"
    assert loops == [asyncio.get_running_loop()]


async def test_callable_object_with_async_call() -> None:
    class Handler:
        async def __call__(self, event: Any, context: Any) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"body": "object"}

    async with client(FunctionApp(Handler())) as http:
        assert (await http.get("/")).text == "object"


async def test_sync_handler_may_call_asyncio_run() -> None:
    async def work() -> str:
        await asyncio.sleep(0.001)
        return "from asyncio.run"

    def handler(event: Any, context: Any) -> dict[str, Any]:
        return {"body": asyncio.run(work())}

    async with client(FunctionApp(handler)) as http:
        assert (await http.get("/")).text == "from asyncio.run"
        assert (await http.get("/")).text == "from asyncio.run"


async def test_module_globals_persist_and_the_module_is_imported_once(
    write_function: Callable[..., Path],
) -> None:
    folder = write_function(
        """
        import threading
        imports = 0
        imports += 1
        calls = 0
        import_thread = threading.current_thread().name

        def handler(event, context):
            global calls
            calls += 1
            same = threading.current_thread().name == import_thread
            return {"body": f"{imports} {calls} {same}"}
        """
    )
    app = FunctionApp("index.handler", source_dir=str(folder))
    async with client(app) as http:
        bodies = [(await http.get("/")).text for _ in range(3)]
    # One import; the module was imported on the thread that runs the handler.
    assert bodies == ["1 1 True", "1 2 True", "1 3 True"]


def _overlap_handlers() -> tuple[Callable[..., Any], Callable[..., Any], dict[str, int]]:
    state = {"active": 0, "peak": 0, "calls": 0}
    lock = threading.Lock()

    def enter() -> None:
        with lock:
            state["active"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["active"])

    def leave() -> None:
        with lock:
            state["active"] -= 1

    def sync_handler(event: Any, context: Any) -> dict[str, Any]:
        enter()
        time.sleep(0.005)
        leave()
        return {"body": "done"}

    async def async_handler(event: Any, context: Any) -> dict[str, Any]:
        enter()
        await asyncio.sleep(0.005)
        leave()
        return {"body": "done"}

    return sync_handler, async_handler, state


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_invocations_never_overlap_under_20_parallel_clients(kind: str) -> None:
    sync_handler, async_handler, state = _overlap_handlers()
    app = FunctionApp(sync_handler if kind == "sync" else async_handler)
    async with client(app) as http:
        responses = await asyncio.gather(*(http.get("/") for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert state["calls"] == 20
    assert state["peak"] == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_concurrency_lets_n_invocations_overlap(kind: str) -> None:
    sync_handler, async_handler, state = _overlap_handlers()
    app = FunctionApp(sync_handler if kind == "sync" else async_handler, concurrency=3)
    async with client(app) as http:
        for _ in range(5):  # bounded retries: overlap needs the three to meet
            await asyncio.gather(*(http.get("/") for _ in range(9)))
            if state["peak"] == 3:
                break
    assert state["peak"] == 3


async def test_requests_wait_their_turn_in_arrival_order() -> None:
    order: list[int] = []
    gate = asyncio.Event()

    async def handler(event: Any, context: Any) -> dict[str, Any]:
        n = int(event["queryStringParameters"]["n"])
        if n == 0:
            await gate.wait()
        order.append(n)
        return {"body": str(n)}

    async with client(FunctionApp(handler)) as http:
        tasks = []
        for n in range(6):
            tasks.append(asyncio.create_task(http.get("/", params={"n": n})))
            await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]


async def test_max_queue_answers_429_at_exactly_n_waiting() -> None:
    release = threading.Event()

    def handler(event: Any, context: Any) -> dict[str, Any]:
        release.wait(5)
        return {"body": "served"}

    app = FunctionApp(handler, max_queue=2)
    async with client(app) as http:
        running = [asyncio.create_task(http.get("/")) for _ in range(3)]  # 1 running + 2 waiting
        await asyncio.sleep(0.1)
        refused = await http.get("/")
        release.set()
        served = await asyncio.gather(*running)
        after = await http.get("/")
    assert refused.status_code == 429
    assert refused.json()["errorType"] == "TooManyRequests"
    assert "2 requests are already waiting" in refused.json()["errorMessage"]
    assert [r.text for r in served] == ["served"] * 3
    assert after.status_code == 200


async def test_async_timeout_cancels_the_handler_and_the_instance_serves_on() -> None:
    cancelled = asyncio.Event()

    async def handler(event: Any, context: Any) -> dict[str, Any]:
        if event["queryStringParameters"].get("slow"):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return {"body": "fast"}

    async with client(FunctionApp(handler, timeout=0.3)) as http:
        start = time.monotonic()
        response = await http.get("/", params={"slow": 1})
        elapsed = time.monotonic() - start
        after = await http.get("/")
    assert response.status_code == 504
    assert response.json() == {"errorMessage": "Function timed out after 0.3 s (SF_TIMEOUT)", "errorType": "Timeout"}
    assert 0.3 <= elapsed < 1.3
    assert cancelled.is_set()
    assert after.text == "fast"


async def test_sync_timeout_keeps_the_instance_busy_until_the_handler_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(event: Any, context: Any) -> dict[str, Any]:
        if event["queryStringParameters"].get("slow"):
            time.sleep(1.0)
        return {"body": "fast"}

    async with client(FunctionApp(handler, timeout=0.3)) as http:
        start = time.monotonic()
        response = await http.get("/", params={"slow": 1})
        timed_out = time.monotonic() - start
        after = await http.get("/")
        served = time.monotonic() - start
    assert response.status_code == 504
    assert 0.3 <= timed_out < 0.9
    assert after.text == "fast"
    assert served >= 0.95  # it waited for the stuck thread, as the platform's instance would be busy
    assert "instance stays busy" in caplog.text


async def test_timeout_zero_means_none() -> None:
    async def handler(event: Any, context: Any) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return {"body": str(context.get_remaining_time_in_millis() > 3_000_000)}

    async with client(FunctionApp(handler, timeout=0)) as http:
        assert (await http.get("/")).text == "True"


async def test_deadline_counts_the_cold_start(write_function: Callable[..., Path]) -> None:
    folder = write_function(
        """
        import time
        time.sleep(0.4)
        def handler(event, context):
            return {"body": str(context.get_remaining_time_in_millis())}
        """
    )
    app = FunctionApp("index.handler", source_dir=str(folder), timeout=2)
    async with client(app) as http:
        first = int((await http.get("/")).text)
        second = int((await http.get("/")).text)
    assert first <= 1650
    assert second > 1800


async def test_cold_start_over_the_timeout_gives_504(write_function: Callable[..., Path]) -> None:
    folder = write_function(
        """
        import time
        time.sleep(0.5)
        def handler(event, context):
            return {"body": "warm"}
        """
    )
    app = FunctionApp("index.handler", source_dir=str(folder), timeout=0.2, isolation="thread")
    async with client(app) as http:
        first = await http.get("/")
        second = await http.get("/")
    assert first.status_code == 504
    assert second.text == "warm"  # the import went on in the server's process


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        ("raise SystemExit(2)", "SystemExit", "2"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt", ""),
        ("raise RuntimeError('boom')", "RuntimeError", "boom"),
        ("raise TimeoutError('socket')", "TimeoutError", "socket"),
        ("return 1 / 0", "ZeroDivisionError", "division by zero"),
    ],
)
@pytest.mark.parametrize("kind", ["def", "async def"])
async def test_any_exception_is_a_502_and_the_server_serves_on(
    write_function: Callable[..., Path], body: str, error_type: str, message: str, kind: str
) -> None:
    folder = write_function(
        f"""
        {kind} handler(event, context):
            if event["queryStringParameters"].get("fail"):
                {body}
            return {{"body": "fine"}}
        """
    )
    async with client(FunctionApp("index.handler", source_dir=str(folder))) as http:
        failed = await http.get("/", params={"fail": 1})
        fine = await http.get("/")
    assert failed.status_code == 502
    assert failed.headers["x-function-error"] == "true"
    assert failed.json()["errorType"] == error_type
    assert failed.json()["errorMessage"] == message
    assert fine.text == "fine"


async def test_import_error_is_reported_on_each_request_until_fixed(write_function: Callable[..., Path]) -> None:
    folder = write_function("x = 1 / 0\ndef handler(event, context):\n    return {'body': 'fixed'}\n")
    async with client(FunctionApp("index.handler", source_dir=str(folder))) as http:
        first = await http.get("/")
        second = await http.get("/")
        (folder / "index.py").write_text("def handler(event, context):\n    return {'body': 'fixed'}\n")
        third = await http.get("/")
    for response in (first, second):
        assert response.status_code == 502
        assert response.headers["x-function-error"] == "true"
        body = response.json()
        assert body["errorType"] == "ZeroDivisionError"
        assert any("x = 1 / 0" in line for line in body["stackTrace"])
    assert third.text == "fixed"


async def test_missing_handler_at_request_time(write_function: Callable[..., Path]) -> None:
    folder = write_function("def other(event, context): pass\n")
    async with client(FunctionApp("index.handler", source_dir=str(folder))) as http:
        response = await http.get("/")
    assert response.status_code == 502
    assert response.json()["errorType"] == "LoadError"
    assert "callables defined there: other" in response.json()["errorMessage"]


async def test_sync_function_returning_a_coroutine_is_run_as_the_runtime_does() -> None:
    async def later() -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"body": "ran"}

    def handler(event: Any, context: Any) -> Any:
        return later()

    async with client(FunctionApp(handler)) as http:
        assert (await http.get("/")).text == "ran"


async def test_time_spent_queued_does_not_count_against_the_timeout() -> None:
    def handler(event: Any, context: Any) -> dict[str, Any]:
        time.sleep(0.25)
        return {"body": "done"}

    async with client(FunctionApp(handler, timeout=0.4)) as http:
        responses = await asyncio.gather(*(http.get("/") for _ in range(3)))  # the last waits 0.5 s first
    assert [r.status_code for r in responses] == [200, 200, 200]


def test_running_loop_is_the_loop_that_runs_now() -> None:
    from sf_asgi._concurrency import current_task, running_loop

    async def both() -> tuple[Any, Any, bool]:
        return running_loop(), asyncio.get_running_loop(), current_task() is asyncio.current_task()

    seen = []
    for _ in range(2):  # a loop after another one on the same thread
        remembered, real, same_task = asyncio.run(both())
        assert remembered is real and same_task
        seen.append(real)
    assert seen[0] is not seen[1]
    in_thread: list[Any] = []
    worker = threading.Thread(target=lambda: in_thread.append(asyncio.run(both())))
    worker.start()
    worker.join()
    assert in_thread[0][0] is in_thread[0][1]
