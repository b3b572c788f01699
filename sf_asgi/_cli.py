"""`sf-asgi ENTRYPOINT [options]`: a thin layer over uvicorn (SPEC §8)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._config import VIA_VARIABLE, ConfigError, Settings, env_name, flag_for, in_words, parse_value, read_env_file
from ._loader import LoadError, split_entrypoint

METAVARS = {
    "timeout": "S",
    "memory_limit_mb": "MB",
    "source_dir": "DIR",
    "env_file": "FILE",
    "port": "PORT",
    "iam_token": "T",
    "max_queue": "N",
    "concurrency": "N",
    "workers": "N",
    "isolation": "MODE",
    "max_instances": "N",
    "min_instances": "N",
    "idle_timeout": "S",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # A mistyped flag: name the one that was meant (argparse on 3.11 does not).
        if message.startswith("unrecognized arguments:"):
            known = [opt for action in self._actions for opt in action.option_strings]
            hints = []
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], known, n=1)
                if close:
                    hints.append(f"{word}: did you mean {close[0]}?")
            if hints:
                message = f"{message} ({'; '.join(hints)})"
        self.exit(2, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")


def _converter(field: dataclasses.Field[Any]) -> Any:
    expected = type(field.default)

    def convert(text: str) -> Any:
        try:
            return parse_value(field.name, expected, text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(in_words(str(exc), "cli")) from None

    convert.__name__ = expected.__name__
    return convert


# What only a server needs: `sf-asgi invoke` takes every other setting.
SERVER_ONLY = frozenset({"host", "port", "reload", "workers", "proxy_headers", "forwarded_allow_ips", "timer"})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sf-asgi",
        description="Serve a Yandex Cloud Functions handler(event, context) as the platform would, over HTTP. "
        "Also: sf-asgi invoke ENTRYPOINT (one invocation), sf-asgi generate-event KIND (a trigger's event).",
        epilog="Each option falls back to its SF_* variable, then to its default.\n"
        "Example: sf-asgi index.handler --reload",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"sf-asgi {__version__}")
    add_settings(parser)
    return parser


def add_settings(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> None:
    """A flag for every setting (but `skip`), each naming its SF_* variable."""
    for field in dataclasses.fields(Settings):
        if field.name in skip:
            continue
        help_text = f"{field.metadata['help']} [{env_name(field.name)}]"
        if field.name == "handler":
            parser.add_argument("handler", nargs="?", metavar="ENTRYPOINT", help=f"{help_text}, e.g. index.handler")
        elif field.name == "timer":  # repeatable: one trigger each
            parser.add_argument(
                "--timer", dest="timer", action="append", metavar="CRON[=PAYLOAD]", help=help_text, default=None
            )
        elif isinstance(field.default, bool):
            flag = flag_for(field.name)
            parser.add_argument(flag, dest=field.name, action="store_true", default=None, help=help_text)
        else:
            default = field.default if field.default != "" else "none"
            parser.add_argument(
                flag_for(field.name),
                dest=field.name,
                type=_converter(field),
                metavar=METAVARS.get(field.name, field.name.split("_")[-1].upper()),
                help=f"{help_text} (default: {default})",
            )


def resolve(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the command line, then SF_* variables, then defaults; exit 2 when they are wrong."""
    parser = build_parser()
    return settings_from(parser, vars(parser.parse_args(argv)))


def settings_from(parser: argparse.ArgumentParser, values: dict[str, Any]) -> Settings:
    """The parsed flags, then SF_* variables, then defaults, as Settings; exit 2 naming the fix."""
    given = {name: value for name, value in values.items() if value is not None and name in Settings.field_names()}
    if "timer" in given:
        given["timer"] = "\n".join(given["timer"])
    try:
        settings = Settings.from_env(**given)
        if not settings.handler:
            parser.error(f"name the handler: {parser.prog} <file>.<function>, e.g. {parser.prog} index.handler")
        split_entrypoint(settings.handler)
        if not os.path.isdir(settings.source_dir):
            raise ConfigError(
                f"SF_SOURCE_DIR={settings.source_dir}: no such folder for the entry point {settings.handler}; "
                "give the function's folder"
            )
        if settings.env_file:
            read_env_file(settings.env_file)  # wrong names or sizes stop here, before anything starts
    except (ConfigError, LoadError) as exc:
        from_env = {name for name in Settings.field_names() if name not in given and env_name(name) in os.environ}
        parser.error(in_words(str(exc), "cli", keep=from_env))
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("invoke", "generate-event"):
        from . import _oneshot

        sys.exit(_oneshot.main(args))
    if args and args[0] == "gateway":
        from . import _gateway_cli

        sys.exit(_gateway_cli.main(args[1:]))
    settings = resolve(args)
    import uvicorn

    # The worker and reload processes read their settings from these variables.
    os.environ.update(settings.to_env())  # with SF_RELOAD, the app itself writes no stale .pyc
    os.environ[VIA_VARIABLE] = "cli"  # their messages then name flags
    uvicorn_reload = settings.reload and settings.isolation == "thread"
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        proxy_headers=settings.proxy_headers,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        lifespan="on",
    )
    if settings.workers == 1 and not uvicorn_reload:
        server = _server(uvicorn.Config("sf_asgi:app", **options))
        # uvicorn re-raises the signals it caught once it has stopped; they are handled by now.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.run()
        if server.force_exit:  # a second signal: uvicorn skipped the lifespan shutdown, requests were dropped
            from . import app

            app.kill_instances()
            sys.exit(1)
        sys.exit(0)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "sf_asgi:app",
        # Process instances reload themselves, without restarting the server; thread mode needs uvicorn's.
        reload=uvicorn_reload,
        reload_dirs=[os.path.abspath(settings.source_dir)] if uvicorn_reload else None,
        workers=settings.workers if settings.workers > 1 else None,
        **options,
    )


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


def _server(config: Any) -> Any:
    """uvicorn's server, where a second SIGTERM forces the exit as a second SIGINT does."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGTERM:
                self.force_exit = True
            super().handle_exit(sig, frame)

    return Server(config)
