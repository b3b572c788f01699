"""Run Yandex Cloud Functions Python handlers as ASGI apps, faithful to the platform."""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING, Any

__all__ = ["Context", "FunctionApp", "GatewayApp", "Settings", "__version__", "app"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._app import FunctionApp
    from ._config import Settings
    from ._context import Context
    from ._gateway import GatewayApp

    # `uvicorn sf_asgi:app`: configured from the SF_* variables when it starts.
    app: FunctionApp


def __getattr__(name: str) -> Any:
    # Inside a process instance, the public names are imported when first asked for.
    if name == "FunctionApp":
        from ._app import FunctionApp

        return FunctionApp
    if name == "Settings":
        from ._config import Settings

        return Settings
    if name == "GatewayApp":
        from ._gateway import GatewayApp

        return GatewayApp
    if name == "Context":
        from ._context import Context

        return Context
    if name == "app":
        from ._app import FunctionApp

        made = globals().setdefault("app", FunctionApp())  # one app, however many times it is asked for
        return made
    raise AttributeError(f"module 'sf_asgi' has no attribute {name!r}")


# Inside a process instance (`_runtime.py` says so) nothing of the front is imported: its cold
# start stays the interpreter's and the user's. Servers read `app` from the module itself, so
# everywhere else it is made now.
if not _os.environ.get("_SF_ASGI_INSTANCE"):
    from ._app import FunctionApp
    from ._config import Settings
    from ._context import Context

    app = FunctionApp()
