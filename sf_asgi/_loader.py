"""Find and import the user's handler (SPEC §1)."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

from ._types import Handler


class LoadError(Exception):
    """The handler could not be loaded.

    `str()` is one line that names the fix; `cause` is the exception the user's own
    module raised while it was imported, if that is what went wrong.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    def report(self) -> str:
        """The one-line cause, then the user's traceback when their code raised."""
        if self.cause is None:
            return str(self)
        frames = traceback.format_list(user_frames(self.cause))
        trace = "".join(["Traceback (most recent call last):\n", *frames, *traceback.format_exception_only(self.cause)])
        return f"{self}\n{trace.rstrip()}"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_IMPORTLIB_DIR = os.path.dirname(importlib.__file__) + os.sep
# asyncio.run's own frames, above an async handler's (not imported for it: an instance may not need it).
_ASYNCIO_DIR = os.path.join(os.path.dirname(os.__file__), "asyncio") + os.sep


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of a traceback that belong to the user, without sf_asgi's or the import system's."""
    return [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith((_PACKAGE_DIR, _IMPORTLIB_DIR, _ASYNCIO_DIR, "<frozen importlib"))
    ]


def split_entrypoint(entrypoint: str) -> tuple[str, str]:
    """`index.handler` / `pkg.mod.handler` / `pkg.mod:handler` -> (module, attribute)."""
    entrypoint = entrypoint.strip()
    if not entrypoint:
        raise LoadError(
            "No handler is set: name it as <file>.<function>, e.g. SF_HANDLER=index.handler for handler() in index.py"
        )
    # uvicorn's `module:attr` is accepted too [choice]; the platform form splits on the last dot.
    module, sep, attr = entrypoint.rpartition(":") if ":" in entrypoint else entrypoint.rpartition(".")
    if not sep or not module or not attr or not attr.isidentifier():
        raise LoadError(
            f"Entry point {entrypoint!r} is not <file>.<function>: use e.g. index.handler for handler() in index.py"
        )
    if attr == "py" and sep == ".":
        raise LoadError(f"Entry point {entrypoint!r} names a file, not a function: use e.g. {module}.handler")
    if module.endswith(".py"):
        raise LoadError(f"Entry point {entrypoint!r}: leave out '.py', e.g. {module[:-3]}.{attr}")
    if not all(part.isidentifier() for part in module.split(".")):
        raise LoadError(
            f"Entry point {entrypoint!r}: {module!r} is not an importable module name "
            "(the platform wants a file name without dots or dashes)"
        )
    return module, attr


def check_source_dir(entrypoint: str, source_dir: str) -> str:
    """The source folder as an absolute path; LoadError naming the fix if it is not a folder."""
    folder = os.path.abspath(source_dir)
    if not os.path.isdir(folder):
        raise LoadError(
            f"Source folder {folder} of the entry point {entrypoint} does not exist: "
            "set SF_SOURCE_DIR to the function's folder"
        )
    return folder


def load_handler(entrypoint: str, source_dir: str) -> Handler:
    """Import the handler's module once and return its callable."""
    module_name, attr = split_entrypoint(entrypoint)
    folder = check_source_dir(entrypoint, source_dir)
    # The platform runs code from the function's root folder, ahead of everything else.
    if not sys.path or sys.path[0] != folder:
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names and os.path.exists(os.path.join(folder, top + ".py")):
        raise LoadError(
            f"{top}.py has the name of a standard-library module, which Python may import instead of "
            "your file (on the platform too): rename the file and the entry point"
        )
    # The file must be in the function's folder, as on the platform: never one found elsewhere on sys.path.
    relative = os.path.join(folder, *module_name.split("."))
    if not (os.path.isfile(relative + ".py") or os.path.isfile(os.path.join(relative, "__init__.py"))):
        raise LoadError(_not_found(module_name, attr, folder))
    # Each instance runs the module's code itself (its own cold start, its own globals),
    # even when another instance in this process imported a file of the same name.
    sys.modules.pop(module_name, None)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Missing module file vs. a missing import *inside* the user's module.
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise LoadError(_not_found(module_name, attr, folder)) from None
        raise LoadError(f"Importing {module_name} failed: {_one_line(exc)}", exc) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise LoadError(f"Importing {module_name} failed: {_one_line(exc)}", exc) from None
    try:
        handler = getattr(module, attr)
    except AttributeError:
        found = sorted(
            name
            for name, value in vars(module).items()
            if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
        )
        where = getattr(module, "__file__", None) or module_name
        raise LoadError(
            f"{where} has no {attr!r} (entry point {module_name}.{attr}): callables defined there: "
            f"{', '.join(found) or 'none'}; set SF_HANDLER={module_name}.<one of them>"
        ) from None
    if not callable(handler):
        raise LoadError(
            f"{module_name}.{attr} is a {type(handler).__name__}, not a function: "
            "set SF_HANDLER to a function handler(event, context)"
        )
    return handler  # type: ignore[no-any-return]


def _not_found(module_name: str, attr: str, folder: str) -> str:
    files = sorted(p.stem for p in Path(folder).glob("*.py") if p.is_file())
    listing = ", ".join(f + ".py" for f in files[:20]) if files else "no .py files"
    file = module_name.replace(".", os.sep) + ".py"
    return (
        f"No {file} in {folder} for the entry point {module_name}.{attr} (it has: {listing}): "
        "run from the function's folder or set SF_SOURCE_DIR, or fix SF_HANDLER"
    )


def _one_line(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(exc)).strip().splitlines()
    return text[-1] if text else type(exc).__name__
