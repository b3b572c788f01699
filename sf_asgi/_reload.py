"""Reload in process isolation: notice edits in the source folder, retire the instances.

The server keeps running and listening; only the instances are replaced, so a reload
takes one cold start instead of a server restart. Edits are noticed by comparing the
files' modification times every quarter second: a function's folder is small, and
this needs no file-watching library and behaves the same on every OS.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import anyio

logger = logging.getLogger("sf_asgi")

INTERVAL = 0.25  # seconds
_SKIP_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache"})
# Code and the files code reads at import [choice]: not logs or output a run writes into the folder
# (`sf-asgi ... > out.txt` must not reload forever); the platform's code folder is read-only anyway.
WATCHED_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".html", ".j2", ".jinja", ".sql")


def snapshot(folder: str) -> dict[str, int]:
    """Every file under `folder` that an edit would matter for, with its modification time."""
    found: dict[str, int] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        for name in files:
            if not name.endswith(WATCHED_SUFFIXES) or name.startswith("."):
                continue
            path = os.path.join(root, name)
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:  # deleted while walking
                continue
    return found


def changed(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The files added, removed or modified between two snapshots."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


async def watch(folder: str, on_change: Callable[[list[str]], None]) -> None:
    """Call `on_change(paths)` after each edit under `folder`, until cancelled."""
    before = snapshot(folder)
    while True:
        await anyio.sleep(INTERVAL)
        after = await anyio.to_thread.run_sync(snapshot, folder)
        edits = changed(before, after)
        if edits:
            before = after
            on_change(edits)
