"""One process instance, seen from the front: start it, hand it invocations, read what it says, kill it.

The pool (`_pool.py`) decides which instance runs what and when one is killed; this
module only runs the child (`_runtime.py`) and turns what happens to it into outcomes:
a result frame, or a platform error when the instance is killed or dies (SPEC §6).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import site
import sys
import time
from collections.abc import Callable

import anyio
from anyio.abc import Process

from . import _pipes, _wire
from ._background import Event, spawn
from ._config import ENV_PREFIX, Settings
from ._logging import billed_ms
from ._output import LineRelay, Output
from ._response import HTTPResponse, platform_error, user_error_response

# The platform gives an idle instance 50 ms between SIGTERM and SIGKILL.
STOP_GRACE = 0.05
# How long an ended instance's output may take to arrive once its process has exited.
LOG_GRACE = 0.2

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Call:
    """One invocation on its way through an instance; `done` is set once it has its outcome."""

    __slots__ = ("deadline", "done", "failure", "id", "meta", "payload", "request_id", "started")

    def __init__(self, request_id: str, started: float, timeout: float, event: Callable[[], Event]) -> None:
        self.id = 0
        self.request_id = request_id
        self.started = started  # time.monotonic() when its clock started (SPEC §6: cold start included)
        self.deadline = started + timeout if timeout else float("inf")
        self.done = event()
        self.meta: _wire.Meta = {}
        self.payload = b""
        self.failure: HTTPResponse | None = None

    def fail(self, response: HTTPResponse) -> None:
        if not self.done.is_set():
            self.failure = response
            self.done.set()


class ProcessInstance:
    def __init__(
        self,
        number: int,
        settings: Settings,
        output: Output,
        on_exit: Callable[[ProcessInstance], None],
        event: Callable[[], Event],
    ) -> None:
        self.number = number
        self.settings = settings
        self._output = output
        self._on_exit = on_exit
        self.process: Process | None = None
        self.ready = event()  # set once it is READY, failed to load, or is gone
        self.loaded = False
        self.load_error: HTTPResponse | None = None
        self.load_report = ""  # the LoadError's report, for the startup failure
        self.reserved = 0  # slots taken by the pool: invocations running, starting or about to be sent
        self.replaces = 0  # the number of the instance this one replaced, for the log
        self.init_ms = 0.0
        self.ready_ms = 0.0  # from spawn to READY: the interpreter's start, then the import
        self._spawned = 0.0
        self.calls: dict[int, Call] = {}
        self.retiring = False  # finish what runs, take nothing new, then stop
        self.dead = False
        self.stopping = False  # stop() was called: its exit is no crash
        self.idle_since = time.monotonic()
        self.kill_reason: str | None = None  # why the front killed it, for the log
        self.peak_mb = 0  # its peak RSS when it was killed, for the REPORT the front writes
        self._kill_response: Callable[[Call], HTTPResponse] | None = None
        self._killed: list[Call] = []
        self._sent: set[int] = set()  # calls whose START was written: they get their END
        self._next_id = 0
        self._logs_done = event()
        self._frames_done = event()
        self._buffer = _wire.FrameBuffer()
        self._in = -1

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def busy(self) -> int:
        return len(self.calls)

    @property
    def usable(self) -> bool:
        return self.loaded and not self.dead and not self.retiring and self.kill_reason is None

    async def start(self) -> None:
        """Spawn the child; its readers run in the background. Wait on `ready` for its cold start."""
        self._spawned = time.perf_counter()
        settings = dataclasses.replace(
            self.settings,
            source_dir=os.path.abspath(self.settings.source_dir),
            env_file=os.path.abspath(self.settings.env_file) if self.settings.env_file else "",
        )
        command = [
            sys.executable,
            "-P",  # the function's folder, not the server's, is where imports start
            "-m",
            "sf_asgi._runtime",
            json.dumps(dataclasses.asdict(settings)),
            str(os.getpid()),
        ]
        # The pipes are made here, not by the subprocess module, so that the front owns its ends as
        # plain descriptors (see _pipes.py): frames in, frames out, and the log (fds 1 and 2).
        in_read, self._in = _pipes.pipe()
        frames_read, frames_write = _pipes.pipe()
        log_read, log_write = _pipes.pipe()
        try:
            self.process = await anyio.open_process(
                command,
                stdin=in_read,
                stdout=frames_write,
                stderr=log_write,
                cwd=settings.source_dir,  # as on the platform, code runs from its own folder [choice]
                env=_child_env(),
                # Its own session: a signal to the server's process group (Ctrl+C, `kill -- -PGID`) is the
                # server's to handle; instances stop when the front says, or with the server (PDEATHSIG).
                start_new_session=True,
            )
        except BaseException:
            for fd in (self._in, frames_read, log_read):
                os.close(fd)
            raise
        finally:
            for fd in (in_read, frames_write, log_write):
                os.close(fd)
        os.set_blocking(self._in, False)
        if self.kill_reason is not None:  # its deadline passed while it was being spawned
            self._kill_group()
        elif self.retiring:  # the server began to stop meanwhile
            self.stop()
        self._relay = LineRelay(self._output)
        self._log = _pipes.Reader(log_read, self._relay.feed, self._log_ended)
        self._frames = _pipes.Reader(frames_read, self._on_frames, self._frames_ended)
        spawn(self._wait, name=f"sf_asgi instance {self.number}")

    def attach(self, call: Call) -> None:
        """From now on the call fails with the instance: killed, crashed or failed to load."""
        self._next_id += 1
        call.id = self._next_id
        self.calls[call.id] = call

    def detach(self, call: Call) -> None:
        self.calls.pop(call.id, None)

    async def send(self, call: Call, meta: _wire.Meta, payload: bytes) -> None:
        """Hand an attached invocation to the instance; its outcome arrives on `call`."""
        meta["id"] = call.id
        self._sent.add(call.id)
        with contextlib.suppress(OSError):  # it died: the reader sees its end and fails the call
            await _pipes.write_all(self._in, _wire.encode(meta, payload))

    def kill(self, reason: str, response: Callable[[Call], HTTPResponse]) -> None:
        """Terminate at once (no waiting for it); the calls it runs get `response(call)`."""
        if self.dead or self.kill_reason is not None:
            return
        self.kill_reason = reason
        self._kill_response = response
        self._killed = list(self.calls.values())  # their END and REPORT are written once its output has ended
        self.peak_mb = peak_rss_mb(self.pid)  # what REPORT says it used, read before it is gone
        for call in self.calls.values():
            call.fail(response(call))
        self._kill_group()

    def _kill_group(self) -> None:
        """SIGKILL to the instance's process group: also what a handler left running (a Popen, a fork)."""
        if self.process is None:
            return
        # Its own session made it a group leader: the group outlives it while what it left runs.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def stop(self) -> None:
        """Stop an idle instance as the platform does: SIGTERM, then SIGKILL 50 ms later."""
        if self.process is not None and self.process.returncode is None and not self.stopping:
            self.stopping = True
            self.process.terminate()
            spawn(self._kill_later, name=f"sf_asgi stop instance {self.number}")

    async def _kill_later(self) -> None:
        await anyio.sleep(STOP_GRACE)
        self._kill_group()

    def _on_frames(self, chunk: bytes) -> None:
        try:
            frames = self._buffer.feed(chunk)
        except _wire.WireError:  # something else wrote on the frame pipe: the instance cannot be trusted
            self.kill("wire", _wire_error)
            return
        for meta, payload in frames:
            op = meta.get("op")
            if op == _wire.RESULT:
                self._result(meta, payload)
            elif op == _wire.READY:
                self.init_ms = float(meta.get("init_ms", 0.0))
                self.ready_ms = (time.perf_counter() - self._spawned) * 1000
                self.loaded = True
                self.ready.set()
            elif op == _wire.LOAD_ERROR:
                self.load_error = _load_error(meta)
                self.load_report = str(meta.get("report", ""))
                self.ready.set()

    def _result(self, meta: _wire.Meta, payload: bytes) -> None:
        # What the handler printed went to the log pipe before this frame was written: it goes
        # out first, then the END and REPORT that came with the frame (SPEC §6: in order).
        self._log.read_now()
        self._relay.end_line()
        lines = meta.pop("log", None)
        if lines:
            self._output.text(lines)
        self._sent.discard(meta.get("id", 0))
        call = self.calls.pop(meta.get("id", 0), None)
        if call is not None and not call.done.is_set():
            call.meta, call.payload = meta, payload
            call.done.set()

    def _frames_ended(self) -> None:
        self._frames_done.set()

    def _log_ended(self) -> None:
        self._relay.close()
        self._logs_done.set()

    async def _wait(self) -> None:
        """Once both pipes have ended: the exit status, then what it means for the calls it had."""
        assert self.process is not None
        with anyio.CancelScope(shield=True):
            await self._frames_done.wait()
            code = await self.process.wait()
            # A process the handler started may hold the log pipe open: what it wrote by now is read,
            # the rest is not waited for.
            with anyio.move_on_after(LOG_GRACE):
                await self._logs_done.wait()
            if not self._logs_done.is_set():
                self._log.read_now()
                self._log.close()
            self._kill_group()  # what the handler left running goes with its instance
            with contextlib.suppress(OSError):
                os.close(self._in)
            await self.process.aclose()
        self._exited(code)

    def _exited(self, code: int) -> None:
        self.dead = True
        logged = set()
        for call in [*self._killed, *self.calls.values()]:
            if not call.request_id or call.id in logged:
                continue  # a pool's own cold-start watch has no request
            logged.add(call.id)
            if call.id not in self._sent:
                # Killed in the cold start it was waiting for (its deadline counts it): it gets its lines too.
                self._output.system_lines(
                    call.request_id, f"START RequestID: {call.request_id} Version: {self.settings.function_version}"
                )
            self._sent.discard(call.id)
            self._log_killed(call)
        # Whatever it still had (all of it, if it crashed) fails with it: no call waits for a dead instance.
        how = describe_exit(code)
        crashed = platform_error(
            502, "InstanceCrashed", f"The function's instance {how} during the invocation; it was replaced"
        )
        for call in self.calls.values():
            call.fail(crashed)
        self.calls.clear()
        self.ready.set()
        self._on_exit(self)

    def _log_killed(self, call: Call) -> None:
        """END and REPORT for an invocation whose instance was killed: it bills up to the kill (SPEC §6)."""
        duration = min(time.monotonic(), call.deadline) - call.started
        duration_ms = max(0.0, duration * 1000)
        self._output.system_lines(
            call.request_id,
            f"END RequestID: {call.request_id}",
            f"REPORT RequestID: {call.request_id} Duration: {duration_ms:.3f} ms "
            f"Billed Duration: {billed_ms(duration_ms)} ms Memory Size: {self.settings.memory_limit_mb} MB "
            f"Max Memory Used: {self.peak_mb} MB",
            flush=True,
        )


def _load_error(meta: _wire.Meta) -> HTTPResponse:
    return user_error_response(meta.get("error") or {"errorMessage": "import failed", "errorType": "ImportError"})


def _wire_error(call: Call) -> HTTPResponse:
    return platform_error(
        502, "InstanceCrashed", "The function's instance wrote what is not sf_asgi's on its pipe, and was killed"
    )


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} ({-code})"
    return f"exited with code {code}"


def _child_env() -> dict[str, str]:
    """The server's environment without sf_asgi's own settings (the function sees its own, SPEC §8)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    env["_SF_ASGI_INSTANCE"] = "1"  # read by sf_asgi/__init__.py, removed before the user's code runs
    # sf_asgi itself must import in the child, also when it runs from a checkout that is not installed.
    if _PACKAGE_PARENT not in site.getsitepackages():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return env


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb(pid: int) -> int | None:
    """A process's resident memory now, in MB (None where /proc does not tell)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1]) * _PAGE // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb(pid: int) -> int:
    """A process's peak resident memory (VmHWM), in MB; 0 where /proc does not tell."""
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            for line in file:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
