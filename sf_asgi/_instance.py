"""The function instance: loading, one invocation at a time, timeouts (SPEC §1, §6).

All of sf_asgi's concurrency is decided here; its primitives are in `_concurrency.py`.
Sync handlers run on the instance's own worker thread(s), fed by a queue. The thread is
what keeps invocations apart and in arrival order, so once the handler is loaded
requests go straight onto its queue: it runs them back to back while the event loop
reads the next ones, instead of waiting for the loop between calls. The module is
imported on that same thread, so thread-bound objects made at import time (a sqlite3
connection, say) work in the handler. Async handlers are awaited on the loop, one at a
time, behind a cheap FIFO gate; the cold start goes through the gate too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any

from ._concurrency import Deadline, Gate, Hold, InvocationTimeout, QueueFull, Reaper, Workers, current_task
from ._config import Settings, read_env_file
from ._context import Context, make_context
from ._loader import LoadError, load_handler
from ._logging import billed_ms, flush_soon, logger, max_memory_mb, system_lines
from ._response import serialise
from ._types import Handler


class UserCodeError(Exception):
    """The handler raised, or its module could not be imported; `error` is what to report."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def _call(handler: Handler, event: Any, context: Any) -> tuple[Any, str | None]:
    """One sync call as the platform's runtime makes it: (result, its JSON text or None, see `serialise`).

    What the handler raises leaves as a UserCodeError: a GeneratorExit or SystemExit set on an
    asyncio future would otherwise be raised raw into the coroutine awaiting it (SPEC §5).
    """
    try:
        result = handler(event, context)
        if inspect.iscoroutine(result):  # a sync function that returned a coroutine: the runtime runs it
            result = asyncio.run(result)
        return result, serialise(result)
    except BaseException as exc:
        raise UserCodeError(exc) from None


class Instance:
    def __init__(self, settings: Settings, handler: Handler | None = None) -> None:
        self.settings = settings
        self._handler = handler
        self._is_async = handler is not None and _is_async(handler)
        self._loading: asyncio.Future[Any] | None = None
        self._gate = Gate(settings.concurrency, settings.max_queue)
        self._workers = Workers(settings.concurrency, "sf_asgi-worker")
        self._issued_at = time.time()
        self._init_ms: float | None = None
        self._reaper = Reaper(settings.timeout) if settings.timeout else None
        # One format operation per REPORT: its fields, in the platform's order.
        self._report = (
            "REPORT RequestID: %s Duration: %.3f ms Billed Duration: %d ms "
            f"Memory Size: {settings.memory_limit_mb} MB Max Memory Used: %d MB Queuing Duration: %.3f ms"
        )

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

    async def load(self, hold: Hold | None = None) -> None:
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

    def invoke(
        self, event: Any, request_id: str, context: Context | None = None
    ) -> Coroutine[Any, Any, tuple[Any, str | None]]:
        """Run one invocation (await it): the handler's result and its JSON text (None for a plain
        result: see `serialise`).

        Raises QueueFull, InvocationTimeout, or UserCodeError. Logs the platform's
        START, END and REPORT lines. A plain function that picks the coroutine to await, so
        the common case costs no extra coroutine.
        """
        handler = self._handler
        if handler is not None and not self._is_async and self._gate.idle:
            return self._invoke_on_worker(handler, event, request_id, context)
        return self._run(event, request_id, context, time.perf_counter())

    # A loaded sync handler: straight onto the worker's queue.

    async def _invoke_on_worker(
        self, handler: Handler, event: Any, request_id: str, context: Context | None
    ) -> tuple[Any, str | None]:
        if self.settings.max_queue and self._workers.waiting >= self.settings.max_queue:
            raise QueueFull
        job = self._workers.submit(self._run_on_worker, handler, event, request_id, context, time.perf_counter())
        deadline = None
        if self._reaper is not None:  # the timeout counts from when the thread takes the job, not while queued
            deadline = Deadline(job=job)
            self._reaper.watch(deadline)
        try:
            return await job.future  # type: ignore[no-any-return]
        except InvocationTimeout:
            self._log_stuck(request_id)
            raise
        except (asyncio.CancelledError, UserCodeError):
            raise
        except BaseException as exc:  # sys.exit() in a handler is a user error, not a server exit
            raise UserCodeError(exc) from None
        finally:
            if deadline is not None:
                self._reaper.unwatch(deadline)  # type: ignore[union-attr]

    def _run_on_worker(
        self, handler: Handler, event: Any, request_id: str, context: Context | None, arrived: float
    ) -> tuple[Any, str | None]:
        # On the worker thread: the system lines go out in order with the handler's own output.
        started = time.perf_counter()
        log = self._log_start(request_id)
        try:
            if context is None:
                context = make_context(self.settings, request_id, time.time(), self._issued_at)
            return _call(handler, event, context)
        finally:
            if log:
                # Flushed when no other invocation is queued behind this one: under load, one write for many.
                self._log_end(request_id, arrived, started, flush=self._workers.idle)

    # The cold start, async handlers, and sync ones queued behind either: one slot each.

    async def _run(
        self, event: Any, request_id: str, context: Context | None, arrived: float
    ) -> tuple[Any, str | None]:
        """One invocation on a slot of the gate, waited for in arrival order (QueueFull if too many wait)."""
        if not self._gate.try_take():
            await self._gate.wait()
        started = time.perf_counter()
        log = self._log_start(request_id)
        hold = Hold(self._gate)
        began = time.time()  # the deadline counts the cold start too (SPEC §6)
        deadline = None
        if self._reaper is not None:
            deadline = Deadline(task=current_task())
            self._reaper.watch(deadline)
        try:
            if self._handler is None:
                await self.load(hold)
            handler = self._handler
            assert handler is not None
            if context is None:
                context = make_context(self.settings, request_id, began, self._issued_at)
            if self._is_async:
                result = await handler(event, context)
                return result, serialise(result)
            return await self._workers.submit(_call, handler, event, context, hold=hold).future  # type: ignore[no-any-return]
        except LoadError as exc:
            raise UserCodeError(exc.cause or exc) from None
        except UserCodeError:
            raise
        except asyncio.CancelledError:
            if deadline is None or not deadline.expired:
                raise
            current_task().uncancel()  # type: ignore[union-attr]  # our own cancellation: it ends here
            if not self._is_async or not self.loaded:
                self._log_stuck(request_id)
            raise InvocationTimeout(self.settings.timeout) from None
        except BaseException as exc:  # sys.exit() in a handler is a user error, not a server exit
            raise UserCodeError(exc) from None
        finally:
            if deadline is not None:
                self._reaper.unwatch(deadline)  # type: ignore[union-attr]
            hold.drop()
            if log:
                self._log_end(request_id, arrived, started, flush=False)
                flush_soon()

    def _log_stuck(self, request_id: str) -> None:
        logger.warning(
            "Invocation %s timed out after %gs; a sync handler cannot be stopped, so the instance stays busy "
            "until it returns",
            request_id,
            self.settings.timeout,
        )

    def _log_start(self, request_id: str) -> bool:
        """START, when the system lines are on; whether they are.

        Not flushed: it reaches the stream's buffer before anything the handler prints, and
        goes out with the REPORT's flush (a terminal, line-buffered, shows it at once).
        """
        if not logger.isEnabledFor(logging.INFO):
            return False
        system_lines(f"START RequestID: {request_id} Version: {self.settings.function_version}", flush=False)
        return True

    def _log_end(self, request_id: str, arrived: float, started: float, flush: bool) -> None:
        now = time.perf_counter()
        duration_ms = (now - arrived) * 1000
        report = self._report % (
            request_id,
            duration_ms,
            billed_ms(duration_ms),
            max_memory_mb(now),
            (started - arrived) * 1000,
        )
        init_ms, self._init_ms = self._init_ms, None
        if init_ms is not None:  # the cold start is reported once, with the first invocation
            report += f" Function Init Duration: {init_ms:.3f} ms"
        system_lines(f"END RequestID: {request_id}", report, flush=flush)

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.close()
        self._workers.close()


def _is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__)
