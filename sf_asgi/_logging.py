"""Logging as the platform sets it up, and sf_asgi's own lines (SPEC §6)."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar

logger = logging.getLogger("sf_asgi")

# The id of the invocation in progress: contextvars follow async tasks and are copied
# into the worker thread with each job, so concurrent invocations each see their own.
request_id_var: ContextVar[str] = ContextVar("sf_asgi_request_id", default="")

# The platform's default format is not documented; this one carries what it is said to
# carry — level, time, request id — in the tab-separated style of Lambda's [choice].
ROOT_FORMAT = "[%(levelname)s]\t%(asctime)s\t%(request_id)s\t%(message)s"

# The platform's structured-log levels.
_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}

_factory_installed = False


def _install_record_factory() -> None:
    """Every record gets `request_id`, so `%(request_id)s` works in any handler's format."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


class TextFormatter(logging.Formatter):
    """sf_asgi's lines: the platform's system lines as they are, others with their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno != logging.INFO:
            message = f"[{record.levelname}]\t{getattr(record, 'request_id', '')}\t{message}"
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        return message


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the keys the platform's structured logging reads."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "level": _LEVELS.get(record.levelname, record.levelname),
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        if record.exc_info:
            entry["stack"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(log_format: str) -> bool:
    """Set up logging as the platform does, unless the host app already has; True if it did.

    On the platform the root logger writes to stdout before user code runs, so
    `logging.basicConfig()` in a handler changes nothing; its level stays WARNING.
    """
    _install_record_factory()
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    root = logging.getLogger()
    if root.handlers:
        return False  # the host app's logging (or pytest's): leave it alone
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(ROOT_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    own = logging.StreamHandler(sys.stdout)
    own.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger.addHandler(own)
    logger.propagate = False
    # Lines should reach a pipe or a container's log as they are printed, as on the platform.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    return True


def max_memory_mb() -> int:
    """The process's peak RSS in MB (0 where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak // (1024 * 1024)) if sys.platform == "darwin" else int(peak // 1024)  # bytes vs KiB


def billed_ms(duration_ms: float) -> int:
    """Billed Duration: rounded up to the next 100 ms."""
    return max(100, -(-int(duration_ms * 1000) // 100_000) * 100)
