"""A Starlette app with its own routes and middleware, and the echo function mounted at /fn.

cd demo && ../.venv/bin/uvicorn host_app:app --port 8000
curl localhost:8000/health          # the host's own route
curl 'localhost:8000/fn/?x=1'       # the function, with the platform's event (/fn redirects to /fn/)
"""

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sf_asgi import FunctionApp

echo = FunctionApp("index.handler", source_dir=str(Path(__file__).parent), function_name="echo")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


class PoweredBy:
    """The host's own middleware: it wraps the mounted function's responses too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-powered-by", b"host-app")]
            await send(message)

        await self.app(scope, receive, send_with_header)


app = Starlette(
    routes=[Route("/health", health), Mount("/fn", app=echo)],
    middleware=[Middleware(PoweredBy)],
    # Starlette does not pass lifespan on to mounted apps: run the function's cold start here.
    lifespan=echo.lifespan,
)
