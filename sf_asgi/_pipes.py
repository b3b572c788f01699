"""Reading and writing the pipes of a process instance with as few system calls as possible.

Each request crosses two pipes, and system calls are what it costs: on asyncio every
anyio stream operation adds a getpid() (the running-loop check) to its read or write,
and in a sandbox such as gVisor one system call costs more than sf_asgi's own work on
a request. So the pipes are plain non-blocking file descriptors: a write is one
`os.write` (waiting with `anyio.wait_writable` only when the pipe is full), and a read
is one `os.read` in a callback the loop makes when the pipe is readable (asyncio's
`add_reader`), or in a task that waits with `anyio.wait_readable` (trio).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

import anyio

from ._background import Task, library, spawn

CHUNK = 256 * 1024


def pipe() -> tuple[int, int]:
    """(read end, write end), both inheritable by nothing but the child they are passed to."""
    return os.pipe()


class Reader:
    """Calls `on_data(chunk)` for what arrives on `fd`, then `on_end()` once, at its end."""

    def __init__(self, fd: int, on_data: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._on_data = on_data
        self._on_end = on_end
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: Task | None = None
        self.ended = False
        if library() == "asyncio":
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(fd, self.read_now)
        else:
            self._task = spawn(self._run, name="sf_asgi pipe reader")

    def read_now(self) -> None:
        """Read what the pipe holds now, without waiting (also called to drain it before its end)."""
        while not self.ended:
            try:
                data = os.read(self._fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._end()
                return
            self._on_data(data)
            if len(data) < CHUNK:
                return  # the pipe is empty now: spare the read that would say so

    async def _run(self) -> None:
        while not self.ended:
            await anyio.wait_readable(self._fd)
            self.read_now()

    def close(self) -> None:
        """Stop reading before the end (what the pipe holds now has been read)."""
        if not self.ended:
            self._end()

    def _end(self) -> None:
        self.ended = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._on_end()


async def write_all(fd: int, data: bytes) -> None:
    """Write `data` to a non-blocking pipe; OSError (BrokenPipeError) if the reader is gone."""
    view = memoryview(data)
    while True:
        with contextlib.suppress(BlockingIOError):
            view = view[os.write(fd, view) :]
        if not view:
            return
        await anyio.wait_writable(fd)  # a full pipe: the instance reads it as it can
