"""What runs inside a process instance: `python -P -m sf_asgi._runtime SETTINGS_JSON` (SPEC §6).

The front starts one of these per instance. It imports the handler once (the cold
start), says READY, then runs the invocations the front sends, one at a time as the
platform's Python runtime does: a sync handler on the main thread, a coroutine with
`asyncio.run` (a fresh loop per invocation). With `concurrency` above 1 the instance
instead keeps one event loop for its whole life, so that overlapping async invocations
share it, and sync ones run on that many threads [choice].

The pipes: stdin brings frames from the front, the original stdout takes frames back.
Both are moved off fds 0 and 1 first, so the handler's `print`, its logging and any C
library or child process writing to fd 1 or 2 all land on the third pipe, which the
front relays to the server's stdout line by line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import types
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

from . import _wire
from ._config import Settings, read_env_file
from ._context import Context, make_token
from ._loader import LoadError, load_handler
from ._logging import billed_ms, format_system_lines, max_memory_mb, request_id_var, setup_logging
from ._response import MAX_PAYLOAD, error_body
from ._types import Handler


class Runtime:
    def __init__(self, settings: Settings, frames_in: IO[bytes], frames_out: int) -> None:
        self.settings = settings
        self._in = frames_in
        self._out = frames_out
        self._json = settings.log_format == "json"
        self._system_lines = settings.log_level.lower() in ("debug", "info")
        self._write_lock = threading.Lock()
        try:
            self._status_fd: int | None = os.open("/proc/self/status", os.O_RDONLY)
        except OSError:  # not Linux
            self._status_fd = None
        self._started = time.time()
        self._init_ms: float | None = None
        self._report = (
            "REPORT RequestID: %s Duration: %.3f ms Billed Duration: %d ms "
            f"Memory Size: {settings.memory_limit_mb} MB Max Memory Used: %d MB Queuing Duration: %.3f ms"
        )

    def _peak_mb(self, now: float) -> int:
        """This instance's own peak RSS (VmHWM), in MB.

        Not `getrusage`: Linux carries ru_maxrss over fork and exec, so a new instance would
        start at the server's own peak. /proc/self/status is kept open: one pread per look.
        """
        if self._status_fd is None:
            return max_memory_mb(now)
        try:
            status = os.pread(self._status_fd, 8192, 0)
            start = status.index(b"VmHWM:") + 6
            return int(status[start : status.index(b"kB", start)]) // 1024
        except (OSError, ValueError):
            return max_memory_mb(now)

    def send(self, meta: _wire.Meta, payload: bytes = b"") -> None:
        with self._write_lock:
            _write_all(self._out, _wire.encode(meta, payload))

    def load(self) -> Handler | None:
        started = time.perf_counter()
        try:
            if self.settings.env_file:
                # The platform sets the version's environment before the code is imported.
                os.environ.update(read_env_file(self.settings.env_file))
            handler = load_handler(self.settings.handler, self.settings.source_dir)
        except LoadError as exc:
            _flush_stdout()
            self.send({"op": _wire.LOAD_ERROR, "report": exc.report(), "error": error_body(exc.cause or exc)})
            return None
        except BaseException as exc:  # a bad env file (a ConfigError that names the fix), KeyboardInterrupt
            report = f"Importing {self.settings.handler} failed: {type(exc).__name__}: {exc}"
            self.send({"op": _wire.LOAD_ERROR, "report": report, "error": error_body(exc)})
            return None
        _flush_stdout()  # what the module printed goes out before READY
        self._init_ms = (time.perf_counter() - started) * 1000
        self.send({"op": _wire.READY, "init_ms": self._init_ms})
        return handler

    def context(self, meta: _wire.Meta) -> Context:
        settings = self.settings
        return Context(
            meta["rid"],
            settings.function_name,
            settings.function_version,
            settings.log_group,
            settings.memory_limit_mb,
            meta["deadline_ms"],
            make_token(settings.iam_token, self._started, time.time()) if settings.iam_token else None,
        )

    def finish(self, meta: _wire.Meta, received: float, outcome: tuple[bool, Any]) -> None:
        """Log END and REPORT, then send the outcome: (True, result) or (False, the exception)."""
        ok, value = outcome
        payload = b""
        reply: _wire.Meta = {"op": _wire.RESULT, "id": meta["id"], "ok": ok}
        if ok:
            try:
                payload = json.dumps(value).encode("utf-8")  # the runtime's own step (SPEC §4)
            except BaseException as exc:  # not serialisable: an error in user code
                reply["ok"], value = False, exc
            else:
                if len(payload) > MAX_PAYLOAD:  # only its size crosses the wire
                    reply["too_large"], payload = len(payload), b""
        if not reply["ok"]:
            reply["error"] = error_body(value)
        now = time.perf_counter()
        reply["max_mb"] = self._peak_mb(now)
        _flush_stdout()  # a partial line the handler printed comes before END
        if self._system_lines:
            queued = meta["queued_ms"]
            duration = (meta.get("before_ms") or queued) + (now - received) * 1000
            report = self._report % (meta["rid"], duration, billed_ms(duration), reply["max_mb"], queued)
            init_ms, self._init_ms = self._init_ms, None
            if init_ms is not None:
                report += f" Function Init Duration: {init_ms:.3f} ms"
            # With the result, not on the log pipe: one write less each way (the front keeps the order).
            reply["log"] = format_system_lines(self._json, meta["rid"], (f"END RequestID: {meta['rid']}", report))
        self.send(reply, payload)

    # concurrency = 1: the platform's runtime.

    def serve(self, handler: Handler) -> None:
        while (frame := _wire.read_frame(self._in)) is not None:
            meta, payload = frame
            received = time.perf_counter()
            token = request_id_var.set(meta["rid"])
            try:
                outcome = _call(handler, json.loads(payload), self.context(meta))
                self.finish(meta, received, outcome)
            finally:
                request_id_var.reset(token)

    # concurrency > 1: one loop for the instance's life [choice].

    def serve_concurrently(self, handler: Handler) -> None:
        import asyncio

        asyncio.run(self._serve_concurrently(handler))

    async def _serve_concurrently(self, handler: Handler) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        loop = asyncio.get_running_loop()
        threads = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="sf_asgi-instance")
        tasks: set[asyncio.Task[None]] = set()
        is_async = _is_async(handler)

        async def one(meta: _wire.Meta, payload: bytes) -> None:
            received = time.perf_counter()
            request_id_var.set(meta["rid"])
            event, context = json.loads(payload), self.context(meta)
            if is_async:
                try:
                    outcome: tuple[bool, Any] = (True, await handler(event, context))
                except BaseException as exc:
                    outcome = (False, exc)
            else:
                outcome = await loop.run_in_executor(threads, _call, handler, event, context)
            try:
                self.finish(meta, received, outcome)
            except OSError:  # the pipe to the front is gone (see main)
                os._exit(70)

        while (frame := await loop.run_in_executor(None, _wire.read_frame, self._in)) is not None:
            task = asyncio.create_task(one(*frame))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush_stdout() -> None:
    with contextlib.suppress(Exception):  # the handler may have closed or replaced it
        sys.stdout.flush()
        sys.stderr.flush()


def _call(handler: Handler, event: Any, context: Context) -> tuple[bool, Any]:
    try:
        result = handler(event, context)
        if isinstance(result, types.CoroutineType):  # an async def handler, or a coroutine from a sync one
            import asyncio  # only then: a sync function's instance starts without it

            result = asyncio.run(result)
        return True, result
    except BaseException as exc:  # SystemExit, even GeneratorExit: an error in user code (SPEC §5)
        return False, exc


def _is_async(handler: Handler) -> bool:
    import inspect

    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__)


def _die_with_parent(parent: int) -> None:
    """Exit when the server does, even if it is killed with SIGKILL (Linux: the kernel does it)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the server died before that took effect
        os._exit(1)
    # Elsewhere (and as a second line), an idle instance sees stdin end when the server goes.


def _take_pipes() -> tuple[IO[bytes], int]:
    """Move the frame pipes off fds 0 and 1; fds 1 and 2 become the log pipe, stdin /dev/null."""
    frames_in = os.fdopen(os.dup(0), "rb")  # os.dup makes non-inheritable fds: no child process gets them
    frames_out = os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # Line-buffered, so that what the handler printed is not lost if the instance is killed.
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    return frames_in, frames_out


def main() -> None:
    os.environ.pop("_SF_ASGI_INSTANCE", None)  # the function sees only its own environment
    settings = Settings(**json.loads(sys.argv[1]))
    _die_with_parent(int(sys.argv[2]))
    # Ctrl+C in a terminal reaches the whole process group: the front decides when instances stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    frames_in, frames_out = _take_pipes()
    setup_logging(settings.log_format, settings.log_level)
    runtime = Runtime(settings, frames_in, frames_out)
    try:
        handler = runtime.load()
        if handler is None:
            return
        if settings.concurrency > 1:
            runtime.serve_concurrently(handler)
        else:
            runtime.serve(handler)
    except (OSError, _wire.WireError):
        # The handler closed (or wrote on) the pipes to the front: this instance can no longer
        # answer. The front sees it exit and says so; a traceback of sf_asgi's would only confuse.
        os._exit(70)


if __name__ == "__main__":
    main()
