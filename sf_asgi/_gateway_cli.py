"""`sf-asgi gateway SPEC`: the whole API on localhost, each function with its own instances."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._cli import _Parser
from ._config import ConfigError
from ._gateway_spec import SpecError
from ._loader import LoadError


def _pair(flag: str) -> Any:
    def parse(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{flag} takes NAME=VALUE, got {text!r}")
        return name, value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sf-asgi gateway",
        description="Serve a Yandex API Gateway spec with every function it routes to, as the gateway calls them. "
        "E.g. sf-asgi gateway openapi.yaml --function d4e1abc=functions/todo/index.handler",
    )
    parser.add_argument("spec", metavar="SPEC", help="the gateway's OpenAPI spec (YAML)")
    parser.add_argument(
        "--function",
        action="append",
        type=_pair("--function"),
        default=[],
        metavar="ID=DIR/FILE.FUNCTION",
        help="a function_id of the spec and its local entry point, relative to the spec's folder",
    )
    parser.add_argument(
        "--functions", metavar="FILE", help="YAML: each function_id with its source, handler and settings"
    )
    parser.add_argument(
        "--var", action="append", type=_pair("--var"), default=[], metavar="NAME=VALUE", help="a spec variable"
    )
    parser.add_argument(
        "--bucket",
        action="append",
        type=_pair("--bucket"),
        default=[],
        metavar="NAME=DIR",
        help="serve an object_storage integration's bucket from a local folder, relative to the spec's folder",
    )
    parser.add_argument(
        "--container",
        action="append",
        type=_pair("--container"),
        default=[],
        metavar="ID=URL",
        help="send a serverless_containers integration's requests to a local URL, e.g. abc=http://127.0.0.1:9000",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument("--reload", action="store_true", help="new instances of a function on edits in its folder")
    return parser


def _functions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    functions: dict[str, Any] = {}
    if args.functions:
        import yaml

        try:
            with open(args.functions, encoding="utf-8") as file:
                loaded = yaml.safe_load(file) or {}
        except OSError as exc:
            parser.error(f"--functions {args.functions}: {exc.strerror}")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            parser.error(f"--functions {args.functions}: {where}not valid YAML: {getattr(exc, 'problem', None) or exc}")
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
        functions = {
            fid: ({**t, "reload": True} if isinstance(t, dict) else _with_reload(t)) for fid, t in functions.items()
        }
    return functions


def _with_reload(target: str) -> dict[str, Any]:
    folder, _, entry = target.rpartition("/")
    return {"source": folder or ".", "handler": entry, "reload": True}


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
