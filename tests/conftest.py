from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sf_asgi import FunctionApp
from sf_asgi.testing import _lifespan

# In-process tests read sf_asgi's records with caplog: a handler of the host's (this one) keeps
# sf_asgi from writing them to stdout itself (see setup_logging), so they reach pytest's handlers.
logging.getLogger("sf_asgi").addHandler(logging.NullHandler())
logging.getLogger("sf_asgi").propagate = True

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"event": event, "context": vars(context)})}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No SF_* variable of the developer's leaks in; sys.path and the test functions' modules are put back."""
    for name in list(os.environ):
        if name.startswith("SF_"):
            monkeypatch.delenv(name)
    path = sys.path[:]
    yield
    sys.path[:] = path
    base = str(tmp_path_factory.getbasetemp())
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(base):
            del sys.modules[name]


@pytest.fixture
def write_function(tmp_path: Path) -> Callable[..., Path]:
    """Write a function's source folder: write_function(code, name="index.py", **more_files)."""

    def write(code: str, name: str = "index.py", **files: str) -> Path:
        (tmp_path / name).write_text(textwrap.dedent(code))
        for file_name, text in files.items():
            (tmp_path / file_name).write_text(textwrap.dedent(text))
        return tmp_path

    return write


class _Client(httpx.AsyncClient):
    """An in-process client that shuts the app down when the block ends, so no instance outlives a test."""

    def __init__(self, app: Any, client_addr: tuple[str, int]) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app, client=client_addr), base_url="http://testserver")
        self.app = app

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            if isinstance(self.app, FunctionApp):
                await self.app.shutdown()
        finally:
            await super().__aexit__(*exc_info)


def client(app: Any, client_addr: tuple[str, int] = ("127.0.0.1", 40000)) -> httpx.AsyncClient:
    """An httpx client that talks to `app` in this process; no lifespan, as for a mount that does not forward it."""
    return _Client(app, client_addr)


def echo_app(**settings: Any) -> FunctionApp:
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": json.dumps({"event": event, "context": vars(context)})}

    return FunctionApp(handler, **settings)


def returning(result: Any) -> FunctionApp:
    """An app whose handler returns `result` (called when it is callable)."""

    def handler(event: Any, context: Any) -> Any:
        return result() if callable(result) else result

    return FunctionApp(handler)


# Run an ASGI app's lifespan around a block, as a server would.
running = _lifespan
