"""Start real servers on 127.0.0.1 for end-to-end tests; every wait is bounded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UVICORN = [sys.executable, "-m", "uvicorn"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], host: str = "127.0.0.1", limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {host}:{port} within {limit}s")


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log
        self.url = f"http://127.0.0.1:{port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_env(env: Mapping[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    base.update(env)
    return base


@contextmanager
def uvicorn(
    cwd: Path, env: Mapping[str, str], args: Sequence[str] = (), log_dir: Path | None = None
) -> Iterator[Server]:
    """`uvicorn sf_asgi:app` in `cwd`, stopped (and only it) when the block ends."""
    port = free_port()
    log = (log_dir or cwd) / f"uvicorn-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*UVICORN, "sf_asgi:app", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=cwd,
            env=server_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield Server(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run_until_exit(cwd: Path, env: Mapping[str, str], limit: float = 20.0) -> subprocess.CompletedProcess[str]:
    """`uvicorn sf_asgi:app` expected to stop by itself (a failed startup)."""
    return subprocess.run(
        [*UVICORN, "sf_asgi:app", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=cwd,
        env=server_env(env),
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
    )


def raw_request(port: int, data: bytes, *, half_close: bool = False, read: bool = True, limit: float = 5.0) -> bytes:
    """Send bytes as they are and read the answer until the server closes or `limit` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        if not read:
            return b""
        chunks = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False
