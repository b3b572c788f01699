"""The instance's concurrency: a FIFO gate, worker threads fed by a queue, and the timeout reaper.

Plain asyncio and threading; the instance (`_instance.py`) decides what runs where.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

from ._background import Task, spawn

T = TypeVar("T")


class _ThreadLoop(threading.local):
    loop: asyncio.AbstractEventLoop | None = None


_thread_loop = _ThreadLoop()
os.register_at_fork(after_in_child=lambda: setattr(_thread_loop, "loop", None))


def running_loop() -> asyncio.AbstractEventLoop:
    """`asyncio.get_running_loop()`, remembered per thread while that loop runs.

    asyncio's own makes a getpid() system call each time, to notice a fork; a few of those
    per request cost more than the bookkeeping they serve. A forked child forgets the loop.
    """
    loop = _thread_loop.loop
    if loop is None or not loop.is_running():
        loop = _thread_loop.loop = asyncio.get_running_loop()
    return loop


def current_task() -> asyncio.Task[Any] | None:
    """`asyncio.current_task()` without its system call (see `running_loop`)."""
    return asyncio.current_task(running_loop())


class QueueFull(Exception):
    """More requests are waiting for the instance than `max_queue` allows."""


class InvocationTimeout(Exception):
    """The invocation ran past the function's timeout."""


class Gate:
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

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for it; whether it was taken.

        Synchronous, so the common case costs no coroutine; `wait` is for when it fails.
        """
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Queue for a slot, in arrival order, after `try_take` found none (QueueFull if too many wait)."""
        if self._max_waiting and len(self._waiters) >= self._max_waiting:
            raise QueueFull
        waiter = running_loop().create_future()
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


class Hold:
    """Keeps a slot taken until the request *and* any thread job it started have let go."""

    __slots__ = ("_count", "_gate")

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._count = 1

    def add(self) -> None:
        self._count += 1

    def drop(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._gate.release()


class Deadline:
    """An invocation the reaper watches: a task to cancel, or a thread job's future to fail."""

    __slots__ = ("expired", "job", "started", "task")

    def __init__(self, task: asyncio.Task[Any] | None = None, job: Job | None = None) -> None:
        self.task = task
        self.job = job
        self.started: float | None = time.monotonic() if job is None else None
        self.expired = False


class Sweeper(Generic[T]):
    """Looks over the items in flight every `tick` seconds, from one task.

    A timer per request costs about as much as building the event, so sf_asgi's periodic
    checks (the timeout, a client that left) share this instead. The task stops by itself
    after a tick with nothing in flight, so a request never starts or stops it.
    """

    def __init__(self, tick: float, check: Callable[[T, float], None]) -> None:
        self._tick = tick
        self._check = check
        self._items: dict[int, T] = {}
        self._scope: Task | None = None

    def watch(self, item: T) -> None:
        self._items[id(item)] = item
        if self._scope is None:
            self._scope = spawn(self._run, name="sf_asgi sweeper")

    def unwatch(self, item: T) -> None:
        self._items.pop(id(item), None)

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _run(self) -> None:
        scope = self._scope
        try:
            while self._items:
                await anyio.sleep(self._tick)
                now = time.monotonic()
                for item in list(self._items.values()):
                    self._check(item, now)
        finally:  # however it ends (nothing in flight, cancelled, its loop closed), the next watch starts anew
            if self._scope is scope:
                self._scope = None


class Reaper(Sweeper[Deadline]):
    """Enforces the timeout: every timeout/20 (5 to 50 ms), so the 504 comes within one tick of the deadline."""

    def __init__(self, timeout: float) -> None:
        super().__init__(min(0.05, max(0.005, timeout / 20)), self._expire)
        self.timeout = timeout

    def _expire(self, deadline: Deadline, now: float) -> None:
        started = deadline.started if deadline.job is None else deadline.job.started
        if deadline.expired or started is None or now - started < self.timeout:
            return
        deadline.expired = True
        if deadline.task is not None:
            deadline.task.cancel()
        elif deadline.job is not None and not deadline.job.future.done():
            deadline.job.future.set_exception(InvocationTimeout(self.timeout))


class Job:
    __slots__ = ("args", "context", "fn", "future", "hold", "loop", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.context = contextvars.copy_context()  # the request id follows the job into the thread
        self.fn = fn
        self.args = args
        self.hold: Hold | None = None
        self.started: float | None = None  # time.monotonic(), set by the thread that runs it


class Workers:
    """Long-lived daemon threads that run the instance's sync code in arrival order."""

    def __init__(self, count: int, name: str) -> None:
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.in_flight = 0  # submitted and not finished; only the event loop's thread touches it

    @property
    def idle(self) -> bool:
        """No job waits for a thread (any thread may ask)."""
        return self._jobs.empty()

    @property
    def waiting(self) -> int:
        """Jobs queued behind the ones the threads run (counted on the loop: exact, no race)."""
        return max(0, self.in_flight - self._count)

    def submit(self, fn: Callable[..., Any], *args: Any, hold: Hold | None = None) -> Job:
        job = Job(running_loop(), fn, args)
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

    def finish(self, job: Job, result: Any, error: BaseException | None) -> None:
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
