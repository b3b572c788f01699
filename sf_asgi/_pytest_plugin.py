"""The `sf_client` fixture, registered through the `pytest11` entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import Client


@pytest.fixture
def sf_client() -> Iterator[Callable[..., Client]]:
    """A factory of started test clients: `client = sf_client("index.handler", source_dir="src")`.

    Each client has run its cold start; all are closed when the test ends.
    """
    from .testing import Client

    clients: list[Client] = []

    def make(handler: Any, **settings: Any) -> Client:
        __tracebackhide__ = True
        client = Client(handler, **settings)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)
