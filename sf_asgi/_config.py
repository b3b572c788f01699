"""One settings object: each field is a keyword argument and an `SF_*` variable (SPEC §8)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection, Mapping
from typing import Any

ENV_PREFIX = "SF_"

# The platform allows at most 10 minutes, or 1 hour for long-lived functions (SPEC §6).
MAX_TIMEOUT = 3600.0


class ConfigError(ValueError):
    """A setting has a value sf_asgi cannot use; the message names the fix."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


# Flags whose names are shorter than their fields'; every other field is --field-name.
FLAGS = {"source_dir": "--source", "memory_limit_mb": "--memory"}


def flag_for(field: str) -> str:
    return FLAGS.get(field, "--" + field.replace("_", "-"))


# How the user ran sf_asgi, which decides how a message names a setting: the `sf-asgi` command
# sets this variable for its server processes; any argument to FunctionApp() means code.
VIA_VARIABLE = "_SF_ASGI_VIA"
_SETTING = re.compile(r"(\bset )?\bSF_([A-Z_]+)\b(=)?")


def in_words(message: str, via: str, keep: Collection[str] = ()) -> str:
    """A message that names settings as SF_* variables, reworded for the way sf_asgi was run.

    `via` is "env" (`uvicorn sf_asgi:app`: unchanged), "cli" (`--source DIR`, `sf-asgi index.handler`)
    or "code" (`source_dir=...`, `handler=...`). Settings in `keep` were given as variables and
    stay named so.
    """
    if via == "env":
        return message

    def reword(match: re.Match[str]) -> str:
        verb, name, equals = match.group(1) or "", match.group(2).lower(), match.group(3) or ""
        if name not in Settings.field_names() or name in keep:
            return match.group()
        if via == "code":
            return f"{verb}{name}{equals}"
        if name == "handler":
            if equals:
                return f"{verb and 'run '}sf-asgi "
            return f"{verb and 'give '}the ENTRYPOINT"
        return f"{verb and 'pass '}{flag_for(name)}{' ' if equals else ''}"

    return _SETTING.sub(reword, message)


@dataclasses.dataclass(frozen=True)
class Settings:
    handler: str = dataclasses.field(
        default="", metadata={"help": "entry point: <file>.<function>, pkg.mod.function or module:attr"}
    )
    source_dir: str = dataclasses.field(
        default=".", metadata={"help": "the function's source folder, put first on sys.path"}
    )
    function_name: str = dataclasses.field(
        default="sf-asgi-function", metadata={"help": "context.function_name and invoked_function_arn"}
    )
    function_version: str = dataclasses.field(
        default="$latest", metadata={"help": "context.function_version and log_stream_name; the log's Version"}
    )
    log_group: str = dataclasses.field(default="default", metadata={"help": "context.log_group_name"})
    memory_limit_mb: int = dataclasses.field(default=128, metadata={"help": "context.memory_limit_in_mb"})
    timeout: float = dataclasses.field(
        default=10.0, metadata={"help": "seconds an invocation may run before a 504; 0 = no timeout"}
    )
    iam_token: str = dataclasses.field(default="", metadata={"help": "the IAM token handed out as context.token"})
    max_queue: int = dataclasses.field(
        default=0, metadata={"help": "requests that may wait for the instance before a 429; 0 = no cap"}
    )
    concurrency: int = dataclasses.field(
        default=1, metadata={"help": "invocations of one instance that may overlap (the platform runs 1 for Python)"}
    )
    isolation: str = dataclasses.field(
        default="process",
        metadata={
            "help": "process: each instance is a child process, killed at its timeout or memory limit; "
            "thread: one instance inside the server process (always so for a callable handler)"
        },
    )
    max_instances: int = dataclasses.field(
        default=10, metadata={"help": "the most instances at once (process isolation; the platform's quota is 10)"}
    )
    min_instances: int = dataclasses.field(
        default=1, metadata={"help": "instances started with the server and always kept (process isolation)"}
    )
    idle_timeout: float = dataclasses.field(
        default=60.0, metadata={"help": "seconds an instance above min-instances may sit idle before it stops"}
    )
    log_format: str = dataclasses.field(default="text", metadata={"help": "sf_asgi's own log lines: text or json"})
    log_level: str = dataclasses.field(
        default="info", metadata={"help": "sf_asgi's own log level; warning hides the START/END/REPORT lines"}
    )
    env_file: str = dataclasses.field(
        default="", metadata={"help": "the function's own environment variables (KEY=VALUE lines), set before import"}
    )
    timer: str = dataclasses.field(
        default="",
        metadata={
            "help": "a timer trigger: CRON[=PAYLOAD], the platform's six-field cron in UTC, e.g. '*/5 * ? * * *=ping' "
            "(repeat the flag for more; one a line in the variable)"
        },
    )
    # How the server runs (the sf-asgi CLI); the app itself only reads `reload`.
    host: str = dataclasses.field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = dataclasses.field(default=8080, metadata={"help": "port to listen on"})
    reload: bool = dataclasses.field(
        default=False,
        metadata={"help": "new instances on edits in the source folder; a broken import answers 502, not exit"},
    )
    workers: int = dataclasses.field(
        default=1, metadata={"help": "server processes, each with its own pool of instances"}
    )
    proxy_headers: bool = dataclasses.field(
        default=False, metadata={"help": "take the client address from X-Forwarded-For of trusted proxies"}
    )
    forwarded_allow_ips: str = dataclasses.field(
        default="127.0.0.1", metadata={"help": "comma-separated proxy addresses to trust, or *"}
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected: type = type(field.default)
            if expected is bool:
                ok = type(value) is bool
            elif isinstance(value, bool):  # never a number here
                ok = False
            else:  # an int is accepted where a float is expected
                ok = isinstance(value, expected) or (expected is float and type(value) is int)
            if not ok:
                raise ConfigError(
                    f"{env_name(field.name)} must be {_kind(expected)}, got {type(value).__name__} {value!r}; "
                    f"e.g. {env_name(field.name)}={_example(field.name)!r}"
                )
        if self.timeout < 0 or self.timeout > MAX_TIMEOUT:
            raise ConfigError(
                f"{env_name('timeout')}={self.timeout:g} is out of range: give seconds from 0 to 3600 "
                "(the platform allows 600, or 3600 for long-lived functions; 0 turns the timeout off)"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{env_name('port')} must be a port number from 0 to 65535, got {self.port}")
        for name in ("memory_limit_mb", "concurrency", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{env_name(name)} must be 1 or more, got {getattr(self, name)}")
        if self.isolation not in ("process", "thread"):
            raise ConfigError(f"{env_name('isolation')} must be 'process' or 'thread', got {self.isolation!r}")
        if self.max_instances < 1:
            raise ConfigError(f"{env_name('max_instances')} must be 1 or more, got {self.max_instances}")
        if not 0 <= self.min_instances <= self.max_instances:
            raise ConfigError(
                f"{env_name('min_instances')} must be from 0 to {env_name('max_instances')} "
                f"({self.max_instances}), got {self.min_instances}"
            )
        if self.idle_timeout <= 0:
            raise ConfigError(f"{env_name('idle_timeout')} must be more than 0 seconds, got {self.idle_timeout:g}")
        if self.max_queue < 0:
            raise ConfigError(f"{env_name('max_queue')} must be 0 (no cap) or more, got {self.max_queue}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(
                f"{env_name('log_level')} must be debug, info, warning, error or critical, got {self.log_level!r}"
            )
        if self.timer:
            from ._cron import parse_timers

            try:
                parse_timers(self.timer)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"{env_name('log_format')} must be 'text' or 'json', got {self.log_format!r}")

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def check_names(cls, given: Mapping[str, Any], caller: str) -> None:
        """TypeError naming the settings there are, for a mistyped keyword."""
        unknown = set(given) - cls.field_names()
        if unknown:
            names = ", ".join(sorted(cls.field_names()))
            raise TypeError(f"{caller} got unknown setting(s) {', '.join(sorted(unknown))}; the settings are: {names}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from keyword arguments, then `SF_*` variables, then defaults."""
        if environ is None:
            environ = os.environ
        cls.check_names(overrides, "Settings.from_env()")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in overrides:
                values[field.name] = overrides[field.name]
            elif env_name(field.name) in environ:
                values[field.name] = parse_value(field.name, type(field.default), environ[env_name(field.name)])
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as `SF_*` variables, for the server's worker and reload processes."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[env_name(field.name)] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _kind(expected: type) -> str:
    kinds = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return kinds.get(expected, expected.__name__)


def parse_value(name: str, expected: type, text: str) -> Any:
    """An `SF_*` variable's text as the setting's type; ConfigError naming the fix."""
    if expected is str:
        return text
    if expected is bool and text.strip().lower() in _TRUE | _FALSE:
        return text.strip().lower() in _TRUE
    try:
        if expected is bool:
            raise ValueError(text)
        return expected(text.strip())
    except ValueError:
        raise ConfigError(
            f"{env_name(name)}={text!r} is not {_kind(expected)}; e.g. {env_name(name)}={_example(name)}"
        ) from None


def _example(name: str) -> Any:
    return getattr(Settings, name)


# The platform's rules for a version's environment (SPEC §8).
ENV_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
ENV_TOTAL_LIMIT = 4096


def read_env_file(path: str) -> dict[str, str]:
    """The function's own variables from a `KEY=VALUE` file, checked as the platform checks them."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the env file {path}: {exc.strerror}; check SF_ENV_FILE / --env-file") from None
    variables: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export ") :].lstrip()
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep:
            raise ConfigError(f"{path}:{number}: expected NAME=value, got {line!r}")
        if not ENV_NAME.fullmatch(name):
            raise ConfigError(
                f"{path}:{number}: {name!r} is not a name the platform accepts: use letters, digits and _, "
                "starting with a letter"
            )
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[name] = value
    total = sum(len(k) + len(v) for k, v in variables.items())
    if total > ENV_TOTAL_LIMIT:
        raise ConfigError(
            f"{path}: the variables take {total} bytes, over the platform's limit of 4 KB "
            f"({ENV_TOTAL_LIMIT} bytes for all names and values together)"
        )
    return variables
