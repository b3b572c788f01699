"""The server's stdout as the function's log: what instances print, and the system lines (SPEC §6).

Each process instance's output arrives on a pipe of its own and is written here whole
lines at a time, by the one thread that runs the front, so lines from different
instances never mix within a line. The system lines the front writes itself (START,
and END/REPORT of an invocation whose instance was killed) use the instance's format,
not the host's logging, so they look the same whoever configured logging first.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from ._background import library
from ._logging import format_system_lines

# A line longer than this is written in pieces rather than held in memory [choice].
LINE_LIMIT = 1024 * 1024


class Output:
    def __init__(self, log_format: str, log_level: str) -> None:
        self._json = log_format == "json"
        self.system_lines_on = log_level.lower() in ("debug", "info")
        self._asyncio: bool | None = None  # which library runs the relays, once known
        self._flush_pending = False

    def system_lines(self, request_id: str, *messages: str, flush: bool = False) -> None:
        """Written to the buffer unless `flush`: the instance's own output that follows flushes it."""
        if self.system_lines_on:
            self._write(format_system_lines(self._json, request_id, messages), flush)

    def text(self, text: str) -> None:
        """Lines already formatted (an instance's END and REPORT), flushed as `lines` are."""
        self._write(text, False)
        self._flush_soon()

    def lines(self, data: bytes) -> None:
        """Whole lines an instance wrote (bytes that are not UTF-8 are replaced, not dropped).

        Flushed once the event loop's turn is over, not per write: under load one write to
        stdout then carries what many invocations printed, in the order they printed it.
        """
        self._write(data.decode("utf-8", "replace"), False)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush_pending:
            return
        if self._asyncio is None:
            self._asyncio = library() == "asyncio"
        try:
            loop = asyncio.get_running_loop() if self._asyncio else None
        except RuntimeError:  # no loop runs: nothing to wait for
            loop = None
        if loop is None:
            self._flush()
        else:
            self._flush_pending = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        with contextlib.suppress(Exception):
            sys.stdout.flush()

    @staticmethod
    def _write(text: str, flush: bool) -> None:
        stream = sys.stdout
        with contextlib.suppress(Exception):  # no stdout (a closed pipe, a daemon): the log is lost, not the server
            stream.write(text)
            if flush:
                stream.flush()


class LineRelay:
    """Cuts an instance's output into whole lines; what follows the last newline waits for more."""

    __slots__ = ("_output", "_tail")

    def __init__(self, output: Output) -> None:
        self._output = output
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            self._output.lines(data[:cut])
            data = data[cut:]
        if len(data) > LINE_LIMIT:
            self._output.lines(data + b"\n")
            data = b""
        self._tail = data

    def end_line(self) -> None:
        """An invocation ended: what it printed without a newline is its own line, before its END."""
        if self._tail:
            self._output.lines(self._tail + b"\n")
            self._tail = b""

    def close(self) -> None:
        """The instance is gone: a last line without its newline still gets one."""
        if self._tail:
            self._output.lines(self._tail + b"\n")
            self._tail = b""
