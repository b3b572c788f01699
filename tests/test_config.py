"""Settings: keyword arguments, SF_* variables, defaults (SPEC §8)."""

from __future__ import annotations

import dataclasses

import pytest

from sf_asgi import FunctionApp, Settings
from sf_asgi._config import ConfigError, env_name, in_words


def test_defaults() -> None:
    settings = Settings()
    assert (settings.source_dir, settings.memory_limit_mb, settings.timeout) == (".", 128, 10.0)
    assert (settings.max_queue, settings.concurrency, settings.iam_token) == (0, 1, "")


def test_every_field_has_an_env_variable_and_help() -> None:
    for field in dataclasses.fields(Settings):
        assert env_name(field.name) == "SF_" + field.name.upper()
        assert field.metadata["help"]
    assert {env_name(f.name) for f in dataclasses.fields(Settings)} >= {
        "SF_HANDLER", "SF_SOURCE_DIR", "SF_FUNCTION_NAME", "SF_FUNCTION_VERSION", "SF_MEMORY_LIMIT_MB",
        "SF_TIMEOUT", "SF_IAM_TOKEN", "SF_MAX_QUEUE", "SF_CONCURRENCY",
    }  # fmt: skip


def test_from_env_reads_and_converts() -> None:
    env = {
        "SF_HANDLER": "main.handler",
        "SF_SOURCE_DIR": "/srv/fn",
        "SF_FUNCTION_NAME": "d4e",
        "SF_FUNCTION_VERSION": "v1",
        "SF_LOG_GROUP": "g",
        "SF_MEMORY_LIMIT_MB": "256",
        "SF_TIMEOUT": "2.5",
        "SF_IAM_TOKEN": "t",
        "SF_MAX_QUEUE": "4",
        "SF_CONCURRENCY": "2",
        "SF_LOG_FORMAT": "json",
        "OTHER": "ignored",
    }
    settings = Settings.from_env(env)
    assert settings == Settings(
        handler="main.handler",
        source_dir="/srv/fn",
        function_name="d4e",
        function_version="v1",
        log_group="g",
        memory_limit_mb=256,
        timeout=2.5,
        iam_token="t",
        max_queue=4,
        concurrency=2,
        log_format="json",
    )


def test_keyword_arguments_win_over_env() -> None:
    settings = Settings.from_env({"SF_TIMEOUT": "5", "SF_MEMORY_LIMIT_MB": "256"}, timeout=1)
    assert (settings.timeout, settings.memory_limit_mb) == (1, 256)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SF_TIMEOUT": "soon"}, "SF_TIMEOUT='soon' is not a number"),
        ({"SF_MEMORY_LIMIT_MB": "1.5"}, "SF_MEMORY_LIMIT_MB='1.5' is not a whole number"),
        ({"SF_TIMEOUT": "-1"}, "SF_TIMEOUT=-1 is out of range"),
        ({"SF_TIMEOUT": "3601"}, "platform allows 600"),
        ({"SF_CONCURRENCY": "0"}, "SF_CONCURRENCY must be 1 or more"),
        ({"SF_MEMORY_LIMIT_MB": "0"}, "SF_MEMORY_LIMIT_MB must be 1 or more"),
        ({"SF_MAX_QUEUE": "-2"}, "SF_MAX_QUEUE must be 0"),
        ({"SF_LOG_FORMAT": "xml"}, "SF_LOG_FORMAT must be 'text' or 'json'"),
    ],
)
def test_bad_env_values_name_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": "10"}, r"SF_TIMEOUT must be a number, got str '10'; e.g. SF_TIMEOUT=10.0"),
        ({"concurrency": 1.5}, r"SF_CONCURRENCY must be a whole number"),
        ({"memory_limit_mb": True}, "must be a whole number"),
        ({"handler": 1}, "must be a string"),
    ],
)
def test_bad_keyword_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_unknown_settings_are_refused_at_once() -> None:
    with pytest.raises(TypeError, match="unknown setting.*timout.*the settings are: .*timeout"):
        FunctionApp("index.handler", timout=3)
    with pytest.raises(TypeError, match="unknown setting"):
        Settings.from_env({}, nope=1)


def test_function_app_reads_env_when_first_used(monkeypatch: pytest.MonkeyPatch) -> None:
    app = FunctionApp("index.handler")
    monkeypatch.setenv("SF_TIMEOUT", "7")
    monkeypatch.setenv("SF_HANDLER", "other.handler")
    assert app.settings.timeout == 7
    assert app.settings.handler == "index.handler"  # the argument wins


@pytest.mark.parametrize(
    ("message", "via", "expected"),
    [
        ("or set SF_SOURCE_DIR", "env", "or set SF_SOURCE_DIR"),
        ("or set SF_SOURCE_DIR", "cli", "or pass --source"),
        ("or set SF_SOURCE_DIR", "code", "or set source_dir"),
        ("e.g. SF_TIMEOUT=10.0", "cli", "e.g. --timeout 10.0"),
        ("e.g. SF_TIMEOUT=10.0", "code", "e.g. timeout=10.0"),
        ("SF_MEMORY_LIMIT_MB must be 1 or more", "cli", "--memory must be 1 or more"),
        ("set SF_HANDLER=index.<one of them>", "cli", "run sf-asgi index.<one of them>"),
        ("set SF_HANDLER=index.<one of them>", "code", "set handler=index.<one of them>"),
        ("SF_HANDLER is not set", "cli", "the ENTRYPOINT is not set"),
        ("SF_NOT_A_SETTING stays", "cli", "SF_NOT_A_SETTING stays"),
    ],
)
def test_messages_name_settings_the_way_they_were_given(message: str, via: str, expected: str) -> None:
    assert in_words(message, via) == expected


def test_settings_given_as_variables_keep_their_names() -> None:
    assert in_words("SF_TIMEOUT=-1 and SF_PORT", "cli", keep={"timeout"}) == "SF_TIMEOUT=-1 and --port"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": "soon"}, "timeout must be a number, got str 'soon'; e.g. timeout=10.0"),
        ({"max_instances": 0}, "max_instances must be 1 or more, got 0"),
        ({"timer": "every minute"}, "timer: cron 'every minute' has 2 fields"),
    ],
)
def test_function_app_refuses_a_bad_keyword_where_it_is_written(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FunctionApp("index.handler", **kwargs)
    assert message in str(info.value)
    assert "SF_" not in str(info.value)
