"""`sf-asgi invoke` (one invocation on a fresh instance) and `sf-asgi generate-event` (a trigger's event).

Like `sam local invoke`: the result is the only thing on stdout, the function's log (START,
END, REPORT, what it printed) goes to stderr, and the exit status says how it went: 0 done,
1 an error in the function (the platform's error JSON is on stdout), 2 a usage error.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import _triggers
from ._cli import SERVER_ONLY, _Parser, add_settings, settings_from
from ._config import ConfigError
from ._event import build_event, new_request_ids
from ._response import HTTPResponse

EXIT_FUNCTION_ERROR = 1
EXIT_USAGE = 2


def main(argv: Sequence[str]) -> int:
    command, args = argv[0], list(argv[1:])
    if command == "generate-event":
        return _generate(args)
    return _invoke(args)


def _trigger_arguments(parser: argparse.ArgumentParser, kind_flag: bool) -> None:
    kinds = ", ".join(_triggers.BUILDERS)
    if kind_flag:
        parser.add_argument("--trigger", metavar="KIND", help=f"call as this trigger does: {kinds}")
    else:
        parser.add_argument("kind", metavar="KIND", help=kinds)
    parser.add_argument(
        "--payload",
        action="append",
        metavar="TEXT",
        help="the event's main value (a timer's payload, a message's body, an object's key, an IoT payload, "
        "a JSON record, a log message, a budget's amount, a mail's body); repeat it for a batch",
    )


def _trigger_event(parser: argparse.ArgumentParser, kind: str, payloads: list[str] | None) -> Any:
    name = kind.replace("-", "_")
    if name not in _triggers.BUILDERS:
        parser.error(f"unknown trigger kind {kind!r}: use one of {', '.join(_triggers.BUILDERS)}")
    if not payloads:
        return _triggers.make(name)
    field = _triggers.MAIN_FIELD[name]
    values: list[Any] = payloads
    if name == "data_streams":
        try:
            values = [json.loads(text) for text in payloads]
        except ValueError as exc:
            parser.error(f"--payload for data_streams is a JSON record: {exc}")
        return _triggers.make(name, records=values)
    if name == "budget":
        try:
            return _triggers.make(name, amount=float(payloads[-1]))
        except ValueError:
            parser.error(f"--payload for budget is the amount, a number; got {payloads[-1]!r}")
    if name == "mail":  # one mail: its body
        return _triggers.make(name, body=payloads[-1])
    return _triggers.make(name, **{field: values if len(values) > 1 else values[0]})


def _generate(argv: list[str]) -> int:
    parser = _Parser(
        prog="sf-asgi generate-event",
        description="Print the event a trigger calls a function with, e.g. sf-asgi generate-event message_queue "
        "--payload hello > event.json",
    )
    _trigger_arguments(parser, kind_flag=False)
    args = parser.parse_args(argv)
    print(json.dumps(_trigger_event(parser, args.kind, args.payload), indent=2, ensure_ascii=False))
    return 0


def _invoke(argv: list[str]) -> int:
    parser = _Parser(
        prog="sf-asgi invoke",
        description="Run one invocation on a fresh instance (its cold start included): the result on stdout, "
        "the function's log on stderr. E.g. sf-asgi invoke index.handler --event event.json",
    )
    parser.add_argument("--event", metavar="FILE", help="the event as JSON; - reads it from stdin")
    _trigger_arguments(parser, kind_flag=True)
    parser.add_argument(
        "--raw",
        action="store_true",
        help="pass the event as it is and print the result's JSON, as ?integration=raw and triggers do",
    )
    add_settings(parser, skip=SERVER_ONLY)
    args = parser.parse_args(argv)
    if args.event and args.trigger:
        parser.error("give --event FILE or --trigger KIND, not both")
    settings = settings_from(parser, vars(args))
    raw = args.raw or bool(args.trigger)
    if args.trigger:
        event = _trigger_event(parser, args.trigger, args.payload)
    elif args.event:
        event = _read_event(parser, args.event)
    else:
        event = {} if raw else _get_event()
    return _run(settings.handler, {k: v for k, v in vars(args).items() if v is not None}, event, raw)


def _read_event(parser: argparse.ArgumentParser, source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        parser.error(f"--event {source}: {exc.strerror}; give a JSON file, or - for stdin")
    try:
        return json.loads(text)
    except ValueError as exc:
        where = "stdin" if source == "-" else source
        parser.error(f"--event {where} is not JSON ({exc}); sf-asgi generate-event KIND writes one")


def _get_event() -> Any:
    """Without --event: the HTTP event of `GET /`, as a plain client would send it."""
    request_id, trace_id = new_request_ids()
    headers = [(b"host", b"localhost"), (b"user-agent", b"sf-asgi-invoke")]
    return build_event("GET", headers, b"", b"", ("127.0.0.1", 0), request_id, trace_id, time.time())


def _run(handler: str, given: dict[str, Any], event: Any, raw: bool) -> int:
    import anyio

    from ._app import FunctionApp

    settings = {
        name: value
        for name, value in given.items()
        if name not in ("event", "trigger", "payload", "raw", "handler") and name not in SERVER_ONLY
    }
    settings.setdefault("max_instances", 1)
    settings.setdefault("min_instances", 0)  # the one invocation starts it: its cold start is in the REPORT
    stdout = sys.stdout
    sys.stdout = sys.stderr  # the function's log and sf_asgi's lines; the result alone goes to stdout
    try:
        app = FunctionApp(handler, **settings)

        async def once() -> HTTPResponse:
            try:
                return (await app.invoke_event(event, raw))[1]
            finally:
                await app.shutdown()

        try:
            response = anyio.run(once)
        except ConfigError as exc:
            print(f"sf-asgi invoke: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    finally:
        sys.stdout.flush()
        sys.stdout = stdout
    if response.error is not None:
        print(json.dumps(response.error, ensure_ascii=False))
        return EXIT_FUNCTION_ERROR
    print(response.body.decode("utf-8", "replace") if raw else json.dumps(_as_result(response), ensure_ascii=False))
    return 0


def _as_result(response: HTTPResponse) -> dict[str, Any]:
    """The response a client would get, written as a handler's result: status, headers, body."""
    headers: dict[str, list[str]] = {}
    for name, value in response.headers:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("utf-8", "replace"))
    result: dict[str, Any] = {"statusCode": response.status}
    result["headers"] = {name: values[-1] for name, values in headers.items()}
    if any(len(values) > 1 for values in headers.values()):
        result["multiValueHeaders"] = headers
    try:
        result["body"], result["isBase64Encoded"] = response.body.decode("utf-8"), False
    except UnicodeDecodeError:
        result["body"], result["isBase64Encoded"] = base64.b64encode(response.body).decode(), True
    return result
