"""Start real servers on 127.0.0.1 for end-to-end tests; every wait is bounded."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    # Python's default output buffering unless a test asks otherwise: the same here as in CI.
    base = {k: v for k, v in os.environ.items() if not k.startswith("SF_") and k != "PYTHONUNBUFFERED"}
    base.update(env)
    return base


@contextmanager
def serve(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str], port: int, log: Path, host: str = "127.0.0.1"
) -> Iterator[Server]:
    """Run a server command until the block ends, then stop it (and only it)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=server_env(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, host=host)
        yield Server(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def uvicorn(
    cwd: Path, env: Mapping[str, str], args: Sequence[str] = (), log_dir: Path | None = None
) -> Iterator[Server]:
    """`uvicorn sf_asgi:app` in `cwd`."""
    port = free_port()
    cmd = [*UVICORN, "sf_asgi:app", "--host", "127.0.0.1", "--port", str(port), *args]
    with serve(cmd, cwd, env, port, (log_dir or cwd) / f"uvicorn-{port}.log") as srv:
        yield srv


@contextmanager
def sf_asgi_cli(cwd: Path, args: Sequence[str], env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """`python -m sf_asgi ... --port <free>` in `cwd`."""
    port = free_port()
    cmd = [sys.executable, "-m", "sf_asgi", *args, "--port", str(port)]
    with serve(cmd, cwd, env or {}, port, cwd / f"sf-asgi-{port}.log") as srv:
        yield srv


NGINX_MAIN = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
"""


@contextmanager
def nginx(site_conf: str, prefix: Path, host: str, port: int) -> Iterator[Server]:
    """Real nginx in the foreground with everything under `prefix`; `site_conf` is its server block."""
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "site.conf").write_text(site_conf)
    (prefix / "nginx.conf").write_text(NGINX_MAIN.format(prefix=prefix))
    cmd = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    with serve(cmd, prefix, {}, port, prefix / "stdout.log", host=host) as srv:
        yield srv


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


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


WORKER = "uvicorn.workers.UvicornWorker"


def asgi_servers(port: int) -> dict[str, list[str]]:
    """`sf_asgi:app` under every server the README names, listening on 127.0.0.1:`port`."""
    python = sys.executable
    bind = f"127.0.0.1:{port}"
    granian = [python, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    return {
        "uvicorn-h11": [*UVICORN, "sf_asgi:app", "--http", "h11", "--host", "127.0.0.1", "--port", str(port)],
        "uvicorn-httptools": [
            *UVICORN,
            "sf_asgi:app",
            "--http",
            "httptools",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "hypercorn-asyncio": [python, "-m", "hypercorn", "sf_asgi:app", "-b", bind],
        "hypercorn-trio": [python, "-m", "hypercorn", "-k", "trio", "sf_asgi:app", "-b", bind],
        "granian": [*granian, "sf_asgi:app"],
        "granian-rust-tasks": [*granian, "--task-impl", "rust", "sf_asgi:app"],
        "gunicorn-uvicorn-worker": [python, "-m", "gunicorn", "sf_asgi:app", "-w", "2", "-b", bind, "-k", WORKER],
        "daphne": [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "sf_asgi:app"],
    }


def instance_pids(log: str) -> list[int]:
    """The process ids of the instances a server's log says it started."""
    import re

    return [int(pid) for pid in re.findall(r"Instance \d+ \(pid (\d+)\) started", log)]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, waiting for its parent to reap it, does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def wait_until(condition: Callable[[], bool], limit: float = 5.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
