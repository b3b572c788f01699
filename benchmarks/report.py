"""Write benchmarks/README.md and throughput.png from the results of run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Targets from the benchmark issue: ratios to raw ASGI in the same run, and absolute limits.
# Issue "instances as processes": one process instance ≥ 0.35; thread instances keep issue #5's targets.
TARGETS = {"sf_sync": 0.35, "sf_sync_thread": 0.35, "sf_async_thread": 0.55}
GATEWAY_TARGET = 0.85
IO_TARGET_RPS = 140  # 8 instances × 20 req/s, less the overhead
EVENT_TARGET_US = 5.0
COLD_START_MARGIN_MS = 15.0


def _ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(results["throughput"].items())
    labels = [row["title"] for _, row in rows]
    medians = [row["rps_ratio"]["median"] for _, row in rows]
    low = [row["rps_ratio"]["median"] - row["rps_ratio"]["min"] for _, row in rows]
    high = [row["rps_ratio"]["max"] - row["rps_ratio"]["median"] for _, row in rows]
    colors = ["#888888" if key == "raw" else "#d98c1f" if row["peer"] else "#2f6db5" for key, row in rows]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.4))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, medians, xerr=[low, high], color=colors, capsize=3)
    ax.set_yticks(y, labels)
    for key, target in TARGETS.items():
        if key in results["throughput"]:
            i = [k for k, _ in rows].index(key)
            ax.plot([target, target], [y[i] - 0.4, y[i] + 0.4], color="#c0392b", linewidth=2)
    for yi, m, h in zip(y, medians, high, strict=True):
        ax.text(m + h + 0.015, yi, f"{m:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("requests/s ÷ raw ASGI in the same round (median, min–max); red line: target")
    ax.set_title("sf_asgi throughput, 32 connections, one worker, wrk on 127.0.0.1")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], folder: Path) -> None:
    write_chart(results, folder / "throughput.png")
    t = results["throughput"]
    m = results["memory_and_start"]
    micro = results["micro_us"]
    v = results["versions"]
    s = results["settings"]
    raw_rps = t["raw"]["rps"]
    lines = [
        "# Benchmarks",
        "",
        "What the adapter costs per request, measured against a raw ASGI app that answers a fixed",
        "13-byte body, and against Google's functions-framework, the nearest peer. Everything is",
        "written by one command:",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        "Servers listen on 127.0.0.1, one worker each (uvicorn with httptools and uvloop where",
        f"uvicorn is used), and wrk drives them with {s['wrk_threads']} thread and {s['connections']} connections",
        f"for {s['seconds']:g} s after a 1 s warm-up. The scenarios run in {s['rounds']} interleaved rounds",
        "(A B C … A B C …), and every number is a ratio to the raw app measured in the same round:",
        "the median, with the min–max across rounds. The request is what a browser sends: eight",
        "headers besides Host and Connection, and three query parameters.",
        "",
        "sf_asgi runs with its defaults, so every request builds the full platform event, runs under",
        "the timeout, and writes the platform's START/END/REPORT lines (to /dev/null). Servers get",
        "Python's default output buffering: the harness unsets PYTHONUNBUFFERED, and one scenario sets",
        "it again, which turns each of sf_asgi's two log writes per request into a system call.",
        "",
        "![requests/s as a share of raw ASGI](throughput.png)",
        "",
        "## Throughput and latency",
        "",
        "| scenario | req/s | req/s ÷ raw | p50 ÷ raw | p99 ÷ raw | p50 | p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in t.values():
        lines.append(
            f"| {row['title']} | {row['rps']:,.0f} | {_ratio(row['rps_ratio'])} | {_ratio(row['p50_ratio'])} "
            f"| {_ratio(row['p99_ratio'])} | {row['p50']:.2f} ms | {row['p99']:.2f} ms |"
        )
    lines += ["", f"Raw ASGI served {raw_rps:,.0f} requests/s (median).", ""]

    cold = m["cold_start_ms"]
    event_us = micro.get("request_to_event", float("nan"))
    lines += [
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for key, target in TARGETS.items():
        if key in t:
            got = t[key]["rps_ratio"]["median"]
            lines.append(f"| {t[key]['title']} ≥ {target} of raw | {got:.2f} | {_verdict(got >= target)} |")
    if "sf_gateway" in t and "sf_sync" in t:  # the same function routed, against it served directly
        routed = t["sf_gateway"]["rps_ratio"]["median"] / t["sf_sync"]["rps_ratio"]["median"]
        lines.append(
            f"| hello through the gateway ≥ {GATEWAY_TARGET} of the same function served directly | {routed:.2f} "
            f"| {_verdict(routed >= GATEWAY_TARGET)} |"
        )
    lines += [
        f"| request → event ≤ {EVENT_TARGET_US:g} µs | {event_us:.2f} µs with the two uuid4 ids "
        f"({micro.get('event_mapping_only', float('nan')):.2f} µs for the mapping alone) "
        f"| {_verdict(event_us <= EVENT_TARGET_US)} |",
        f"| no RSS growth over 100k requests | {m['rss_100k']['growth_kib']:+,} KiB over "
        f"{m['rss_100k']['requests']:,} requests | {_verdict(m['rss_100k']['growth_kib'] < 1024)} |",
        f"| handler waiting 50 ms on I/O, up to 8 instances ≥ {IO_TARGET_RPS} req/s | "
        f"{t['sf_io_8']['rps']:.0f} req/s (1 instance: {t['sf_io_1']['rps']:.0f}) "
        f"| {_verdict(t['sf_io_8']['rps'] >= IO_TARGET_RPS)} |"
        if "sf_io_8" in t and "sf_io_1" in t
        else "| handler waiting on I/O | not measured | |",
        f"| cold start ≤ raw uvicorn + {COLD_START_MARGIN_MS:g} ms (the first instance starts before the server "
        f"listens) | {cold['sf_asgi']:.0f} ms vs {cold['raw']:.0f} ms "
        f"| {_verdict(cold['sf_asgi'] <= cold['raw'] + COLD_START_MARGIN_MS)} |",
        "",
        "## In-process microbenchmarks",
        "",
        "pytest-benchmark, median of at least 2,000 rounds (`benchmarks/test_micro.py`, not part of",
        "`scripts/test`):",
        "",
        "| step | µs |",
        "|---|---:|",
    ]
    for name, us in micro.items():
        label = {
            "request_to_event": "request → event, the typical request, two uuid4 ids and the clock included",
            "event_mapping_only": "the same mapping with the ids and the time given",
            "result_to_response": "result → response: the runtime's serialisation (skipped for a result of plain "
            "JSON types) and the platform's reading of it",
        }.get(name, name)
        lines.append(f"| {label} | {us:.2f} |")
    lines += [
        "",
        "## Memory and start",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| RSS of an idle server and its one instance (echo function, after its first request) "
        f"| {m['idle_rss_kib'] / 1024:.1f} MiB |",
        f"| RSS of the idle raw ASGI app, for comparison | {m['idle_rss_raw_kib'] / 1024:.1f} MiB |",
        f"| RSS after warm-up (scaled out to its instances), then after {m['rss_100k']['requests']:,} more "
        "requests | "
        f"{m['rss_100k']['warm_kib'] / 1024:.1f} → {m['rss_100k']['after_kib'] / 1024:.1f} MiB |",
        f"| peak RSS rise while a 3.4 MB JSON request is handled (status {m['peak_3_5mb']['status']}) | "
        f"{m['peak_3_5mb']['growth_kib'] / 1024:.1f} MiB |",
        f"| process start → first 200, raw uvicorn (median) | {cold['raw']:.0f} ms |",
        f"| process start → first 200, `uvicorn sf_asgi:app` (median) | {cold['sf_asgi']:.0f} ms |",
        "",
        *_instances(results.get("instances")),
        "## Machine and versions",
        "",
        f"{v['cpu']}, {v['cores']} cores, Linux {v['kernel']}; wrk and the servers share the machine.",
        "",
        "| | version |",
        "|---|---|",
    ]
    for name in ("python", "sf_asgi", "uvicorn", "httptools", "uvloop", "starlette", "functions-framework",
                 "flask", "gunicorn", "wrk"):  # fmt: skip
        lines.append(f"| {name} | {v[name]} |")
    lines += [
        "",
        "Files: `run.py` runs everything and writes this page, `results.json` (all runs) and",
        "`throughput.png`; `apps/` holds the servers and functions measured; `report.py` writes",
        "the page; `test_micro.py` holds the microbenchmarks.",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))


def _instances(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return []
    start = data["start_ms"]
    one, eight = data["rss_1_instances_kib"], data["rss_8_instances_kib"]
    return [
        "## Process instances",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| `python -c pass` (median) | {start['python_c_pass']:.1f} ms |",
        f"| a new instance, spawn → ready, hello function (median) | {start['instance_ready']:.1f} ms |",
        f"| of which the module's import, the cold start the log reports | {start['instance_import']:.1f} ms |",
        f"| idle RSS per instance | {data['idle_rss_per_instance_kib'] / 1024:.1f} MiB |",
        f"| server with 1 instance: total RSS (front alone) | {one['total'] / 1024:.1f} MiB "
        f"({one['front'] / 1024:.1f} MiB) |",
        f"| server with 8 instances: total RSS (front alone) | {eight['total'] / 1024:.1f} MiB "
        f"({eight['front'] / 1024:.1f} MiB) |",
        "",
    ]
