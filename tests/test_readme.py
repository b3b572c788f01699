"""The README's code blocks, run as written: each fence is marked runnable or an excerpt.

A marker is an HTML comment on the line before the fence, `<!-- readme-test: KIND [ARG] [@clone] -->`:

- `file NAME`: the block is written to NAME; `python NAME` and `pytest NAME` also run it;
- `sh`: the block runs in bash (`-e -o pipefail`), bounded in time;
- `server PORT [PATH]`: the block starts a server; it must answer GET PATH with a 200;
- `excerpt (why)`: output, a synopsis or a placeholder, not run.

Blocks run in order, in a fresh folder a user would have (their function's), or with
`@clone` in a folder laid out as a clone (demo/, scripts/, .venv/ with the installed
package), against the package this test runs with.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .servers import ROOT, wait_for_port

README = (ROOT / "README.md").read_text()
MARKER = re.compile(r"<!-- readme-test: (\w+)((?: [^ (@][^ ]*)*)( @clone)?(?: \(.*\))? -->")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)
PORTS = (8000, 8080)  # the ones the README's servers listen on


@dataclass
class Block:
    line: int
    kind: str
    args: list[str]
    clone: bool
    text: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.kind} {' '.join(self.args)})"


def blocks() -> list[Block]:
    found = []
    for fence in FENCE.finditer(README):
        line = README.count("\n", 0, fence.start()) + 1
        before = README[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.fullmatch(before)
        if marker is None:
            raise AssertionError(f"README.md:{line}: mark the block runnable or an excerpt (see {__file__})")
        found.append(Block(line, marker.group(1), marker.group(2).split(), bool(marker.group(3)), fence.group(2)))
    return found


def test_every_block_is_marked_with_a_known_kind() -> None:
    kinds = {block.kind for block in blocks()}
    assert kinds <= {"file", "python", "pytest", "sh", "server", "excerpt"}, kinds
    assert {"sh", "server", "python", "pytest"} <= kinds  # the runnable ones are really run


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, Path]]:
    """The user's fresh folder (False) and a clone's layout (True), both using this interpreter's install."""
    fresh = tmp_path_factory.mktemp("readme-user")
    clone = tmp_path_factory.mktemp("readme-clone")
    shutil.copytree(ROOT / "demo", clone / "demo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", clone / "scripts")
    shutil.copy(ROOT / "pyproject.toml", clone / "pyproject.toml")
    # .venv is this test's environment, marked current for scripts/dev-env (so it installs nothing).
    (clone / ".venv").mkdir()
    (clone / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    stamp = subprocess.run(
        "cksum < pyproject.toml", shell=True, cwd=clone, capture_output=True, text=True, check=True
    ).stdout
    (clone / ".venv" / ".sf-asgi-installed").write_text(stamp)
    yield {False: fresh, True: clone}


def _environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SF_", "_SF_", "PYTEST_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONUNBUFFERED", None)
    return env


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_for_ports_free(limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not all(_port_free(port) for port in PORTS):
        assert time.monotonic() < deadline, f"a port of {PORTS} is still taken"
        time.sleep(0.1)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """End what the block started (its process group), SIGTERM first, as a user's Ctrl+C would."""
    with _suppress_lookup():
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with _suppress_lookup():
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with _suppress_lookup():
        os.killpg(proc.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return kind is ProcessLookupError


def _run(block: Block, folder: Path) -> str:
    env = _environment()
    if block.kind == "file":
        (folder / block.args[0]).write_text(block.text)
        return ""
    if block.kind in ("python", "pytest"):
        (folder / block.args[0]).write_text(block.text)
        command = [sys.executable, block.args[0]]
        if block.kind == "pytest":
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", block.args[0]]
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=90, check=False)
        assert result.returncode == 0, f"{block} failed:\n{result.stdout}{result.stderr}"
        return result.stdout + result.stderr
    _wait_for_ports_free()
    log = folder / f"block-{block.line}.log"
    with open(log, "w") as out:
        if block.kind == "sh":
            script = ["bash", "-e", "-o", "pipefail", "-c", block.text]
        else:
            script = ["bash", "-c", block.text]
        proc = subprocess.Popen(
            script, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    try:
        if block.kind == "sh":
            code = proc.wait(120)
            assert code == 0, f"{block} exited {code}:\n{log.read_text()}"
        else:
            port = int(block.args[0])
            path = block.args[1] if len(block.args) > 1 else "/"
            wait_for_port(port, proc, limit=30)  # type: ignore[arg-type]
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert answer.status_code == 200, f"{block}: {answer.status_code} {answer.text}\n{log.read_text()}"
    finally:
        _stop_group(proc)
    return log.read_text()


def test_the_readme_runs_as_written(folders: dict[bool, Path]) -> None:
    ran = 0
    for block in blocks():
        if block.kind == "excerpt":
            continue
        output = _run(block, folders[block.clone])
        assert "Traceback" not in output, f"{block}:\n{output}"
        ran += 1
    assert ran >= 10
