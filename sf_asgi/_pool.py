"""The pool of process instances: scale out, queue, kill at the deadline and the memory limit (SPEC §6).

Like the platform, the pool starts `min_instances` at startup and always keeps them; a
request that finds every instance busy starts another, up to `max_instances`, or waits
in one FIFO queue (`max_queue` caps it with the 429, counting only clients still
connected); an extra instance stops after `idle_timeout` seconds without work. One
watchdog task enforces the deadlines and the memory limit of every invocation in
flight: it kills the instance (SIGKILL, never waiting for it), the client gets its
answer at once, and a new instance replaces it when one is needed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable

import anyio

from . import _wire
from ._background import Event, Task, event_class, spawn
from ._concurrency import QueueFull
from ._config import Settings
from ._loader import LoadError, check_source_dir
from ._output import Output
from ._process import Call, ProcessInstance, describe_exit, rss_mb
from ._response import HTTPResponse, platform_error

logger = logging.getLogger("sf_asgi")

_TICK = 0.01  # seconds between the watchdog's looks at busy instances: the 504's and the memory check's delay
_IDLE_TICK = 0.5  # with nothing busy: only idle instances to stop and edits to notice


class ClientGone(Exception):
    """The client left while its request waited for an instance."""


class Waiter:
    __slots__ = ("event", "gone", "instance", "new")

    def __init__(self, event: Callable[[], Event]) -> None:
        self.event = event()
        self.gone = False
        self.instance: ProcessInstance | None = None
        self.new = False

    def leave(self) -> None:
        """Its client disconnected: it no longer counts against `max_queue`."""
        if not self.event.is_set():
            self.gone = True
            self.event.set()


class Pool:
    def __init__(self, settings: Settings, output: Output) -> None:
        self.settings = settings
        self.output = output
        self._instances: list[ProcessInstance] = []
        self._waiters: deque[Waiter] = deque()
        self._numbers = itertools.count(1)
        self._closing = False
        self._watchdog: Task | None = None
        self._event: Callable[[], Event] | None = None  # the running library's Event class, once known
        self._wake: Event | None = None
        self._resting = False  # the watchdog sleeps its long tick: a new invocation wakes it
        self._max_instances = max(settings.max_instances, settings.min_instances)
        self._version = settings.function_version

    def new_event(self) -> Event:
        if self._event is None:
            self._event = event_class()
        return self._event()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.gone)

    @property
    def instances(self) -> list[ProcessInstance]:
        return [instance for instance in self._instances if not instance.dead]

    async def start(self) -> None:
        """Start `min_instances` and wait for their cold starts; LoadError if the code cannot be imported."""
        check_source_dir(self.settings.handler, self.settings.source_dir)
        self._event = None  # this loop's
        self._watchdog = spawn(self._watch, name="sf_asgi watchdog")
        started = [self._new_instance() for _ in range(self.settings.min_instances)]
        for index in range(len(started)):
            instance = started[index]
            call = await self._cold_start(instance)
            if _signalled_in_spawn(instance):
                # A signal to the server's process group (Ctrl+C, a supervisor's SIGTERM) reached the
                # child between fork and setsid: not the code's fault. One more spawn, then the
                # server's own handling of that signal goes on.
                logger.info(
                    "Instance %d was stopped by a signal to the server's group; starting another", instance.number
                )
                instance = started[index] = self._new_instance()
                call = await self._cold_start(instance)
            if instance.load_error is not None or not instance.loaded:
                error = instance.load_error.error if instance.load_error is not None else None
                report = instance.load_report or (error or {}).get("errorMessage") or "the instance did not start"
                if call.failure is not None and call.failure.error is not None:
                    failure = call.failure.error
                    if failure["errorType"] == "Timeout":
                        report = f"the cold start took longer than the timeout: {failure['errorMessage']}"
                    else:
                        report = f"the instance failed during its cold start: {failure['errorMessage']}"
                await self._startup_failed(started)
                raise LoadError(report)
        self._dispatch()

    async def _cold_start(self, instance: ProcessInstance) -> Call:
        """Wait for an instance started with the pool; a cold start may take the timeout, no more."""
        call = Call("", time.monotonic(), self.settings.timeout, self.new_event)
        instance.calls[0] = call
        await instance.ready.wait()
        instance.calls.pop(0, None)
        instance.reserved -= 1
        instance.idle_since = time.monotonic()
        return call

    async def _startup_failed(self, started: list[ProcessInstance]) -> None:
        """The pool stays usable (requests retry the import, SPEC §5), but nothing of it outlives a server
        that now exits: the instances are gone and the watchdog stops until a request needs it again."""
        for instance in started:
            if not instance.dead:
                instance.kill("startup failed", _shutdown_error)
        with anyio.move_on_after(2):
            while any(not instance.dead for instance in started):
                await anyio.sleep(0.01)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def start_lazily(self) -> None:
        """No lifespan ran: only the watchdog starts now; the first request starts the first instance."""
        if self._watchdog is None:
            self._event = None  # this loop's
            self._watchdog = spawn(self._watch, name="sf_asgi watchdog")

    async def invoke(
        self, request_id: str, meta: _wire.Meta, payload: bytes, on_queue: Callable[[Waiter], None]
    ) -> Call:
        """Run one invocation on an instance; the returned call holds its result frame or its failure.

        Raises QueueFull when `max_queue` clients already wait, ClientGone when this one left while waiting.
        """
        if self._watchdog is None:
            self.start_lazily()
        instance = self._take()
        clock = queued = time.monotonic()
        if instance is None:
            if self._can_start():
                instance = self._new_instance()
            else:
                if self.settings.max_queue and self.waiting >= self.settings.max_queue:
                    raise QueueFull
                waiter = Waiter(self.new_event)
                self._waiters.append(waiter)
                if self.settings.max_queue:  # only the cap needs to know who is still connected
                    on_queue(waiter)
                await waiter.event.wait()
                if waiter.gone:
                    raise ClientGone
                assert waiter.instance is not None
                instance = waiter.instance
                clock = time.monotonic()  # the timeout counts from here, with the cold start of a new one
        call = Call(request_id, clock, self.settings.timeout, self.new_event)
        instance.attach(call)
        if self._resting and self._wake is not None:
            self._wake.set()
        try:
            if not instance.loaded:
                await instance.ready.wait()
                if instance.load_error is not None and not call.done.is_set():
                    call.fail(instance.load_error)
            if not call.done.is_set():
                # With the timeout off, the context's deadline is an hour away (the platform's longest).
                budget = 3600.0 if call.deadline == float("inf") else call.deadline - time.monotonic()
                meta["deadline_ms"] = int((time.time() + budget) * 1000)
                meta["queued_ms"] = (clock - queued) * 1000  # waiting for a slot
                # Duration counts from the arrival: the wait, and the cold start of an instance started for it.
                meta["before_ms"] = (time.monotonic() - queued) * 1000
                self.output.system_lines(request_id, f"START RequestID: {request_id} Version: {self._version}")
                await instance.send(call, meta, payload)
            await call.done.wait()
            used = call.meta.get("max_mb", 0)
            if call.failure is None and used > self.settings.memory_limit_mb:
                # Between two looks of the watchdog, the instance went over its limit: its REPORT says how far.
                call.failure = _memory_error(used, self.settings.memory_limit_mb)
                self._kill_for_memory(instance, used, after=True)
            return call
        finally:
            instance.detach(call)
            self._release(instance)

    # Which instance runs what.

    def _take(self) -> ProcessInstance | None:
        """A ready instance with a free slot, the one used last first, so that extra ones can go idle."""
        best = starting = None
        for instance in self._instances:
            if instance.reserved >= self.settings.concurrency:
                continue
            if instance.usable and (best is None or instance.idle_since > best.idle_since):
                best = instance
            elif not instance.loaded and not instance.ready.is_set() and instance.kill_reason is None:
                starting = instance  # a replacement still in its cold start, which nobody waits for yet
        best = best or starting
        if best is not None:
            best.reserved += 1
        return best

    def _can_start(self) -> bool:
        return not self._closing and len(self._live()) < self._max_instances

    def _live(self) -> list[ProcessInstance]:
        """The instances that count against max_instances: not dying, not retiring."""
        return [i for i in self._instances if not i.dead and not i.retiring and i.kill_reason is None]

    def _new_instance(self, replaces: ProcessInstance | None = None) -> ProcessInstance:
        instance = ProcessInstance(next(self._numbers), self.settings, self.output, self._exited, self.new_event)
        instance.reserved = 1  # for whoever asked for it
        instance.replaces = replaces.number if replaces is not None else 0
        self._instances.append(instance)
        spawn(self._start_instance, instance, name=f"sf_asgi start instance {instance.number}")
        return instance

    async def _start_instance(self, instance: ProcessInstance) -> None:
        try:
            await instance.start()
        except OSError as exc:
            logger.error("sf_asgi could not start an instance: %s", exc)
            instance.load_error = platform_error(500, "InstanceStartFailed", f"Could not start an instance: {exc}")
            instance.dead = True
            instance.ready.set()
            self._exited(instance)
            return
        await instance.ready.wait()
        self._dispatch()  # a replacement started with nobody waiting for it: now it can take the queue
        if instance.loaded:
            replaced = f", replacing instance {instance.replaces}" if instance.replaces else ""
            logger.info(
                "Instance %d (pid %d) started in %.1f ms (its import, the cold start: %.1f ms)%s",
                instance.number,
                instance.pid,
                instance.ready_ms,
                instance.init_ms,
                replaced,
            )

    def _release(self, instance: ProcessInstance) -> None:
        instance.reserved -= 1
        if instance.reserved == 0:
            instance.idle_since = time.monotonic()
            if instance.retiring:
                instance.stop()
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots, or new instances, to the requests waiting, first come first served."""
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.gone:
                self._waiters.popleft()
                continue
            instance = self._take()
            if instance is None:
                if not self._can_start():
                    return
                instance = self._new_instance()
            self._waiters.popleft()
            waiter.instance = instance
            waiter.event.set()

    def _exited(self, instance: ProcessInstance) -> None:
        if instance in self._instances:
            self._instances.remove(instance)
        code = instance.process.returncode if instance.process is not None else None
        if instance.kill_reason is None and instance.loaded and not instance.stopping and not self._closing:
            logger.warning(
                "Instance %d (pid %d) crashed: it %s", instance.number, instance.pid, describe_exit(code or 0)
            )
        if self._closing:
            return
        if instance.loaded and len(self._live()) < self.settings.min_instances:
            self._new_instance(replaces=instance).reserved = 0
        self._dispatch()

    # The watchdog: deadlines, memory, idle instances.

    async def _watch(self) -> None:
        while True:
            now = time.monotonic()
            busy = False
            for instance in list(self._instances):
                if instance.dead or instance.kill_reason is not None:
                    continue
                if instance.calls:
                    busy = True
                    self._check(instance, now)
                elif (
                    instance.usable
                    and instance.reserved == 0
                    and now - instance.idle_since >= self.settings.idle_timeout
                    and len([i for i in self._instances if i.usable]) > self.settings.min_instances
                ):
                    logger.info(
                        "Instance %d (pid %d) stopped after %g s without work (SF_IDLE_TIMEOUT)",
                        instance.number,
                        instance.pid,
                        self.settings.idle_timeout,
                    )
                    instance.retiring = True
                    instance.stop()
            self._resting = not busy
            if busy:
                await anyio.sleep(_TICK)
            else:
                self._wake = self.new_event()
                with anyio.move_on_after(min(_IDLE_TICK, self.settings.idle_timeout)):
                    await self._wake.wait()

    def _check(self, instance: ProcessInstance, now: float) -> None:
        for call in list(instance.calls.values()):
            if now >= call.deadline:
                timeout = self.settings.timeout
                logger.warning(
                    "Instance %d (pid %d) terminated: invocation %s timed out after %g s (SF_TIMEOUT)",
                    instance.number,
                    instance.pid,
                    call.request_id or "(cold start)",
                    timeout,
                )
                late = call

                def answer(other: Call, late: Call = late, timeout: float = timeout) -> HTTPResponse:
                    if other is late:
                        return platform_error(504, "Timeout", f"Function timed out after {timeout:g} s (SF_TIMEOUT)")
                    return platform_error(
                        502, "InstanceCrashed", "The function's instance was terminated: another invocation timed out"
                    )

                instance.kill("timeout", answer)
                return
        used = rss_mb(instance.pid)
        if used is not None and used > self.settings.memory_limit_mb:
            self._kill_for_memory(instance, used)

    def _kill_for_memory(self, instance: ProcessInstance, used: int, after: bool = False) -> None:
        logger.warning(
            "Instance %d (pid %d) terminated: it used %d MB, over its memory limit of %d MB (SF_MEMORY_LIMIT_MB)",
            instance.number,
            instance.pid,
            used,
            self.settings.memory_limit_mb,
        )
        limit = self.settings.memory_limit_mb
        instance.kill("memory", lambda call: _memory_error(used, limit))

    # Reload and shutdown.

    def retire_all(self) -> None:
        """New code: instances finish what they run and stop; new ones import it on the next request."""
        for instance in self._instances:
            instance.retiring = True
            if instance.reserved == 0:
                instance.stop()

    def kill_all(self) -> None:
        for instance in self._instances:
            if instance.process is not None and instance.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(instance.process.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Stop every instance. Still busy means the server gave up waiting (a second signal): kill those."""
        self._closing = True
        for waiter in self._waiters:
            waiter.leave()
        for instance in list(self._instances):
            if instance.calls:
                instance.kill("shutdown", _shutdown_error)
            else:
                instance.retiring = True
                instance.stop()
        # They were killed or given 50 ms (one still being spawned is stopped once it is): this waits
        # for their exit, so that none outlives the server's loop.
        with anyio.move_on_after(2.0):
            while any(not instance.dead for instance in self._instances):
                await anyio.sleep(0.01)
        if self._watchdog is not None:
            self._watchdog.cancel()


def _memory_error(used: int, limit: int) -> HTTPResponse:
    return platform_error(
        502,
        "MemoryLimitExceeded",
        f"The function's instance used {used} MB, over its memory limit of {limit} MB, and was terminated: "
        "use less memory or raise SF_MEMORY_LIMIT_MB",
    )


def _shutdown_error(call: Call) -> HTTPResponse:
    return platform_error(503, "ShuttingDown", "The server is shutting down; the invocation was stopped")


def _signalled_in_spawn(instance: ProcessInstance) -> bool:
    """The instance died of SIGINT, SIGTERM or SIGHUP before it was ready, and not by the pool's hand."""
    code = instance.process.returncode if instance.process is not None else None
    return (
        not instance.loaded
        and instance.kill_reason is None
        and not instance.stopping
        and code is not None
        and -code in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    )
