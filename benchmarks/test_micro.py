"""Microbenchmarks of the mapping, for the typical request (run by benchmarks/run.py, not by scripts/test)."""

from __future__ import annotations

import json
import time
from typing import Any

from sf_asgi._event import build_event, new_request_ids
from sf_asgi._response import render_result, serialise

# What a browser sends: lower-case names, as an ASGI server hands them over.
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"accept-language", b"en-US,en;q=0.5"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"connection", b"keep-alive"),
    (b"cache-control", b"no-cache"),
    (b"upgrade-insecure-requests", b"1"),
    (b"sec-fetch-dest", b"document"),
    (b"sec-fetch-mode", b"navigate"),
]
QUERY = b"page=2&sort=name&q=hello"
RESULT = {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "Hello, world!"}


def request_to_event() -> Any:
    # The whole step, ids included: the request id and the trace id are part of every event.
    return build_event("GET", HEADERS, QUERY, b"", ("127.0.0.1", 50000), *new_request_ids(), time.time())


def test_event_mapping_only(benchmark: Any) -> None:
    # The mapping alone, with the ids and the clock reading given.
    event = benchmark(lambda: build_event("GET", HEADERS, QUERY, b"", ("127.0.0.1", 50000), "id-1", "id-2", 1.0))
    assert event["requestContext"]["requestId"] == "id-1"


def test_request_to_event(benchmark: Any) -> None:
    event = benchmark(request_to_event)
    assert event["headers"]["Sec-Fetch-Mode"] == "navigate"
    assert "Connection" not in event["headers"]


def test_result_to_response(benchmark: Any) -> None:
    # The runtime's serialisation, then the platform's strict reading of it, as the adapter
    # does both: a result of plain JSON types only is read directly, without the text.
    response = benchmark(lambda: render_result(serialise(RESULT), RESULT))
    assert response.status == 200
    assert response == render_result(json.dumps(RESULT))
