"""Rerun every benchmark and rewrite benchmarks/README.md, results.json and throughput.png.

    scripts/bench                      # everything (about 6 minutes)
    scripts/bench --rounds 1 --seconds 2 --quick    # a smoke run

All servers listen on 127.0.0.1, one worker each, and are driven by wrk. Scenarios run
in interleaved rounds (A B C ... A B C ...) and every number is reported as a ratio to
the raw ASGI app measured in the same round, because the machine is noisy. Every load
is bounded in time and count; the script stops only the processes it started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APPS = HERE / "apps"
PY = sys.executable

# What curl or a browser sends: ten headers and a few query parameters.
HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.5",
    "Accept-Encoding": "gzip, deflate, br",
    "Cache-Control": "no-cache",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
}
PATH = "/?page=2&sort=name&q=hello"
JSON_1K = json.dumps({"items": [{"id": i, "name": f"item-{i:04d}", "tags": ["a", "b"]} for i in range(24)]})[:1024]


@dataclass
class Scenario:
    key: str
    title: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    body: str = ""
    content_type: str = ""
    peer: bool = False


def uvicorn_cmd(app: str) -> list[str]:
    return [PY, "-m", "uvicorn", app, "--http", "httptools", "--loop", "uvloop", "--no-access-log",
            "--log-level", "warning", "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip


def sf(handler: str, **settings: str) -> dict[str, str]:
    return {"SF_HANDLER": f"functions.{handler}", "SF_SOURCE_DIR": str(APPS), **settings}


THREAD = {"SF_ISOLATION": "thread"}
ONE = {"SF_MAX_INSTANCES": "1"}


def scenarios() -> list[Scenario]:
    ff = shutil.which("functions-framework", path=str(Path(PY).parent)) or "functions-framework"
    ff_args = ["--source", str(APPS / "ff_main.py"), "--host", "127.0.0.1", "--port", "{port}"]
    return [
        Scenario("raw", "raw ASGI hello (the limit)", uvicorn_cmd("raw:app")),
        Scenario("starlette", "Starlette, one route", uvicorn_cmd("starlette_app:app")),
        Scenario(
            "sf_sync", "sf_asgi, sync hello, one process instance", uvicorn_cmd("sf_asgi:app"), sf("hello", **ONE)
        ),
        Scenario(
            "sf_gateway", "sf_asgi gateway, sync hello routed, one process instance", uvicorn_cmd("gateway_app:app")
        ),
        Scenario(
            "sf_async",
            "sf_asgi, async hello, one process instance",
            uvicorn_cmd("sf_asgi:app"),
            sf("hello_async", **ONE),
        ),
        Scenario(
            "sf_sync_thread", "sf_asgi, sync hello, thread instance", uvicorn_cmd("sf_asgi:app"), sf("hello", **THREAD)
        ),
        Scenario(
            "sf_async_thread",
            "sf_asgi, async hello, thread instance",
            uvicorn_cmd("sf_asgi:app"),
            sf("hello_async", **THREAD),
        ),
        Scenario(
            "sf_async_unbuffered",
            "sf_asgi, async hello, thread instance, PYTHONUNBUFFERED=1",
            uvicorn_cmd("sf_asgi:app"),
            {**sf("hello_async", **THREAD), "PYTHONUNBUFFERED": "1"},
        ),
        Scenario(
            "sf_io_1",
            "sf_asgi, handler waiting 50 ms on I/O, 1 instance",
            uvicorn_cmd("sf_asgi:app"),
            sf("wait_50ms", SF_MAX_INSTANCES="1"),
        ),
        Scenario(
            "sf_io_8",
            "sf_asgi, handler waiting 50 ms on I/O, up to 8 instances",
            uvicorn_cmd("sf_asgi:app"),
            sf("wait_50ms", SF_MAX_INSTANCES="8"),
        ),
        Scenario(
            "sf_echo_1k",
            "sf_asgi, echo 1 KB JSON",
            uvicorn_cmd("sf_asgi:app"),
            sf("echo"),
            "POST",
            JSON_1K,
            "application/json",
        ),
        Scenario(
            "sf_upload_1m",
            "sf_asgi, 1 MB upload",
            uvicorn_cmd("sf_asgi:app"),
            sf("upload"),
            "POST",
            "x" * (1024 * 1024),
            "application/octet-stream",
        ),
        Scenario("ff", "functions-framework (gunicorn + Flask)", [ff, "--target", "hello", *ff_args], peer=True),
        Scenario(
            "ff_asgi", "functions-framework --asgi", [ff, "--target", "hello_async", "--asgi", *ff_args], peer=True
        ),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Python's default output buffering unless the scenario asks otherwise: a shell or a
        # container may set PYTHONUNBUFFERED, and then each of sf_asgi's log writes is a system call.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SF_") and k != "PYTHONUNBUFFERED"}
        full_env.update(env)
        full_env["PYTHONPATH"] = str(APPS)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [c.replace("{port}", str(self.port)) for c in cmd],
            cwd=APPS,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # so that we stop its workers too, and only them
        )

    def wait_first_200(self, limit: float = 30.0) -> float:
        """Seconds from process start to the first 200."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + PATH, timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.001)
        raise RuntimeError(f"no 200 from {self.url} within {limit}s")

    def pids(self) -> list[int]:
        """The server's processes: its session, and the instances (each in a session of its own)."""
        out = subprocess.run(["pgrep", "-s", str(self.proc.pid)], capture_output=True, text=True, check=False)
        pids = [int(p) for p in out.stdout.split()] or [self.proc.pid]
        for parent in list(pids):
            children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False)
            pids.extend(int(p) for p in children.stdout.split() if int(p) not in pids)
        return pids

    def status(self, key: str) -> int:
        """A /proc/<pid>/status value in KiB, summed over the server's processes."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with_kill = self.proc.poll() is None
            if with_kill:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wrk_script(scenario: Scenario, folder: Path) -> list[str]:
    if scenario.method == "GET":
        return []
    body_file = folder / f"{scenario.key}.body"
    body_file.write_text(scenario.body)
    script = folder / f"{scenario.key}.lua"
    script.write_text(
        f'local f = io.open("{body_file}", "rb")\n'
        "wrk.body = f:read('*a')\nf:close()\n"
        f'wrk.method = "{scenario.method}"\n'
        f'wrk.headers["Content-Type"] = "{scenario.content_type}"\n'
    )
    return ["-s", str(script)]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, seconds: float, connections: int, extra: list[str]) -> dict[str, float]:
    headers = [arg for name, value in HEADERS.items() for arg in ("-H", f"{name}: {value}")]
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        *headers,
        *extra,
    ]
    out = subprocess.run([*cmd, url + PATH], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        result[f"p{pct}"] = float(value) * _UNITS[unit]
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def throughput(selected: list[Scenario], rounds: int, seconds: float, tmp: Path) -> dict[str, Any]:
    raw: dict[str, list[dict[str, float]]] = {s.key: [] for s in selected}
    for round_number in range(rounds):
        for scenario in selected:  # interleaved: A B C ... then again
            server = Server(scenario.cmd, scenario.env)
            try:
                server.wait_first_200()
                extra = wrk_script(scenario, tmp)
                run_wrk(server.url, 1, 32, extra)  # warm-up
                result = run_wrk(server.url, seconds, 32, extra)
            finally:
                server.stop()
            raw[scenario.key].append(result)
            print(f"round {round_number + 1}: {scenario.key:14} {result['rps']:9.0f} req/s "
                  f"p50 {result['p50']:.2f} ms p99 {result['p99']:.2f} ms", flush=True)  # fmt: skip
    summary: dict[str, Any] = {}
    for scenario in selected:
        ratios: dict[str, list[float]] = {"rps": [], "p50": [], "p99": []}
        for i, result in enumerate(raw[scenario.key]):
            base = raw["raw"][i]
            for metric in ratios:
                ratios[metric].append(result[metric] / base[metric])
        summary[scenario.key] = {
            "title": scenario.title,
            "peer": scenario.peer,
            "runs": raw[scenario.key],
            **{
                f"{metric}_ratio": {"median": statistics.median(v), "min": min(v), "max": max(v)}
                for metric, v in ratios.items()
            },
            **{metric: statistics.median(r[metric] for r in raw[scenario.key]) for metric in ("rps", "p50", "p99")},
        }
    return summary


def post(url: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def memory_and_start(rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Cold start: process start to first 200, interleaved with raw uvicorn.
    starts: dict[str, list[float]] = {"raw": [], "sf_asgi": []}
    for _ in range(max(5, rounds * 2)):
        for key, cmd, env in (
            ("raw", uvicorn_cmd("raw:app"), {}),
            ("sf_asgi", uvicorn_cmd("sf_asgi:app"), sf("hello")),
        ):
            server = Server(cmd, env)
            try:
                starts[key].append(server.wait_first_200() * 1000)
            finally:
                server.stop()
    out["cold_start_ms"] = {k: statistics.median(v) for k, v in starts.items()}
    out["cold_start_ms"]["runs"] = starts

    server = Server(uvicorn_cmd("sf_asgi:app"), sf("echo"))
    try:
        server.wait_first_200()
        out["idle_rss_kib"] = server.status("VmRSS")
        run_wrk(server.url, 2, 32, [])  # warm: caches and allocator settle
        warm = server.status("VmRSS")
        served = 0
        deadline = time.monotonic() + 120
        while served < 100_000 and time.monotonic() < deadline:
            served += int(run_wrk(server.url, 2, 32, [])["requests"])
        after = server.status("VmRSS")
        out["rss_100k"] = {"requests": served, "warm_kib": warm, "after_kib": after, "growth_kib": after - warm}
        before = server.status("VmHWM")
        status = post(server.url, json.dumps({"blob": "x" * (3_400_000)}).encode(), "application/json")
        peak = server.status("VmHWM")
        out["peak_3_5mb"] = {"status": status, "before_kib": before, "peak_kib": peak, "growth_kib": peak - before}
    finally:
        server.stop()
    raw = Server(uvicorn_cmd("raw:app"), {})
    try:
        raw.wait_first_200()
        out["idle_rss_raw_kib"] = raw.status("VmRSS")
    finally:
        raw.stop()
    return out


def instances(rounds: int) -> dict[str, Any]:
    """Process instances: spawn -> ready against `python -c pass`, and what they cost in memory."""
    out: dict[str, Any] = {}
    starts: dict[str, list[float]] = {"python_c_pass": [], "instance_ready": [], "instance_import": []}
    for _ in range(max(10, rounds * 4)):
        started = time.perf_counter()
        subprocess.run([PY, "-c", "pass"], check=True)
        starts["python_c_pass"].append((time.perf_counter() - started) * 1000)
    probe = (
        "import anyio, json, sys\n"
        "from sf_asgi._config import Settings\n"
        "from sf_asgi._output import Output\n"
        "from sf_asgi._pool import Pool\n"
        "async def main():\n"
        "    pool = Pool(Settings(handler='functions.hello', source_dir=sys.argv[1]), Output('text', 'warning'))\n"
        "    await pool.start()\n"
        "    instance = pool.instances[0]\n"
        "    print(json.dumps([instance.ready_ms, instance.init_ms]))\n"
        "    await pool.close()\n"
        "anyio.run(main)\n"
    )
    for _ in range(max(10, rounds * 4)):
        result = subprocess.run([PY, "-c", probe, str(APPS)], capture_output=True, text=True, check=True)
        ready, imported = json.loads(result.stdout.strip().splitlines()[-1])
        starts["instance_ready"].append(ready)
        starts["instance_import"].append(imported)
    out["start_ms"] = {k: statistics.median(v) for k, v in starts.items()}
    for count in (1, 8):
        env = sf("hello", SF_MIN_INSTANCES=str(count), SF_MAX_INSTANCES=str(count))
        server = Server(uvicorn_cmd("sf_asgi:app"), env)
        try:
            server.wait_first_200()
            time.sleep(0.5)
            pids = server.pids()
            total = server.status("VmRSS")
            front = sum(
                int(line.split()[1])
                for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
            out[f"rss_{count}_instances_kib"] = {"total": total, "front": front, "processes": len(pids)}
        finally:
            server.stop()
    one = out["rss_1_instances_kib"]
    eight = out["rss_8_instances_kib"]
    out["idle_rss_per_instance_kib"] = (eight["total"] - one["total"]) / 7
    return out


def micro(tmp: Path) -> dict[str, float]:
    report = tmp / "micro.json"
    subprocess.run(
        [PY, "-m", "pytest", "-q", str(HERE / "test_micro.py"), "-p", "no:cacheprovider",
         f"--benchmark-json={report}", "--benchmark-min-rounds=2000"],
        check=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    data = json.loads(report.read_text())
    return {b["name"].removeprefix("test_"): b["stats"]["median"] * 1e6 for b in data["benchmarks"]}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("sf_asgi", "uvicorn", "httptools", "uvloop", "starlette", "functions-framework", "flask", "gunicorn"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = "not installed"
    out["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    out["cpu"] = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    out["cores"] = str(os.cpu_count())
    out["kernel"] = platform.release()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", help="comma-separated scenario keys (raw is always included)")
    parser.add_argument("--quick", action="store_true", help="throughput only; leave the results files alone")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk (scripts/bench does it)")
    # As `pip install` does: without bytecode (PYTHONDONTWRITEBYTECODE is common in
    # containers, and an editable install has none), every start would compile sf_asgi.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "sf_asgi")], check=True)
    selected = scenarios()
    if args.only:
        keys = {"raw", *args.only.split(",")}
        selected = [s for s in selected if s.key in keys]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        results: dict[str, Any] = {}
        if not args.quick:
            results["micro_us"] = micro(tmp)  # first, while the machine is quiet
        results["throughput"] = throughput(selected, args.rounds, args.seconds, tmp)
        if args.quick:
            print(json.dumps({k: v["rps_ratio"] for k, v in results["throughput"].items()}, indent=1))
            return
        results["memory_and_start"] = memory_and_start(args.rounds)
        results["instances"] = instances(args.rounds)
    results["versions"] = versions()
    results["command"] = "scripts/bench" + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
    results["settings"] = {"rounds": args.rounds, "seconds": args.seconds, "connections": 32, "wrk_threads": 1}
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    from report import write_report

    write_report(results, HERE)
    print(f"wrote {HERE / 'README.md'} and {HERE / 'throughput.png'}")


if __name__ == "__main__":
    main()
