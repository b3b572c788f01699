"""JSON deeper than json.loads reads, read as Go's decoder reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sf_asgi._deepjson import GO_MAX_DEPTH, TooDeep, depth, top_level_fields

FIELDS = {"statusCode", "body", "headers"}


def nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 0),
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        ('{"a": "\\"[[["}', 1),  # nor after an escaped quote
        (nested(50_000), 50_000),
    ],
)
def test_depth(text: str, expected: int) -> None:
    assert depth(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"statusCode": 201, "body": "x"}', {"statusCode": 201, "body": "x"}),
        ('{"extra": ' + nested(5_000) + ', "body": "after"}', {"body": "after"}),
        ('{"body": "before", "extra": ' + nested(5_000) + "}", {"body": "before"}),
        (
            '{"headers": {"A": "1,2"}, "x": {"y": [1, 2]}, "statusCode": 200}',
            {"headers": {"A": "1,2"}, "statusCode": 200},
        ),
        ('{"body": "a:b,c{d}"}', {"body": "a:b,c{d}"}),  # structure inside strings is text
        ('{"body": "1", "body": "2"}', {"body": "2"}),  # the last one wins, as in Go
        ("[" + nested(3_000) + "]", []),  # not an object: the caller says so
        ('"text"', "text"),
    ],
)
def test_top_level_fields(text: str, expected: Any) -> None:
    assert top_level_fields(text, FIELDS) == expected


def test_past_gos_limit_is_too_deep() -> None:
    text = '{"extra": ' + nested(GO_MAX_DEPTH) + "}"
    with pytest.raises(TooDeep, match="10000 levels"):
        top_level_fields(text, FIELDS)
    assert top_level_fields('{"extra": ' + nested(GO_MAX_DEPTH - 1) + "}", FIELDS) == {}


def test_a_wanted_field_too_deep_to_read_is_too_deep() -> None:
    with pytest.raises(TooDeep, match="headers is nested too deeply"):
        top_level_fields('{"headers": ' + nested(5_000) + "}", FIELDS)


def test_matches_json_loads_where_both_read() -> None:
    text = json.dumps({"statusCode": 404, "body": 'x\u00e9\\"', "headers": {"K": "v"}, "other": [{"a": [1]}]})
    assert top_level_fields(text, FIELDS) == {k: v for k, v in json.loads(text).items() if k in FIELDS}
