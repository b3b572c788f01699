"""Handler result -> HTTP response: pure functions (SPEC §4, §5, §7).

The platform works in two steps: the Python runtime serialises the return value with
`json.dumps`, then a strict (Go) decoder reads that text into
`{statusCode: int, headers: {str: str}, multiValueHeaders: {str: [str]}, body: str,
isBase64Encoded: bool}`. `render_result` takes the first step's text and plays the second.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import traceback
from typing import Any

from ._deepjson import top_level_fields
from ._event import canonical_header_key, is_token
from ._loader import user_frames
from ._types import ErrorBody

# Request and response JSON are each limited to 3.5 MB (SPEC §6), read as MiB [choice].
MAX_PAYLOAD = 3_670_016

MALFORMED_MESSAGE = "Malformed serverless function response: not a valid json"

# Response header rules (SPEC §4), by lower-case name.
_DROPPED = frozenset({"host", "authorization", "user-agent", "connection", "max-forwards", "cookie", "content-length"})
_FORBIDDEN = frozenset({"proxy-authenticate", "transfer-encoding", "via"})
_REMAPPED = frozenset({"content-md5", "date", "server", "www-authenticate"})
_NO_BODY = frozenset({204, 304})

# CR, LF and NUL would break HTTP framing; other controls (but tab) are refused by h11 and RFC 9110.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_JSON_HEADERS = [(b"content-type", b"application/json")]
_UNSET: Any = object()


@dataclasses.dataclass(slots=True)
class HTTPResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    # The error JSON when the platform, not the handler, wrote this response.
    error: dict[str, Any] | None = None


class MalformedResult(ValueError):
    """The result cannot be read as an HTTP response; the message says which field is wrong."""


def serialise(result: Any) -> str | None:
    """The runtime's `json.dumps(result)` (SPEC §4); None when it can be skipped.

    It is skipped for a plain result (`_plain_size`): one that cannot fail to serialise,
    reads back as itself and is far under the size limit. `render_result` then reads the
    object directly, and `result_text` writes the text if it is needed after all.
    Raises as `json.dumps` does: failing to serialise is an error in user code.
    """
    size = _plain_size(result)
    if 0 <= size <= MAX_PAYLOAD:
        return None
    return json.dumps(result)


def result_text(result: Any, text: str | None) -> str:
    """The JSON text of a result, from `serialise`."""
    return json.dumps(result) if text is None else text


def render_result(text: str | None, result: Any = _UNSET) -> HTTPResponse:
    """The HTTP response for the JSON text of a handler's result; MalformedResult if it is not one.

    `result`, the object that was serialised, spares reading the text back when it is
    made of plain JSON types only: it then reads exactly as its text would. A text of
    None (from `serialise`) says the result is plain.
    """
    if text is None and type(result) is dict:
        response = _render_plain(result)
        if response is not None:
            return response
    elif text is not None and (result is _UNSET or "NaN" in text or "Infinity" in text or _plain_size(result) < 0):
        result = _read_back(text)
    if result is None:
        return HTTPResponse(200, [], b"")
    if not isinstance(result, dict):
        raise MalformedResult(f"the result is {_describe(result)}, not an object with statusCode, headers and body")

    status = result.get("statusCode")
    if status is not None and type(status) is not int:  # 200.0 and true are not Go ints either
        raise MalformedResult(f"statusCode must be an integer, got {_describe(status)}")
    if not status:
        status = 200  # missing, null or 0: Go's zero value
    elif not 200 <= status <= 599:
        # 1xx cannot end an HTTP/1.1 response [choice]; outside 100-599 is not HTTP at all.
        raise MalformedResult(f"statusCode {status} is not a final HTTP status (200-599)")

    headers = _merge_headers(result.get("headers"), result.get("multiValueHeaders"))

    body = result.get("body")
    if body is None:
        body = ""
    elif not isinstance(body, str):
        raise MalformedResult(f"body must be a string, got {_describe(body)}; use json.dumps() for a JSON body")
    is_base64 = result.get("isBase64Encoded")
    if is_base64 is not None and not isinstance(is_base64, bool):
        raise MalformedResult(f"isBase64Encoded must be true or false, got {_describe(is_base64)}")
    data = _decode_base64(body) if is_base64 else _utf8(body)
    if status in _NO_BODY:
        data = b""
    return HTTPResponse(status, headers, data)


def _render_plain(result: dict[str, Any]) -> HTTPResponse | None:
    """`render_result` for the common plain result (no multiValueHeaders, no base64), or None.

    The types are right already (`_plain_size`); whatever else needs a look, or an error
    message, goes to the general path.
    """
    if "multiValueHeaders" in result or result.get("isBase64Encoded"):
        return None
    status = result.get("statusCode") or 200
    if not 200 <= status <= 599:
        return None
    out: list[tuple[bytes, bytes]] = []
    headers = result.get("headers")
    if headers:
        for name, value in headers.items():
            wire = _wire_names.get(name)
            if wire is None or (value and (not value.isprintable() or value[0] == " " or value[-1] == " ")):
                return None  # a name not seen yet, or a value to look at closely (or trim)
            if wire:  # b"": dropped
                out.append((wire, value.encode() if value else b""))
        # Two names that differ in case only are one header (SPEC §4): the general path merges them.
        if len(out) > 1 and len({wire for wire, _ in out}) < len(out):
            return None
    body = result.get("body")
    try:
        data = body.encode() if body and status not in _NO_BODY else b""
    except UnicodeEncodeError:  # lone surrogates
        return None
    return HTTPResponse(status, out, data)


# The fields a plain result may have (any other would be serialised for the platform to ignore).
_PLAIN_FIELDS = frozenset({"statusCode", "body", "isBase64Encoded", "headers", "multiValueHeaders"})


def _plain_size(result: Any) -> int:
    """At least the length of `json.dumps(result)` for a plain result, else -1.

    Plain: None, or a dict of the platform's fields only, each None or of its exact JSON
    type (a subclass may serialise differently, or not read back as itself). A character
    takes at most 12 characters of ASCII-only JSON (an escaped surrogate pair); 128 covers
    the field names, quotes and separators.
    """
    if result is None:
        return 4
    if type(result) is not dict or not result.keys() <= _PLAIN_FIELDS:
        return -1
    size = 128
    status = result.get("statusCode")
    if status is not None and (type(status) is not int or not 0 <= status < 1000):
        return -1
    body = result.get("body")
    if body is not None:
        if type(body) is not str:
            return -1
        size += 12 * len(body)
    is_base64 = result.get("isBase64Encoded")
    if is_base64 is not None and type(is_base64) is not bool:
        return -1
    for key in ("headers", "multiValueHeaders"):
        values = result.get(key)
        if values is not None:
            if type(values) is not dict:
                return -1
            items = _plain_map_size(values, key == "headers")
            if items < 0:
                return -1
            size += items
    return size


def _plain_map_size(values: dict[Any, Any], single: bool) -> int:
    """`_plain_size` of headers (single) or multiValueHeaders."""
    size = 0
    for name, value in values.items():
        if type(name) is not str:
            return -1
        size += 12 * len(name) + 8
        if value is None:
            continue
        if single:
            if type(value) is not str:
                return -1
            size += 12 * len(value)
            continue
        if type(value) is not list:
            return -1
        for item in value:
            if item is not None and type(item) is not str:
                return -1
            size += 8 if item is None else 12 * len(item) + 4
    return size


def _merge_headers(headers: Any, multi: Any) -> list[tuple[bytes, bytes]]:
    merged: dict[str, tuple[str, list[str]]] = {}
    if headers is not None:
        if not isinstance(headers, dict):
            raise MalformedResult(f"headers must be an object of strings, got {_describe(headers)}")
        for name, value in headers.items():
            if value is None:
                value = ""  # JSON null decodes to Go's zero value
            elif not isinstance(value, str):
                raise MalformedResult(f"headers[{name!r}] must be a string, got {_describe(value)}")
            merged[name.lower()] = (name, [value])
    if multi is not None:
        if not isinstance(multi, dict):
            raise MalformedResult(f"multiValueHeaders must be an object of string lists, got {_describe(multi)}")
        for name, values in multi.items():
            if values is None:
                values = []
            elif not isinstance(values, list):
                raise MalformedResult(f"multiValueHeaders[{name!r}] must be a list of strings, got {_describe(values)}")
            for value in values:
                if value is not None and not isinstance(value, str):
                    raise MalformedResult(f"multiValueHeaders[{name!r}] holds {_describe(value)}, not a string")
            # multiValueHeaders wins over headers for the same name, in any letter case (SPEC §4).
            merged[name.lower()] = (name, ["" if v is None else v for v in values])

    out: list[tuple[bytes, bytes]] = []
    for name, values in merged.values():
        raw_name = _wire_names.get(name) or _wire_name(name)
        if not raw_name:
            continue  # dropped
        for value in values:  # one line per value: Set-Cookie is never comma-joined
            # isprintable() is a fast first look: what passes it holds no control character.
            if not value.isprintable() and _BAD_VALUE.search(value):
                raise MalformedResult(f"the value of header {name} holds a control character (CR, LF or NUL)")
            # Go's server trims spaces and tabs around a value as it writes it (textproto.TrimString).
            out.append((raw_name, _utf8(value.strip(" \t"))))
    return out


_wire_names: dict[str, bytes] = {}


def _wire_name(name: str) -> bytes:
    """The name as it goes out (b"" when dropped); what the rules decide is cached per name."""
    lower = name.lower()
    if lower in _FORBIDDEN:
        raise MalformedResult(f"the response header {name} is not allowed by the platform; remove it")
    if not is_token(name):
        raise MalformedResult(f"{name!r} is not a valid HTTP header name")
    wire = b""
    if lower not in _DROPPED:
        wire = canonical_header_key(name).encode("ascii")
        if lower in _REMAPPED:
            wire = b"X-Yf-Remapped-" + wire
    if len(_wire_names) < 4096:  # bounded: handlers choose the names
        _wire_names[name] = wire
    return wire


def _decode_base64(text: str) -> bytes:
    # Go's StdEncoding: padded standard alphabet, line breaks ignored.
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedResult(f"isBase64Encoded is true but body is not valid base64 ({exc})") from None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\udXXX" escapes become U+FFFD, as in Go
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _read_back(text: str) -> Any:
    """The runtime's JSON text read as the platform's decoder reads it; MalformedResult if it cannot."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise MalformedResult(str(exc)) from None
    except RecursionError:
        pass  # deeper than Python reads, yet Go may read it: only the response's own fields matter
    try:
        return top_level_fields(text, _PLAIN_FIELDS, _reject_constant)
    except ValueError as exc:
        raise MalformedResult(str(exc)) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"the result holds {name}, which is not JSON")


def _describe(value: Any) -> str:
    kinds = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    text = json.dumps(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kinds.get(type(value), type(value).__name__)} {text}"


def _error(status: int, body: dict[str, Any], *extra: tuple[bytes, bytes]) -> HTTPResponse:
    return HTTPResponse(status, [*_JSON_HEADERS, *extra], json.dumps(body).encode("utf-8"), body)


def malformed_response(text: str) -> HTTPResponse:
    """The platform's 502 for a result it cannot read (SPEC §4)."""
    return _error(502, {"errorMessage": MALFORMED_MESSAGE, "errorType": "ProxyIntegrationError", "payload": text})


def gateway_error(status: int, message: str) -> HTTPResponse:
    """API Gateway's own answer [choice: its body is not documented]: `{"message": ...}`."""
    return HTTPResponse(status, list(_JSON_HEADERS), json.dumps({"message": message}).encode())


def platform_error(status: int, error_type: str, message: str) -> HTTPResponse:
    """An error the platform answers itself (413, 429, 504, ...) as `{errorMessage, errorType}`."""
    return _error(status, {"errorMessage": message, "errorType": error_type})


def error_body(exc: BaseException) -> ErrorBody:
    """`{errorMessage, errorType, stackTrace}` for an exception in user code (SPEC §5)."""
    # sf_asgi's own frames stand where the platform's runtime frame would; they would only confuse.
    frames = user_frames(exc)
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    return {"errorMessage": message, "errorType": type(exc).__name__, "stackTrace": traceback.format_list(frames)}


def error_response(exc: BaseException) -> HTTPResponse:
    """The platform's 502 for an exception in user code (SPEC §5)."""
    return user_error_response(error_body(exc))


def user_error_response(body: ErrorBody | dict[str, Any]) -> HTTPResponse:
    """The platform's 502 for an error in user code, from its `{errorMessage, errorType, stackTrace}`."""
    return _error(502, dict(body), (b"x-function-error", b"true"))


def raw_response(text: str) -> HTTPResponse:
    """`?integration=raw` (SPEC §7): always 200, the JSON text of the result as it is."""
    return HTTPResponse(200, list(_JSON_HEADERS), text.encode("utf-8"))


def wire_headers(response: HTTPResponse) -> list[tuple[bytes, bytes]]:
    """The headers as they go out, with the Content-Length sf_asgi computes (SPEC §4)."""
    if response.status in _NO_BODY:
        return response.headers
    return [*response.headers, (b"content-length", str(len(response.body)).encode("ascii"))]
