"""Process instances end to end: real servers, attacked with stuck, crashing and greedy handlers, and signals."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from .handlers import ATTACK
from .servers import alive, asgi_servers, free_port, instance_pids, serve, sf_asgi_cli, wait_until

ENV = {"SF_HANDLER": "index.handler", "SF_TIMEOUT": "1", "SF_MAX_INSTANCES": "2"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "index.py").write_text(ATTACK)
    return tmp_path


@pytest.mark.parametrize("server", list(asgi_servers(0)))
def test_every_server_survives_stuck_and_crashing_instances(folder: Path, server: str) -> None:
    port = free_port()
    with (
        serve(asgi_servers(port)[server], folder, ENV, port, folder / f"{server}.log") as srv,
        httpx.Client(base_url=srv.url, timeout=10) as http,
    ):
        assert http.get("/").status_code == 200
        start = time.monotonic()
        stuck = http.get("/?do=loop")
        elapsed = time.monotonic() - start
        assert stuck.status_code == 504, srv.log
        assert elapsed < 1.6  # the deadline, under this server's task model too
        assert http.get("/").status_code == 200
        crashed = http.get("/?do=exit&code=7")
        assert crashed.status_code == 502 and "exited with code 7" in crashed.json()["errorMessage"]
        assert http.get("/").status_code == 200
        pids = instance_pids(srv.log)
    assert wait_until(lambda: not any(alive(pid) for pid in pids)), f"instances outlived {server}"
    log = srv.log
    assert "/sf_asgi/" not in log, log  # no traceback of sf_asgi's own
    # sf_asgi's own lines in the platform's format, also where the server set up logging first (daphne).
    assert re.search(r"^Instance 1 \(pid \d+\) started in", log, re.M), log
    assert re.search(r"^START RequestID: [0-9a-f-]{36} Version: \$latest$", log, re.M), log


def test_thread_isolation_under_trio_refuses_at_startup_naming_the_fix(folder: Path) -> None:
    port = free_port()
    cmd = asgi_servers(port)["hypercorn-trio"]
    env = {**ENV, "SF_ISOLATION": "thread"}
    from .servers import server_env

    result = subprocess.run(
        cmd, cwd=folder, env=server_env(env), capture_output=True, text=True, timeout=20, check=False
    )
    assert "SF_ISOLATION=process" in result.stdout + result.stderr


def _request_in_background(url: str, results: list[httpx.Response | Exception]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(httpx.get(url, timeout=15))
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sigterm_with_a_stuck_invocation_kills_it_at_its_deadline_and_exits(folder: Path) -> None:
    with sf_asgi_cli(folder, ["index.handler", "--timeout", "2"]) as srv:
        results: list[httpx.Response | Exception] = []
        thread = _request_in_background(f"{srv.url}/?do=loop", results)
        time.sleep(0.4)
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0
        elapsed = time.monotonic() - start
        thread.join(10)
        pids = instance_pids(srv.log)
    assert elapsed < 3.5  # the stuck one was killed at its deadline (2 s), not waited for
    assert isinstance(results[0], httpx.Response) and results[0].status_code == 504
    assert pids and not any(alive(pid) for pid in pids)
    assert "Traceback" not in srv.log


def test_a_second_signal_kills_the_instances_at_once(folder: Path) -> None:
    with sf_asgi_cli(folder, ["index.handler", "--timeout", "30"]) as srv:
        results: list[httpx.Response | Exception] = []
        thread = _request_in_background(f"{srv.url}/?do=sleep&s=20", results)
        time.sleep(0.4)
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGINT)
        code = srv.proc.wait(10)
        elapsed = time.monotonic() - start
        thread.join(10)
        pids = instance_pids(srv.log)
        log = srv.log
    assert elapsed < 3
    assert code != 0
    assert pids and wait_until(lambda: not any(alive(pid) for pid in pids), 2)
    assert "Traceback" not in log


def test_no_instance_outlives_a_server_killed_with_sigkill(folder: Path) -> None:
    args = ["index.handler", "--timeout", "60", "--min-instances", "2", "--max-instances", "2"]
    with sf_asgi_cli(folder, args) as srv:
        threads = []
        results: list[httpx.Response | Exception] = []
        threads.append(_request_in_background(f"{srv.url}/?do=loop", results))  # one busy, stuck
        time.sleep(0.3)
        pids = instance_pids(srv.log)
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        srv.proc.kill()
        srv.proc.wait(5)
        # The kernel ends them with the server (PR_SET_PDEATHSIG), the stuck one too.
        assert wait_until(lambda: not any(alive(pid) for pid in pids), 2)
        for thread in threads:
            thread.join(10)


def test_reload_replaces_the_instances_without_restarting_the_server(folder: Path) -> None:
    code = folder / "index.py"
    code.write_text("def handler(event, context):\n    return {'body': 'v1'}\n")
    with sf_asgi_cli(folder, ["index.handler", "--reload"]) as srv, httpx.Client(base_url=srv.url, timeout=5) as http:
        assert http.get("/").text == "v1"
        server_pid = srv.proc.pid
        code.write_text("def handler(event, context):\n    return {'body': 'v2'}\n")
        start = time.monotonic()
        assert wait_until(lambda: http.get("/").text == "v2", 5)
        assert time.monotonic() - start < 1.5  # one cold start, no server restart
        code.write_text("def handler(event, context)\n    return {'body': 'v3'}\n")
        assert wait_until(lambda: http.get("/").status_code == 502, 5)
        broken = http.get("/")
        assert broken.json()["errorType"] == "SyntaxError"
        code.write_text("def handler(event, context):\n    return {'body': 'v3'}\n")
        assert wait_until(lambda: http.get("/").text == "v3", 5)
        assert srv.proc.pid == server_pid and srv.proc.poll() is None
        assert "Reloading: index.py changed" in srv.log


def test_reload_lets_the_invocation_in_flight_finish_on_the_old_code(folder: Path) -> None:
    code = folder / "index.py"
    code.write_text("import time\ndef handler(event, context):\n    time.sleep(0.8)\n    return {'body': 'old'}\n")
    with sf_asgi_cli(folder, ["index.handler", "--reload"]) as srv:
        results: list[httpx.Response | Exception] = []
        thread = _request_in_background(srv.url, results)
        time.sleep(0.2)
        code.write_text("def handler(event, context):\n    return {'body': 'new'}\n")
        assert wait_until(lambda: httpx.get(srv.url, timeout=5).text == "new", 5)
        thread.join(10)
    assert isinstance(results[0], httpx.Response) and results[0].text == "old"


def test_scale_out_under_a_real_server(folder: Path) -> None:
    with sf_asgi_cli(folder, ["index.handler", "--max-instances", "8", "--min-instances", "8"]) as srv:
        results: list[httpx.Response | Exception] = []
        start = time.monotonic()
        threads = [_request_in_background(f"{srv.url}/?do=sleep&s=0.5", results) for _ in range(8)]
        for thread in threads:
            thread.join(15)
        elapsed = time.monotonic() - start
    pids = {r.json()["pid"] for r in results if isinstance(r, httpx.Response)}
    assert len(pids) == 8
    assert elapsed < 1.5


def test_the_server_environment_reaches_instances_without_sf_settings(folder: Path) -> None:
    env = {"FN_FROM_SERVER": "yes", "SF_TIMEOUT": "3"}
    with sf_asgi_cli(folder, ["index.handler"], env) as srv:
        seen = httpx.get(f"{srv.url}/?do=env", timeout=5).json()
    assert seen == {"FN_FROM_SERVER": "yes"}


def test_a_second_sigterm_also_forces_the_exit(folder: Path) -> None:
    with sf_asgi_cli(folder, ["index.handler", "--timeout", "30"]) as srv:
        results: list[httpx.Response | Exception] = []
        thread = _request_in_background(f"{srv.url}/?do=loop", results)
        time.sleep(0.4)
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(10)
        elapsed = time.monotonic() - start
        thread.join(10)
        pids = instance_pids(srv.log)
    assert elapsed < 3 and code == 1
    assert isinstance(results[0], httpx.Response) and results[0].status_code == 503
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 2)
