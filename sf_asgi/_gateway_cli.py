"""`sf-asgi gateway SPEC`: the whole API on localhost, each function with its own instances."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._cli import _Parser
from ._config import ConfigError
from ._gateway import read_yaml, settings_of
from ._gateway_spec import SpecError
from ._loader import LoadError


def _pair(flag: str) -> Any:
    def parse(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{flag} takes NAME=VALUE, got {text!r}")
        return name, value

    return parse


_PAIRS = (
    (
        "--function",
        "ID=DIR/FILE.FUNCTION",
        "a function_id of the spec and its local entry point, relative to the spec's folder",
    ),
    ("--var", "NAME=VALUE", "a spec variable"),
    (
        "--bucket",
        "NAME=DIR",
        "serve an object_storage integration's bucket from a local folder, relative to the spec's folder",
    ),
    (
        "--container",
        "ID=URL",
        "send a serverless_containers integration's requests to a local URL, e.g. abc=http://127.0.0.1:9000",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sf-asgi gateway",
        description="Serve a Yandex API Gateway spec with every function it routes to, as the gateway calls them. "
        "E.g. sf-asgi gateway openapi.yaml --function d4e1abc=functions/todo/index.handler",
    )
    parser.add_argument("spec", metavar="SPEC", help="the gateway's OpenAPI spec (YAML)")
    for flag, metavar, help_text in _PAIRS:  # repeatable NAME=VALUE flags
        parser.add_argument(flag, action="append", type=_pair(flag), default=[], metavar=metavar, help=help_text)
    parser.add_argument(
        "--functions", metavar="FILE", help="YAML: each function_id with its source, handler and settings"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument("--reload", action="store_true", help="new instances of a function on edits in its folder")
    return parser


def _functions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    functions: dict[str, Any] = {}
    if args.functions:
        loaded = read_yaml(args.functions, f"--functions {args.functions}", "give the functions file's path") or {}
        if not isinstance(loaded, dict):
            parser.error(f"--functions {args.functions}: map each function_id to its source and handler")
        folder = os.path.relpath(
            os.path.dirname(os.path.abspath(args.functions)), os.path.dirname(os.path.abspath(args.spec))
        )
        for function_id, target in loaded.items():
            if isinstance(target, dict):
                target = {**target, "source": os.path.join(folder, str(target.get("source", ".")))}
            functions[str(function_id)] = target
    functions.update(dict(args.function))
    if args.reload:
        functions = {fid: {**settings_of(target), "reload": True} for fid, target in functions.items()}
    return functions


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    from ._gateway import GatewayApp

    try:
        app = GatewayApp(
            args.spec,
            functions=_functions(parser, args),
            variables=dict(args.var),
            buckets=dict(args.bucket),
            containers=dict(args.container),
        )
    except (SpecError, ConfigError, LoadError, TypeError) as exc:
        parser.error(str(exc))
    import uvicorn

    config = uvicorn.Config(app, host=args.host, port=args.port, lifespan="on")
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
