"""Noticing edits in the source folder (process isolation's reload)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from sf_asgi import _reload


def test_snapshot_sees_code_and_data_but_not_caches(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("x = 1")
    (tmp_path / "data.json").write_text("{}")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "index.cpython-311.pyc").write_bytes(b"")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("")
    names = {os.path.relpath(path, tmp_path) for path in _reload.snapshot(str(tmp_path))}
    assert names == {"index.py", "data.json", os.path.join("pkg", "mod.py")}


@pytest.mark.parametrize(
    ("before", "after", "edits"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, ["a"]),
        ({"a": 1}, {"a": 1, "b": 1}, ["b"]),
        ({"a": 1, "b": 1}, {"b": 1}, ["a"]),
    ],
)
def test_changed_lists_added_removed_and_modified(
    before: dict[str, int], after: dict[str, int], edits: list[str]
) -> None:
    assert _reload.changed(before, after) == edits


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_watch_reports_an_edit_within_half_a_second(tmp_path: Path, anyio_backend: str) -> None:
    code = tmp_path / "index.py"
    code.write_text("x = 1")
    seen: list[list[str]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(_reload.watch, str(tmp_path), seen.append)
            await anyio.sleep(0.3)
            code.write_text("x = 2")
            os.utime(code, ns=(1, 1))  # a different mtime even on a coarse clock
            started = anyio.current_time()
            while not seen:
                await anyio.sleep(0.02)
            group.cancel_scope.cancel()
    assert seen == [[str(code)]]
    assert anyio.current_time() - started < 0.6
