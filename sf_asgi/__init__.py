"""Run Yandex Cloud Functions Python handlers as ASGI apps, faithful to the platform."""

from __future__ import annotations

from ._app import FunctionApp
from ._config import Settings
from ._context import Context

__all__ = ["Context", "FunctionApp", "Settings", "__version__", "app"]

__version__ = "0.1.0"

# `uvicorn sf_asgi:app`: configured from the SF_* variables when it starts.
app = FunctionApp()
