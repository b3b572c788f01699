"""scripts/dev-env, which scripts/demo and scripts/test source: the Python check and the install stamp."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .servers import ROOT


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout with the real dev-env and pyproject.toml, and a .venv whose python logs pip instead of running it."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "dev-env", tmp_path / "scripts" / "dev-env")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    _executable(
        tmp_path / ".venv" / "bin" / "python",
        f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$@" >> "{tmp_path}/pip.log"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n',
    )
    return tmp_path


def dev_env(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "scripts" / "dev-env")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_pip_runs_once_then_only_when_pyproject_changes(checkout: Path) -> None:
    first = dev_env(checkout)
    assert first.returncode == 0, first.stderr
    assert "Installing sf_asgi" in first.stderr  # the first run says what the wait is for
    assert (checkout / "pip.log").read_text().count("install") == 1
    second = dev_env(checkout)
    assert (second.returncode, second.stderr) == (0, "")  # current: no pip, so offline works too
    assert (checkout / "pip.log").read_text().count("install") == 1
    with open(checkout / "pyproject.toml", "a") as file:
        file.write("\n# a new dependency\n")
    third = dev_env(checkout)
    assert third.returncode == 0 and "Installing" in third.stderr
    assert (checkout / "pip.log").read_text().count("install") == 2


def test_a_failed_install_is_tried_again(checkout: Path) -> None:
    python = checkout / ".venv" / "bin" / "python"
    python.write_text(python.read_text().replace("exit 0", "exit 1"))
    assert dev_env(checkout).returncode != 0
    assert not (checkout / ".venv" / ".sf-asgi-installed").exists()


def test_an_old_python_gets_one_line_before_any_venv(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    old = tmp_path / "python3.10"
    _executable(
        old,
        "#!/bin/sh\nexec "
        + sys.executable
        + ' -c "import sys; sys.version_info = (3, 10, 12); exec(sys.argv[1])" "$2"\n',
    )
    result = dev_env(tmp_path, PYTHON=str(old))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"sf_asgi needs Python 3.11 or newer; {old} is 3.10.12: install 3.11+ or run with PYTHON=python3.11"
    ]
    assert not (tmp_path / ".venv").exists()


def test_the_extras_bring_what_their_use_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(dep.startswith("pytest") for dep in extras["testing"])  # it registers a pytest plugin
    assert any(dep.startswith("starlette") for dep in extras["starlette"])  # the README's mount
    assert project["license"] == "MIT" and (ROOT / "LICENSE").is_file()
    assert {"Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.13"} <= set(
        project["classifiers"]
    )
    assert (ROOT / "CHANGELOG.md").read_text().count("## [0.1.0]") == 1
