"""Logging as the platform sets it up, and sf_asgi's own lines (SPEC §6)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

logger = logging.getLogger("sf_asgi")

# The id of the invocation in progress: contextvars follow async tasks and are copied
# into the worker thread with each job, so concurrent invocations each see their own.
request_id_var: ContextVar[str] = ContextVar("sf_asgi_request_id", default="")

# The platform's default format is not documented; this one carries what it is said to
# carry — level, time, request id — in the tab-separated style of Lambda's [choice].
ROOT_FORMAT = "[%(levelname)s]\t%(asctime)s\t%(request_id)s\t%(message)s"

# The platform's structured-log levels.
_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}

_factory: Callable[..., logging.LogRecord] | None = None


def _install_record_factory() -> None:
    """Every record gets `request_id`, so `%(request_id)s` works in any handler's format."""
    global _factory
    if _factory is not None:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _factory = factory


# The platform's system lines (START, END, REPORT) come three per request, so their
# records are copied from a template and only their time, thread and request id are
# filled in: a third of what `logger.info` costs. They still go through `logger.handle`,
# so levels, filters, handlers and formats all apply.
_TEMPLATE = logging.LogRecord("sf_asgi", logging.INFO, __file__, 0, "", None, None, "system_line").__dict__
_START = _TEMPLATE["created"] - _TEMPLATE["relativeCreated"] / 1000


def system_lines(*messages: str, flush: bool = True) -> None:
    """Log system lines at INFO on the `sf_asgi` logger (the caller checks the level).

    When only sf_asgi's own handler, with its own format, would see them, they are written
    to its stream in one write and no record is made; `flush=False` then leaves them in the
    stream's buffer for `flush_soon` or a later flush, in order with what the handler printed.
    """
    own = _own_handler
    if (
        own is not None
        and len(logger.handlers) == 1
        and logger.handlers[0] is own
        and not logger.filters
        and not own.filters
        and not logger.disabled
        and isinstance(own.formatter, _OwnFormatter)
    ):
        own.write_system(own.formatter.system_lines(messages), flush)
        return
    if logging.getLogRecordFactory() is not _factory:  # someone's own factory: let it run
        for message in messages:
            logger.info("%s", message)
        return
    now = time.time()
    thread = threading.current_thread()
    request_id = request_id_var.get()
    for message in messages:
        record = logging.LogRecord.__new__(logging.LogRecord)
        fields = record.__dict__
        fields.update(_TEMPLATE)
        fields["msg"] = message
        fields["created"] = now
        fields["msecs"] = int((now - int(now)) * 1000) + 0.0
        fields["relativeCreated"] = (now - _START) * 1000
        fields["thread"] = thread.ident
        fields["threadName"] = thread.name
        fields["request_id"] = request_id
        logger.handle(record)


_flush_loop: asyncio.AbstractEventLoop | None = None


_running_loop: Callable[[], asyncio.AbstractEventLoop] | None = None


def flush_soon() -> None:
    """Flush sf_asgi's stream once this turn of the event loop is over, not once per request.

    Under load one write then carries the lines of every request the turn finished.
    """
    global _flush_loop, _running_loop
    if _running_loop is None:  # imported here: an instance's runtime never imports asyncio for it
        from ._concurrency import running_loop

        _running_loop = running_loop
    loop = _running_loop()
    if _flush_loop is not loop and _own_handler is not None:
        _flush_loop = loop
        loop.call_soon(_flush, _own_handler)


def _flush(handler: logging.Handler) -> None:
    global _flush_loop
    _flush_loop = None
    handler.flush()


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """sf_asgi's own lines on stdout: the one of the moment (pytest's capture swaps it)."""

    def __init__(self, stream: Any = None) -> None:
        self._fixed = stream
        super().__init__(stream)

    @property
    def stream(self) -> Any:
        return sys.stdout if self._fixed is None else self._fixed

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # StreamHandler's own assignment: the stream is the one given, or stdout's of the moment

    def write_system(self, text: str, flush: bool) -> None:
        """System lines already formatted, in one write (`system_lines` checked the level)."""
        try:
            with self.lock:  # type: ignore[union-attr]  # worker threads write too
                self.stream.write(text)
                if flush:
                    self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": text}))


_own_handler: _StdoutHandler | None = None


class _OwnFormatter(logging.Formatter):
    def system_lines(self, messages: tuple[str, ...]) -> str:
        """System lines (INFO, the current request id) as written, each ending in a newline."""
        raise NotImplementedError


class TextFormatter(_OwnFormatter):
    """sf_asgi's lines: the platform's system lines as they are, others with their level."""

    def system_lines(self, messages: tuple[str, ...]) -> str:
        return "\n".join(messages) + "\n"

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno != logging.INFO:
            request_id = getattr(record, "request_id", "")
            prefix = f"[{record.levelname}]\t{request_id}\t" if request_id else f"[{record.levelname}]\t"
            message = prefix + message
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        return message


class JsonFormatter(_OwnFormatter):
    """One JSON object a line, with the keys the platform's structured logging reads."""

    def system_lines(self, messages: tuple[str, ...]) -> str:
        request_id = request_id_var.get()
        return "".join(self.line("INFO", message, request_id) + "\n" for message in messages)

    def format(self, record: logging.LogRecord) -> str:
        stack = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.levelname, record.getMessage(), getattr(record, "request_id", ""), stack)

    @staticmethod
    def line(level: str, message: str, request_id: str, stack: str | None = None) -> str:
        entry = {"level": _LEVELS.get(level, level), "msg": message, "request_id": request_id}
        if stack is not None:
            entry["stack"] = stack
        return json.dumps(entry, ensure_ascii=False)


def format_system_lines(json: bool, request_id: str, messages: tuple[str, ...]) -> str:
    """System lines as sf_asgi's formatters write them, each ending in a newline."""
    if json:
        return "".join(JsonFormatter.line("INFO", message, request_id) + "\n" for message in messages)
    return "\n".join(messages) + "\n"


def setup_logging(log_format: str, level: str = "info") -> bool:
    """Set up logging as the platform does, unless the host app already has; True if it did.

    `level` is sf_asgi's own: at `info` it writes the per-invocation system lines.

    On the platform the root logger writes to stdout before user code runs, so
    `logging.basicConfig()` in a handler changes nothing; its level stays WARNING.
    """
    _install_record_factory()
    if logger.level == logging.NOTSET or level != "info":  # a host app's own setting stays, unless asked
        logger.setLevel(level.upper())
    root = logging.getLogger()
    configured = bool(root.handlers)  # the host app's logging, a server's (daphne's), or pytest's
    if not configured:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(ROOT_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    # sf_asgi's own lines go to stdout in the platform's format whoever set up the root logger,
    # unless the `sf_asgi` logger itself was given a handler: then it is the host's to route.
    global _own_handler
    if _own_handler is None and not logger.handlers:
        own = _StdoutHandler()
        own.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
        logger.addHandler(own)
        logger.propagate = False
        _own_handler = own
    # Not line-buffered: REPORT's flush (or a warning's) writes what an invocation printed,
    # in order; a terminal stays line-buffered as Python makes it.
    return not configured


try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]


_peak: tuple[float, int] = (-1.0, 0)  # (time.perf_counter() when read, MB)


def max_memory_mb(now: float) -> int:
    """The process's peak RSS in MB (0 where the OS does not say), at `now` (time.perf_counter()).

    Read at most once a millisecond: the reading is a system call, a REPORT under load comes
    far more often, and in a millisecond page faults add a few MB at most.
    """
    global _peak
    read_at, mb = _peak
    if now - read_at < 0.001 or resource is None:
        return mb
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mb = int(peak // (1024 * 1024)) if sys.platform == "darwin" else int(peak // 1024)  # bytes vs KiB
    _peak = (now, mb)
    return mb


def billed_ms(duration_ms: float) -> int:
    """Billed Duration: rounded up to the next 100 ms."""
    return -(-int(duration_ms * 1000) // 100_000) * 100 or 100
