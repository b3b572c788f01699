"""Loading the handler (SPEC §1)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sf_asgi._loader import LoadError, load_handler, split_entrypoint


@pytest.mark.parametrize(
    ("entrypoint", "parts"),
    [
        ("index.handler", ("index", "handler")),
        ("pkg.mod.handler", ("pkg.mod", "handler")),
        ("pkg.mod:handler", ("pkg.mod", "handler")),
        ("index:handler", ("index", "handler")),
        ("  index.handler ", ("index", "handler")),
    ],
)
def test_split_entrypoint(entrypoint: str, parts: tuple[str, str]) -> None:
    assert split_entrypoint(entrypoint) == parts


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("", "No handler is set"),
        ("index", "is not <file>.<function>"),
        ("index.", "is not <file>.<function>"),
        (".handler", "is not <file>.<function>"),
        ("index.py", "names a file, not a function: use e.g. index.handler"),
        ("index.py.handler", "leave out '.py'"),
        ("my-func.handler", "not an importable module name"),
        ("index.handler()", "is not <file>.<function>"),
    ],
)
def test_bad_entrypoints_name_the_fix(entrypoint: str, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        split_entrypoint(entrypoint)


def test_loads_from_the_source_folder_first(write_function: Callable[..., Path]) -> None:
    folder = write_function("def handler(event, context):\n    return 'mine'\n", name="json_tools.py")
    handler = load_handler("json_tools.handler", str(folder))
    assert handler({}, None) == "mine"
    assert sys.path[0] == str(folder)


def test_dotted_module_path(write_function: Callable[..., Path]) -> None:
    folder = write_function("", name="placeholder.py")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "mod.py").write_text("def handler(e, c):\n    return 'deep'\n")
    assert load_handler("pkg.mod.handler", str(folder))({}, None) == "deep"
    assert load_handler("pkg.mod:handler", str(folder))({}, None) == "deep"


def test_missing_file_lists_the_py_files(write_function: Callable[..., Path]) -> None:
    folder = write_function("x = 1\n", name="main.py", **{"util.py": ""})
    with pytest.raises(LoadError) as info:
        load_handler("index.handler", str(folder))
    message = str(info.value)
    assert f"No index.py in {folder}" in message
    assert "main.py, util.py" in message
    assert "SF_SOURCE_DIR" in message
    assert info.value.cause is None


def test_a_module_elsewhere_on_sys_path_is_not_taken(write_function: Callable[..., Path], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "handler_mod.py").write_text("def handler(e, c):\n    return 'wrong one'\n")
    sys.path.append(str(elsewhere))
    folder = write_function("x = 1\n", name="main.py")
    with pytest.raises(LoadError, match="No handler_mod.py in"):
        load_handler("handler_mod.handler", str(folder))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist: set SF_SOURCE_DIR"):
        load_handler("index.handler", str(tmp_path / "nope"))


def test_missing_attribute_lists_the_callables(write_function: Callable[..., Path]) -> None:
    folder = write_function(
        """
        import json
        from os.path import join
        CONSTANT = 1
        def handler(event, context): pass
        def helper(): pass
        class Thing: pass
        """
    )
    with pytest.raises(LoadError) as info:
        load_handler("index.handlr", str(folder))
    message = str(info.value)
    assert "has no 'handlr' (entry point index.handlr): callables defined there: Thing, handler, helper;" in message


def test_not_callable(write_function: Callable[..., Path]) -> None:
    folder = write_function("handler = {'statusCode': 200}\n")
    with pytest.raises(LoadError, match="index.handler is a dict, not a function"):
        load_handler("index.handler", str(folder))


@pytest.mark.parametrize(
    ("code", "error_type", "shown"),
    [
        ("import not_installed_anywhere\n", "ModuleNotFoundError", "import not_installed_anywhere"),
        ("x = 1 / 0\n", "ZeroDivisionError", "x = 1 / 0"),
        ("def handler(event, context):\n    return (\n", "SyntaxError", "'(' was never closed"),
        ("raise SystemExit(3)\n", "SystemExit", "raise SystemExit(3)"),
    ],
)
def test_exception_inside_the_module_shows_its_traceback(
    write_function: Callable[..., Path], code: str, error_type: str, shown: str
) -> None:
    folder = write_function(code)
    with pytest.raises(LoadError) as info:
        load_handler("index.handler", str(folder))
    error = info.value
    assert str(error).startswith(f"Importing index failed: {error_type}")
    assert "\n" not in str(error)
    assert type(error.cause).__name__ == error_type
    report = error.report()
    assert shown in report
    assert str(folder / "index.py") in report
    assert "importlib" not in report and "sf_asgi" not in report


def test_standard_library_name_is_refused(write_function: Callable[..., Path]) -> None:
    folder = write_function("def handler(e, c): pass\n", name="json.py")
    with pytest.raises(LoadError, match="json.py has the name of a standard-library module"):
        load_handler("json.handler", str(folder))


def test_each_load_runs_the_module_again(write_function: Callable[..., Path]) -> None:
    folder = write_function(
        """
        import builtins
        builtins.sf_test_loads = getattr(builtins, "sf_test_loads", 0) + 1
        def handler(e, c): pass
        """
    )
    import builtins

    load_handler("index.handler", str(folder))
    load_handler("index.handler", str(folder))
    assert builtins.sf_test_loads == 2  # type: ignore[attr-defined]
    del builtins.sf_test_loads  # type: ignore[attr-defined]


def test_same_file_name_in_two_folders(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.py").write_text(f"def handler(e, c):\n    return {name!r}\n")
    assert load_handler("index.handler", str(tmp_path / "a"))({}, None) == "a"
    assert load_handler("index.handler", str(tmp_path / "b"))({}, None) == "b"
