"""The function instance: loading, one invocation at a time, timeouts (SPEC §1, §6).

All of sf_asgi's concurrency lives here. Sync handlers run on the instance's own worker
thread(s), fed by a queue. The thread is what keeps invocations apart and in arrival
order, so once the handler is loaded requests go straight onto its queue: it runs them
back to back while the event loop reads the next ones, instead of waiting for the loop
between calls. The module is imported on that same thread, so thread-bound objects made
at import time (a sqlite3 connection, say) work in the handler. Async handlers are
awaited on the loop, one at a time, behind a cheap FIFO gate; the cold start goes through
the gate too.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ._config import Settings, read_env_file
from ._context import Context, make_context
from ._loader import LoadError, load_handler
from ._logging import billed_ms, logger, max_memory_mb, system_line
from ._types import Handler


class QueueFull(Exception):
    """More requests are waiting for the instance than `max_queue` allows."""


class InvocationTimeout(Exception):
    """The invocation ran past the function's timeout."""


class UserCodeError(Exception):
    """The handler raised, or its module could not be imported; `error` is what to report."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _Gate:
    """Slots of an instance, handed out in arrival order; cheap when nobody waits."""

    __slots__ = ("_free", "_max_waiting", "_slots", "_waiters")

    def __init__(self, slots: int, max_waiting: int) -> None:
        self._slots = self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._max_waiting = max_waiting

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def idle(self) -> bool:
        return self._free == self._slots

    async def acquire(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        if self._max_waiting and len(self._waiters) >= self._max_waiting:
            raise QueueFull
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was already handed to us: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot straight to the next in line
                return
        self._free += 1


class _Hold:
    """Keeps a slot taken until the request *and* any thread job it started have let go."""

    __slots__ = ("_count", "_gate")

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate
        self._count = 1

    def add(self) -> None:
        self._count += 1

    def drop(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._gate.release()


class _Deadline:
    """An invocation the reaper watches: a task to cancel, or a thread job's future to fail."""

    __slots__ = ("expired", "job", "started", "task")

    def __init__(self, task: asyncio.Task[Any] | None = None, job: _Job | None = None) -> None:
        self.task = task
        self.job = job
        self.started: float | None = time.monotonic() if job is None else None
        self.expired = False


class _Reaper:
    """Enforces the timeout with one periodic check instead of a timer per invocation.

    A timer per invocation (asyncio.timeout) costs about as much as building the event.
    The check runs every timeout/20 (5 to 50 ms) while invocations are in flight, so the
    504 comes within one tick of the deadline; it stops by itself when nothing is in flight.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._tick = min(0.05, max(0.005, timeout / 20))
        self._watched: dict[int, _Deadline] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, deadline: _Deadline) -> None:
        self._watched[id(deadline)] = deadline
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unwatch(self, deadline: _Deadline) -> None:
        self._watched.pop(id(deadline), None)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            if not self._watched:
                self._task = None
                return
            now = time.monotonic()
            for deadline in list(self._watched.values()):
                started = deadline.started if deadline.job is None else deadline.job.started
                if deadline.expired or started is None or now - started < self.timeout:
                    continue
                deadline.expired = True
                if deadline.task is not None:
                    deadline.task.cancel()
                elif deadline.job is not None and not deadline.job.future.done():
                    deadline.job.future.set_exception(InvocationTimeout(self.timeout))


class _Job:
    __slots__ = ("args", "context", "fn", "future", "hold", "loop", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.context = contextvars.copy_context()  # the request id follows the job into the thread
        self.fn = fn
        self.args = args
        self.hold: _Hold | None = None
        self.started: float | None = None  # time.monotonic(), set by the thread that runs it


class _Workers:
    """Long-lived daemon threads that run the instance's sync code in arrival order."""

    def __init__(self, count: int, name: str) -> None:
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.in_flight = 0  # submitted and not finished; only the event loop's thread touches it

    @property
    def waiting(self) -> int:
        """Jobs queued behind the ones the threads run (counted on the loop: exact, no race)."""
        return max(0, self.in_flight - self._count)

    def submit(self, fn: Callable[..., Any], *args: Any, hold: _Hold | None = None) -> _Job:
        job = _Job(asyncio.get_running_loop(), fn, args)
        if not self._threads:
            for i in range(self._count):
                thread = threading.Thread(target=self._main, name=f"{self._name}-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        if hold is not None:
            hold.add()
            job.hold = hold
        self.in_flight += 1
        self._jobs.put(job)
        return job

    def finish(self, job: _Job, result: Any, error: BaseException | None) -> None:
        """On the event loop, once a thread is done with the job."""
        self.in_flight -= 1
        future = job.future
        if not future.done():
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        if job.hold is not None:
            job.hold.drop()

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads = []

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.started = time.monotonic()
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.context.run(job.fn, *job.args)
            except BaseException as exc:  # SystemExit in a handler must not end the thread
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                job.loop.call_soon_threadsafe(self.finish, job, result, error)
            del job, result, error


def _call(handler: Handler, event: Any, context: Any) -> tuple[Any, str]:
    """One sync call as the platform's runtime makes it: (result, its JSON text)."""
    result = handler(event, context)
    if inspect.iscoroutine(result):  # a sync function that returned a coroutine: the runtime runs it
        result = asyncio.run(result)
    # The runtime serialises the result; failing to is an error in user code (SPEC §4).
    return result, json.dumps(result)


class Instance:
    def __init__(self, settings: Settings, handler: Handler | None = None) -> None:
        self.settings = settings
        self._handler = handler
        self._is_async = handler is not None and _is_async(handler)
        self._loading: asyncio.Future[Any] | None = None
        self._gate = _Gate(settings.concurrency, settings.max_queue)
        self._workers = _Workers(settings.concurrency, "sf_asgi-worker")
        self._issued_at = time.time()
        self._init_ms: float | None = None
        self._reaper = _Reaper(settings.timeout) if settings.timeout else None

    @property
    def loaded(self) -> bool:
        return self._handler is not None

    @property
    def waiting(self) -> int:
        return self._gate.waiting + self._workers.waiting

    def _load_sync(self) -> Handler:
        if self.settings.env_file:
            # The platform sets the version's environment before the code is imported.
            os.environ.update(read_env_file(self.settings.env_file))
        try:
            handler = load_handler(self.settings.handler, self.settings.source_dir)
        finally:
            sys.stdout.flush()  # what the module printed at import goes out now, not with the first REPORT
        self._is_async = _is_async(handler)
        self._handler = handler
        return handler

    async def load(self, hold: _Hold | None = None) -> None:
        """Import the handler's module (the cold start); LoadError if it cannot be."""
        if self._handler is not None:
            return
        # One import at a time; after a failure the next request tries again (SPEC §5).
        if self._loading is None or self._loading.done():
            started = time.perf_counter()
            self._loading = self._workers.submit(self._load_sync, hold=hold).future

            def loaded(future: asyncio.Future[Any]) -> None:
                # Read the outcome even when every waiter has timed out, so asyncio logs nothing.
                if not future.cancelled() and future.exception() is None:
                    self._init_ms = (time.perf_counter() - started) * 1000

            self._loading.add_done_callback(loaded)
        await asyncio.shield(self._loading)

    async def invoke(self, event: Any, request_id: str, context: Context | None = None) -> tuple[Any, str]:
        """Run one invocation: the handler's result and its JSON text.

        Raises QueueFull, InvocationTimeout, or UserCodeError. Logs the platform's
        START, END and REPORT lines.
        """
        handler = self._handler
        if handler is not None and not self._is_async and self._gate.idle:
            return await self._invoke_on_worker(handler, event, request_id, context)
        return await self._invoke_gated(event, request_id, context)

    # A loaded sync handler: straight onto the worker's queue.

    async def _invoke_on_worker(
        self, handler: Handler, event: Any, request_id: str, context: Context | None
    ) -> tuple[Any, str]:
        if self.settings.max_queue and self._workers.waiting >= self.settings.max_queue:
            raise QueueFull
        job = self._workers.submit(self._run_on_worker, handler, event, request_id, context, time.perf_counter())
        try:
            return await self._wait(job)  # type: ignore[no-any-return]
        except InvocationTimeout:
            self._log_stuck(request_id)
            raise
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # sys.exit() in a handler is a user error, not a server exit
            raise UserCodeError(exc) from None

    def _run_on_worker(
        self, handler: Handler, event: Any, request_id: str, context: Context | None, arrived: float
    ) -> tuple[Any, str]:
        # On the worker thread: the system lines go out in order with the handler's own output.
        started = time.perf_counter()
        log = logger.isEnabledFor(logging.INFO)
        if log:
            system_line(f"START RequestID: {request_id} Version: {self.settings.function_version}")
        try:
            if context is None:
                context = make_context(self.settings, request_id, time.time(), self._issued_at)
            return _call(handler, event, context)
        finally:
            if log:
                self._log_end(request_id, arrived, started)

    async def _wait(self, job: _Job) -> Any:
        """The job's outcome, or InvocationTimeout once it has run for the timeout (queued time not counted)."""
        if self._reaper is None:
            return await job.future
        deadline = _Deadline(job=job)
        self._reaper.watch(deadline)
        try:
            return await job.future
        finally:
            self._reaper.unwatch(deadline)

    # The cold start, and async handlers: one at a time through the gate.

    async def _invoke_gated(self, event: Any, request_id: str, context: Context | None) -> tuple[Any, str]:
        arrived = time.perf_counter()
        await self._gate.acquire()
        started = time.perf_counter()
        log = logger.isEnabledFor(logging.INFO)
        if log:
            system_line(f"START RequestID: {request_id} Version: {self.settings.function_version}")
        try:
            return await self._run_gated(event, request_id, context)
        finally:
            if log:
                self._log_end(request_id, arrived, started)

    async def _run_gated(self, event: Any, request_id: str, context: Context | None) -> tuple[Any, str]:
        hold = _Hold(self._gate)
        started = time.time()  # the deadline counts the cold start too (SPEC §6)
        deadline = None
        if self._reaper is not None:
            deadline = _Deadline(task=asyncio.current_task())
            self._reaper.watch(deadline)
        try:
            if self._handler is None:
                await self.load(hold)
            handler = self._handler
            assert handler is not None
            if context is None:
                context = make_context(self.settings, request_id, started, self._issued_at)
            if self._is_async:
                result = await handler(event, context)
                return result, json.dumps(result)  # the runtime's serialisation (SPEC §4)
            return await self._workers.submit(_call, handler, event, context, hold=hold).future  # type: ignore[no-any-return]
        except LoadError as exc:
            raise UserCodeError(exc.cause or exc) from None
        except asyncio.CancelledError:
            if deadline is None or not deadline.expired:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # our own cancellation: it ends here
            if not self._is_async or not self.loaded:
                self._log_stuck(request_id)
            raise InvocationTimeout(self.settings.timeout) from None
        except BaseException as exc:  # sys.exit() in a handler is a user error, not a server exit
            raise UserCodeError(exc) from None
        finally:
            if deadline is not None:
                self._reaper.unwatch(deadline)  # type: ignore[union-attr]
            hold.drop()

    def _log_stuck(self, request_id: str) -> None:
        logger.warning(
            "Invocation %s timed out after %gs; a sync handler cannot be stopped, so the instance stays busy "
            "until it returns",
            request_id,
            self.settings.timeout,
        )

    def _log_end(self, request_id: str, arrived: float, started: float) -> None:
        now = time.perf_counter()
        duration_ms = (now - arrived) * 1000
        system_line(f"END RequestID: {request_id}", hold=True)
        report = (
            f"REPORT RequestID: {request_id} Duration: {duration_ms:.3f} ms "
            f"Billed Duration: {billed_ms(duration_ms)} ms Memory Size: {self.settings.memory_limit_mb} MB "
            f"Max Memory Used: {max_memory_mb()} MB Queuing Duration: {(started - arrived) * 1000:.3f} ms"
        )
        init_ms, self._init_ms = self._init_ms, None
        if init_ms is not None:  # the cold start is reported once, with the first invocation
            report += f" Function Init Duration: {init_ms:.3f} ms"
        system_line(report)

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.close()
        self._workers.close()


def _is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__)
