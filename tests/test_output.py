"""The server's stdout as the function's log: whole lines from each instance."""

from __future__ import annotations

import json

import pytest

from sf_asgi._output import LINE_LIMIT, LineRelay, Output, format_system_lines


class Recorder(Output):
    def __init__(self) -> None:
        super().__init__("text", "info")
        self.writes: list[bytes] = []

    def lines(self, data: bytes) -> None:
        self.writes.append(data)


@pytest.mark.parametrize(
    ("chunks", "writes"),
    [
        ([b"one\n"], [b"one\n"]),
        ([b"one\ntw", b"o\n"], [b"one\n", b"two\n"]),
        ([b"a", b"b", b"c\n"], [b"abc\n"]),
        ([b"one\ntwo\nthr"], [b"one\ntwo\n"]),  # the tail waits for its newline
        ([b"\n"], [b"\n"]),
    ],
)
def test_only_whole_lines_are_written(chunks: list[bytes], writes: list[bytes]) -> None:
    output = Recorder()
    relay = LineRelay(output)
    for chunk in chunks:
        relay.feed(chunk)
    assert output.writes == writes


def test_a_last_line_without_newline_gets_one_when_the_instance_ends() -> None:
    output = Recorder()
    relay = LineRelay(output)
    relay.feed(b"done\npartial")
    relay.close()
    relay.close()
    assert output.writes == [b"done\n", b"partial\n"]


def test_a_line_over_the_limit_is_written_in_pieces_not_held() -> None:
    output = Recorder()
    relay = LineRelay(output)
    for _ in range(3):
        relay.feed(b"x" * (LINE_LIMIT // 2 + 1))
    assert output.writes == [b"x" * (LINE_LIMIT + 2) + b"\n"]


def test_bytes_that_are_not_utf8_are_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    Output("text", "info").lines(b"ok \xff\xfe\n")
    assert capsys.readouterr().out == "ok \ufffd\ufffd\n"


@pytest.mark.parametrize(("log_format", "json_lines"), [("text", False), ("json", True)])
def test_system_lines_in_both_formats(capsys: pytest.CaptureFixture[str], log_format: str, json_lines: bool) -> None:
    Output(log_format, "info").system_lines("rid-1", "START RequestID: rid-1 Version: $latest", flush=True)
    out = capsys.readouterr().out
    if json_lines:
        line = {"level": "INFO", "msg": "START RequestID: rid-1 Version: $latest", "request_id": "rid-1"}
        assert json.loads(out) == line
    else:
        assert out == "START RequestID: rid-1 Version: $latest\n"


def test_system_lines_are_off_above_info(capsys: pytest.CaptureFixture[str]) -> None:
    Output("text", "warning").system_lines("r", "START RequestID: r Version: 1", flush=True)
    assert capsys.readouterr().out == ""


def test_format_system_lines_ends_each_line() -> None:
    assert format_system_lines(False, "r", ("END RequestID: r", "REPORT ...")) == "END RequestID: r\nREPORT ...\n"
