"""Request -> event: pure functions from the request's plain data to the platform's event (SPEC §2)."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from ._types import Event

# RFC 9110 token characters: Go leaves a name with any other character as it is.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Headers the platform drops from the request (SPEC §2), compared in canonical form.
REMOVED_REQUEST_HEADERS = frozenset(
    {
        "Expect", "Te", "Trailer", "Upgrade", "Proxy-Authenticate", "Authorization", "Connection",
        "Content-Md5", "Max-Forwards", "Server", "Transfer-Encoding", "Www-Authenticate", "Cookie",
    }
)  # fmt: skip

# The platform sets these itself; what a client sends under these names is replaced.
_ADDED = frozenset({"X-Request-Id", "X-Trace-Id", "X-Real-Remote-Address", "X-Forwarded-For"})

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_NOTHING_TO_UNESCAPE = re.compile(rb"[^%+;]*").fullmatch


def is_token(name: str) -> bool:
    """An HTTP token (RFC 9110): what a header name may be."""
    return bool(name) and _TOKEN.issuperset(name)


def canonical_header_key(name: str) -> str:
    """Go's `textproto.CanonicalMIMEHeaderKey` (SPEC §2): `x-api-key` -> `X-Api-Key`.

    Its callers cache what they decide per name, so it is not cached itself.
    """
    if not is_token(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


_KEEP, _DROP, _CHAIN, _REPLACED = 0, 1, 2, 3
_header_kinds: dict[bytes, tuple[str, int]] = {}
_kept_names: dict[bytes, str] = {}  # the _KEEP ones alone: the common case is one lookup


def _header_kind(raw: bytes) -> tuple[str, int]:
    """The canonical name of an ASGI header name and what the platform does with it, cached."""
    kind = _header_kinds.get(raw)
    if kind is None:
        name = canonical_header_key(raw.decode("latin-1"))
        if name in REMOVED_REQUEST_HEADERS:
            kind = (name, _DROP)
        elif name == "X-Forwarded-For":
            kind = (name, _CHAIN)
        elif name in _ADDED:
            kind = (name, _REPLACED)
        else:
            kind = (name, _KEEP)
        if len(_header_kinds) < 4096:  # bounded: clients choose the names
            _header_kinds[raw] = kind
            if kind[1] == _KEEP:
                _kept_names[raw] = name
    return kind


def parse_query(query: bytes) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The query string as Go's `url.ParseQuery` reads it: last value and all values.

    `+` is a space; blank values are kept; a pair with a `;` or a broken `%` escape is
    dropped (Go >= 1.17); bytes that are not UTF-8 become U+FFFD, as Go's JSON encoder does.
    """
    multi: dict[str, list[str]] = {}
    if not query:
        return {}, multi
    if _NOTHING_TO_UNESCAPE(query):
        # The common case: split the text once.
        single: dict[str, str] = {}
        for text in query.decode("utf-8", "replace").split("&"):
            key, _, value = text.partition("=")
            if key in single:
                multi[key].append(value)
            elif text:
                multi[key] = [value]
            else:
                continue  # an empty pair, as in a&&b
            single[key] = value
        return single, multi
    for pair in query.split(b"&"):
        if not pair or b";" in pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        if b"%" in pair or b"+" in pair:
            if _BAD_ESCAPE.search(pair):
                continue
            key = unquote_to_bytes(raw_key.replace(b"+", b" ")).decode("utf-8", "replace")
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode("utf-8", "replace")
        else:
            key = raw_key.decode("utf-8", "replace")
            value = raw_value.decode("utf-8", "replace")
        _append(multi, key, value)
    return last_values(multi), multi


def _append(multi: dict[str, list[str]], key: str, value: str) -> None:
    values = multi.get(key)
    if values is None:
        multi[key] = [value]
    else:
        values.append(value)


def last_values(multi: dict[str, list[str]]) -> dict[str, str]:
    """The single-value map beside a multi-value one: a repeated name keeps its last value (SPEC §2)."""
    return {key: values[-1] for key, values in multi.items()}


def is_json_media_type(content_type: str) -> bool:
    # Parameters such as charset are ignored [choice] (SPEC §2).
    return content_type.partition(";")[0].strip().lower() == "application/json"


def encode_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """(body, isBase64Encoded): text only for JSON that is valid UTF-8, else base64 (SPEC §2)."""
    if content_type is None:
        return (base64.b64encode(body).decode("ascii") if body else ""), True
    if is_json_media_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


_time_cache: tuple[int, str] = (-1, "")


def format_request_time(epoch: int) -> str:
    """Go layout `2/Jan/2006:15:04:05 -0700` in UTC: the day is not zero-padded (SPEC §2)."""
    global _time_cache
    cached_epoch, text = _time_cache
    if cached_epoch == epoch:
        return text
    t = time.gmtime(epoch)
    text = f"{t.tm_mday}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    _time_cache = (epoch, text)
    return text


# Request ids need to be unique, not secret: a seeded generator is cheaper than os.urandom,
# and it is seeded again in each forked worker (gunicorn forks) so ids never repeat across them.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))
# The hex digit that sets a UUID's variant bits to RFC 9562's `10`, for each random one.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid4(x: str) -> str:
    """A UUID4 string from 32 random hex digits (two of them are overwritten: version and variant)."""
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def new_request_id() -> str:
    """A random UUID4 string, the form the platform's request ids have."""
    return _uuid4(_random.getrandbits(128).to_bytes(16, "little").hex())


def new_request_ids() -> tuple[str, str]:
    """Two UUID4 strings (the request id and the trace id) from one draw.

    `_uuid4` written out twice: two calls of it cost an eighth more, on every request.
    """
    x = _random.getrandbits(256).to_bytes(32, "little").hex()
    return (
        f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}",
        f"{x[32:40]}-{x[40:44]}-4{x[45:48]}-{_VARIANT[x[48]]}{x[49:52]}-{x[52:]}",
    )


def build_event(
    method: str,
    headers: Iterable[tuple[bytes, bytes]],
    query: bytes,
    body: bytes,
    client: tuple[str, int] | None,
    request_id: str,
    trace_id: str,
    now: float,
) -> Event:
    """The event of a direct HTTP invocation (SPEC §2)."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    forwarded: list[str] | None = None
    kept = _kept_names
    for raw_name, raw_value in headers:
        name = kept.get(raw_name)
        if name is None:
            name, kind = _header_kind(raw_name)
            if kind:
                if kind == _CHAIN:
                    if forwarded is None:
                        forwarded = []
                    forwarded.append(raw_value.decode("utf-8", "replace"))
                continue  # removed, or set by the platform below
        try:
            value = raw_value.decode()
        except UnicodeDecodeError:  # Go keeps the bytes; its JSON encoder turns invalid UTF-8 into U+FFFD
            value = raw_value.decode("utf-8", "replace")
        if name in single:
            multi[name].append(value)
        else:
            multi[name] = [value]
        single[name] = value

    single["X-Request-Id"] = request_id
    multi["X-Request-Id"] = [request_id]
    single["X-Trace-Id"] = trace_id
    multi["X-Trace-Id"] = [trace_id]
    ip, port = client if client else ("", 0)
    if ip:
        # The incoming chain, if any, then the caller; the caller's address in brackets.
        # Behind a trusted proxy the server's client address is the chain's last one already.
        if forwarded is None:
            forwarded = [ip]
        elif forwarded[-1].rpartition(",")[2].strip() != ip:
            forwarded.append(ip)
        address = f"[{ip}]:{port}"
        single["X-Real-Remote-Address"] = address
        multi["X-Real-Remote-Address"] = [address]
    if forwarded is not None:
        chain = forwarded[0] if len(forwarded) == 1 else ", ".join(forwarded)
        single["X-Forwarded-For"] = chain
        multi["X-Forwarded-For"] = [chain]

    query_single, query_multi = parse_query(query)
    body_text, is_base64 = encode_body(body, single.get("Content-Type"))
    epoch = int(now)
    return {
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single,
        "multiValueQueryStringParameters": query_multi,
        "requestContext": {
            "identity": {"sourceIp": ip, "userAgent": single.get("User-Agent", "")},
            "httpMethod": method,
            "requestId": request_id,
            "requestTime": format_request_time(epoch),
            "requestTimeEpoch": epoch,
        },
        "body": body_text,
        "isBase64Encoded": is_base64,
        # A direct invocation has no path (SPEC §2, observed).
        "url": "",
        "params": {},
        "multiValueParams": {},
        "pathParams": {},
    }


def build_raw_event(body: bytes) -> Any:
    """`?integration=raw` (SPEC §7): the body itself, parsed when it is JSON, else its text."""
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # nested deeper than json.loads reads: text, as any non-JSON
        return text
