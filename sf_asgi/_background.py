"""Background tasks that outlive the request that starts them, on any async library.

The pool's readers, its watchdog and the disconnect listeners must run for as long as
an instance lives, whichever request started it, and also where no lifespan runs
(daphne, a host app that does not forward it): so they cannot live in a task group of
a request or of the lifespan. anyio has no detached task, so this is the one place
that asks which library runs the loop: asyncio's `create_task`, trio's system tasks.
`Task.cancel()` stops one the same way on both, and a task never lets an exception
escape into the server's loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import sniffio

logger = logging.getLogger("sf_asgi")

_tasks: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks


class Event(Protocol):
    """What sf_asgi needs of an event: asyncio's and trio's both have it."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


class LoopEvent:
    """asyncio's Event, bound to a known loop.

    `asyncio.Event` (and `anyio.Event`, which also asks sniffio which library runs) looks
    the running loop up at each wait, and on asyncio that lookup is a getpid() system
    call: a few per request, costly where system calls are (sandboxes, gVisor).
    """

    __slots__ = ("_loop", "_set", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: list[asyncio.Future[None]] = []
        self._set = False

    def set(self) -> None:
        self._set = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        waiter = self._loop.create_future()  # one per waiter: a cancelled one leaves the others waiting
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def event_class() -> Callable[[], Event]:
    """A maker of events for the running library, asked once (see `LoopEvent`)."""
    if library() == "trio":
        import trio

        return trio.Event
    loop = asyncio.get_running_loop()
    return lambda: LoopEvent(loop)


def library() -> str:
    """The async library running this task: asyncio or trio (asyncio when none is known)."""
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "asyncio"


class Task:
    """A background task: `cancel()` stops it, from any task of the same loop."""

    __slots__ = ("_asyncio", "_scope")

    def __init__(self, scope: anyio.CancelScope | None, task: asyncio.Task[None] | None) -> None:
        self._scope = scope
        self._asyncio = task

    def cancel(self) -> None:
        # Plain Task.cancel() on asyncio: anyio's cancel() inspects the calling task, which fails where
        # the server's tasks are not asyncio Tasks (granian's --task-impl rust).
        if self._asyncio is not None:
            self._asyncio.cancel()
        elif self._scope is not None:
            self._scope.cancel()


def spawn(fn: Callable[..., Awaitable[Any]], *args: Any, name: str = "sf_asgi") -> Task:
    """Start `fn(*args)` in the background, outside any request's context."""

    async def run() -> None:
        try:
            await fn(*args)
        except Exception:  # a bug of sf_asgi's: logged, never a crash of the server's loop
            logger.exception("sf_asgi background task %s failed; please report this as a bug", name)

    # A fresh context: the request that happens to start the task must not lend it its request id.
    context = contextvars.Context()
    if library() == "trio":
        import trio

        scope = anyio.CancelScope()

        async def in_scope() -> None:
            with scope:
                await run()

        trio.lowlevel.spawn_system_task(in_scope, name=name, context=context)
        return Task(scope, None)
    task = asyncio.get_running_loop().create_task(run(), name=name, context=context)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return Task(None, task)
