"""Background tasks that outlive the request that starts them, on any async library.

The pool's readers, its watchdog and the disconnect listeners must run for as long as
an instance lives, whichever request started it, and also where no lifespan runs
(daphne, a host app that does not forward it): so they cannot live in a task group of
a request or of the lifespan. anyio has no detached task, so this is the one place
that asks which library runs the loop: asyncio's `create_task`, trio's system tasks.
Every task runs in an anyio `CancelScope`, so the rest of sf_asgi stops one the same
way on both, and a task never lets an exception escape into the server's loop.
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


def spawn(fn: Callable[..., Awaitable[Any]], *args: Any, name: str = "sf_asgi") -> anyio.CancelScope:
    """Start `fn(*args)` in the background; cancel it with the returned scope's `cancel()`."""
    scope = anyio.CancelScope()

    async def run() -> None:
        try:
            with scope:
                await fn(*args)
        except Exception:  # a bug of sf_asgi's: logged, never a crash of the server's loop
            logger.exception("sf_asgi background task %s failed; please report this as a bug", name)

    # A fresh context: the request that happens to start the task must not lend it its request id.
    context = contextvars.Context()
    if library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(run, name=name, context=context)
    else:
        task = asyncio.get_running_loop().create_task(run(), name=name, context=context)
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    return scope
