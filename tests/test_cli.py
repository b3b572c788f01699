"""The sf-asgi CLI (SPEC §8): flags, SF_* fallbacks, the function's env file, and real runs."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sf_asgi import Settings
from sf_asgi._cli import build_parser, flag_for, resolve
from sf_asgi._config import ConfigError, env_name, read_env_file

from .servers import free_port, serve, server_env, sf_asgi_cli


def test_every_setting_has_a_flag_and_help_shows_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    dests = {action.dest for action in parser._actions}
    for field in dataclasses.fields(Settings):
        assert field.name in dests
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(Settings):
        assert f"[{env_name(field.name)}]" in text
        if field.name != "handler":
            assert flag_for(field.name) in text
    assert "--source DIR" in text and "--memory MB" in text and "--timeout S" in text


def test_flags_become_settings(tmp_path: Path) -> None:
    settings = resolve(
        [
            "main.handler", "--source", str(tmp_path), "--timeout", "3", "--memory", "256", "--iam-token", "t",
            "--max-queue", "5", "--concurrency", "2", "--reload", "--workers", "2", "--proxy-headers",
            "--forwarded-allow-ips", "127.0.0.2", "--host", "127.0.0.5", "--port", "9000", "--log-format", "json",
        ]
    )  # fmt: skip
    assert settings == Settings(
        handler="main.handler",
        source_dir=str(tmp_path),
        timeout=3.0,
        memory_limit_mb=256,
        iam_token="t",
        max_queue=5,
        concurrency=2,
        reload=True,
        workers=2,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.2",
        host="127.0.0.5",
        port=9000,
        log_format="json",
    )


def test_variables_fill_in_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_HANDLER", "index.handler")
    monkeypatch.setenv("SF_TIMEOUT", "4")
    monkeypatch.setenv("SF_MEMORY_LIMIT_MB", "512")
    monkeypatch.setenv("SF_RELOAD", "true")
    settings = resolve(["--timeout", "2"])
    assert (settings.handler, settings.timeout, settings.memory_limit_mb, settings.reload) == (
        "index.handler",
        2.0,
        512,
        True,
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["index.handler", "--timout", "3"], {}, "did you mean --timeout?"),
        (["index.handler", "--timeout", "soon"], {}, "--timeout 'soon' is not a number; e.g. --timeout 10.0"),
        (["index.handler", "--timeout", "4000"], {}, "platform allows 600"),
        (["index.handler", "--memory", "big"], {}, "--memory 'big' is not a whole number"),
        (["index.handler", "--port", "70000"], {}, "port number from 0 to 65535"),
        (["index.handler", "--workers", "0"], {}, "--workers must be 1 or more"),
        (["index.handler", "--log-format", "xml"], {}, "must be 'text' or 'json'"),
        ([], {}, "name the handler: sf-asgi <file>.<function>"),
        (["index"], {}, "is not <file>.<function>"),
        (["index.handler", "--source", "/no/such/folder"], {}, "no such folder"),
        (["index.handler", "--env-file", "/no/such/file"], {}, "cannot read the env file"),
        (["index.handler"], {"SF_RELOAD": "maybe"}, "SF_RELOAD='maybe' is not true or false"),
        (["index.handler"], {"SF_TIMEOUT": "-1"}, "SF_TIMEOUT=-1 is out of range"),
        (["index.handler", "--timeout", "-1"], {}, "--timeout -1 is out of range"),
    ],
)
def test_wrong_flags_or_values_exit_2_naming_the_fix(
    argv: list[str],
    env: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        resolve(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB_2=two words\n", {"A": "1", "B_2": "two words"}),
        ("# comment\n\nexport TOKEN='quoted'\nURL=\"http://x/?a=b\"\n", {"TOKEN": "quoted", "URL": "http://x/?a=b"}),
        ("EMPTY=\nEQ=a=b\n", {"EMPTY": "", "EQ": "a=b"}),
    ],
)
def test_env_file(tmp_path: Path, text: str, expected: dict[str, str]) -> None:
    path = tmp_path / ".env"
    path.write_text(text)
    assert read_env_file(str(path)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1ABC=1\n", "'1ABC' is not a name the platform accepts"),
        ("MY-VAR=1\n", "'MY-VAR' is not a name the platform accepts"),
        ("_X=1\n", "'_X' is not a name the platform accepts"),
        ("NOEQUALS\n", "expected NAME=value"),
        ("BIG=" + "x" * 4100 + "\n", "over the platform's limit of 4 KB"),
        ("".join(f"V{i}={'x' * 100}\n" for i in range(40)), "over the platform's limit of 4 KB"),
    ],
)
def test_env_file_rules(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / ".env"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_env_file(str(path))


# Real runs


ENV_FUNCTION = """
import os
GREETING_AT_IMPORT = os.environ.get("GREETING", "unset")

def handler(event, context):
    left = context.get_remaining_time_in_millis() > 2500
    return {"body": f"{GREETING_AT_IMPORT} {context.memory_limit_in_mb} {left}"}
"""


def test_cli_runs_the_function_with_its_env_file(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "index.py").write_text(ENV_FUNCTION)
    # The file's SF_TIMEOUT is the function's business, not sf_asgi's.
    (tmp_path / "fn.env").write_text("GREETING=hello\nSF_TIMEOUT=1\n")
    args = ["index.handler", "--source", "fn", "--env-file", "fn.env", "--timeout", "3", "--memory", "256"]
    with sf_asgi_cli(tmp_path, args) as srv:
        assert httpx.get(srv.url, timeout=5).text == "hello 256 True"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from sf_asgi import __version__

    with pytest.raises(SystemExit) as info:
        resolve(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sf-asgi {__version__}"


@pytest.mark.parametrize("reload", [False, True])
def test_a_startup_error_names_the_flags_and_looks_the_same_with_reload(tmp_path: Path, reload: bool) -> None:
    (tmp_path / "index.py").write_text("def handler(e, c): pass\n")
    port = free_port()
    args = [sys.executable, "-m", "sf_asgi", "idx.handler", "--port", str(port), *(["--reload"] if reload else [])]
    proc = subprocess.Popen(args, cwd=tmp_path, env=server_env({}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        lines: list[str] = []
        assert proc.stdout is not None
        while time.monotonic() < deadline:  # bounded: the line comes within a second or two
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if "sf_asgi: " in line:
                break
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    error = next(line for line in lines if "sf_asgi: " in line).rstrip("\n")
    assert error == (
        f"ERROR:    sf_asgi: No idx.py in {tmp_path} for the entry point idx.handler (it has: index.py): "
        "run from the function's folder or pass --source, or fix the ENTRYPOINT"
    )


def test_python_m_and_bad_env_file_exit_2(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("def handler(e, c): pass\n")
    (tmp_path / ".env").write_text("BAD-NAME=1\n")
    result = subprocess.run(
        [sys.executable, "-m", "sf_asgi", "index.handler", "--env-file", ".env"],
        cwd=tmp_path,
        env=server_env({}),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "'BAD-NAME' is not a name the platform accepts" in result.stderr


def test_sigterm_finishes_the_invocation_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(
        "import time\ndef handler(event, context):\n    time.sleep(1.0)\n    return {'body': 'finished'}\n"
    )
    with sf_asgi_cli(tmp_path, ["index.handler"]) as srv, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.get, srv.url, timeout=10)
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        response = in_flight.result(timeout=10)
        assert srv.proc.wait(10) == 0
    assert response.text == "finished"


def _poll(url: str, want: str, limit: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + limit
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5)
            if want in last.text:
                return last
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{want!r} never came; last answer: {last.text if last else None!r}")


def test_reload_survives_a_syntax_error(tmp_path: Path) -> None:
    source = tmp_path / "index.py"
    source.write_text("def handler(event, context):\n    return {'body': 'version 1'}\n")
    with sf_asgi_cli(tmp_path, ["index.handler", "--reload"]) as srv:
        assert httpx.get(srv.url, timeout=5).text == "version 1"
        time.sleep(0.6)  # uvicorn arms its file watcher on the first poll, reload_delay (0.25 s) after start
        source.write_text("def handler(event, context):\n    return {'body': 'version 2'}\n")
        _poll(srv.url, "version 2")
        source.write_text("def handler(event, context)\n    return {'body': 'broken'}\n")
        broken = _poll(srv.url, "SyntaxError")
        assert broken.status_code == 502
        assert broken.headers["x-function-error"] == "true"
        assert broken.json()["errorType"] == "SyntaxError"
        source.write_text("def handler(event, context):\n    return {'body': 'version 3'}\n")
        assert _poll(srv.url, "version 3").status_code == 200
        assert srv.proc.poll() is None  # the same dev server all along


WHO = """
import os, time, uuid
INSTANCE = uuid.uuid4().hex
CALLS = 0

def handler(event, context):
    global CALLS
    CALLS += 1
    time.sleep(0.05)
    return {"body": f"{os.getpid()} {INSTANCE} {CALLS}"}
"""


def _instances(url: str) -> dict[str, str]:
    """pid -> instance id, from parallel requests on fresh connections (bounded)."""
    seen: dict[str, str] = {}

    def one(_: int) -> str:
        with httpx.Client(timeout=10) as http:
            return http.get(url).text

    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            for text in pool.map(one, range(16)):
                pid, instance, _calls = text.split()
                assert seen.setdefault(pid, instance) == instance  # one cold start per worker
            if len(seen) >= 2:
                break
    return seen


def test_workers_are_instances_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(WHO)
    with sf_asgi_cli(tmp_path, ["index.handler", "--workers", "2", "--max-instances", "1"]) as srv:
        seen = _instances(srv.url)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(15) == 0
    assert len(seen) == 2
    assert len(set(seen.values())) == 2


def test_gunicorn_with_uvicorns_worker_class(tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text(WHO)
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "sf_asgi:app", "-k", "uvicorn.workers.UvicornWorker",
        "-w", "2", "-b", f"127.0.0.1:{port}",
    ]  # fmt: skip
    env = {"SF_HANDLER": "index.handler", "SF_MAX_INSTANCES": "1"}  # one instance in each worker's pool
    with serve(cmd, tmp_path, env, port, tmp_path / "gunicorn.log") as srv:
        seen = _instances(f"http://127.0.0.1:{port}")
        log = srv.log
    assert len(seen) == 2, log
    assert len(set(seen.values())) == 2
    assert "START RequestID" in log
    assert json.dumps  # the log is plain text lines
