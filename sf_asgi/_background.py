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
from typing import Any

import anyio
import sniffio

logger = logging.getLogger("sf_asgi")

_tasks: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks


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
