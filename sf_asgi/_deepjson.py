"""JSON nested deeper than Python's stack allows, read as the platform's Go decoder reads it.

Go's `encoding/json` accepts 10,000 levels of nesting; Python's `json.loads` stops near
the interpreter's recursion limit (about 1,000, less on a deep stack). A handler's result
with a deeply nested extra field is therefore a valid response on the platform, yet
`json.loads` raises RecursionError on it. These pure functions find the nesting depth
without recursion, and read only the top-level fields that matter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any

# encoding/json's maxNestingDepth.
GO_MAX_DEPTH = 10_000

# Strings (with their escapes), the structural characters, and runs of anything else.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^"\[\]{}:,]+', re.DOTALL)


class TooDeep(ValueError):
    """Nested deeper than Go's decoder reads."""


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text."""
    level = deepest = 0
    for match in _TOKEN.finditer(text):
        char = match.group()[0]
        if char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    return deepest


def top_level_fields(text: str, wanted: Collection[str], parse_constant: Callable[[str], Any] | None = None) -> Any:
    """The JSON text's top-level object with only the `wanted` keys read (others skipped unread).

    The result when the text is not an object; TooDeep past Go's limit, or when a wanted
    field itself is too deep for `json.loads` (none of the fields it is used for nests).
    Raises ValueError for a text that is not JSON.
    """
    if depth(text) > GO_MAX_DEPTH:
        raise TooDeep(f"the JSON is nested more than {GO_MAX_DEPTH} levels deep")
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        # An array or a scalar at the top: its shape is all the caller needs.
        return [] if stripped.startswith("[") else json.loads(text, parse_constant=parse_constant)
    fields: dict[str, Any] = {}
    level = 0
    key: str | None = None
    start = -1
    for match in _TOKEN.finditer(text):
        token = match.group()
        char = token[0]
        if char in "[{":
            level += 1
            continue
        if char in "]}":
            level -= 1
            if level == 0:
                _take(fields, key, text, start, match.start(), wanted, parse_constant)
                break
            continue
        if level != 1:
            continue
        if char == '"' and start < 0:
            key = json.loads(token)
        elif char == ":":
            start = match.end()
        elif char == ",":
            _take(fields, key, text, start, match.start(), wanted, parse_constant)
            key, start = None, -1
    return fields


def _take(
    fields: dict[str, Any],
    key: str | None,
    text: str,
    start: int,
    end: int,
    wanted: Collection[str],
    parse_constant: Callable[[str], Any] | None,
) -> None:
    if key is None or key not in wanted or start < 0:
        return
    try:
        fields[key] = json.loads(text[start:end], parse_constant=parse_constant)
    except RecursionError:
        raise TooDeep(f"{key} is nested too deeply to be read") from None
