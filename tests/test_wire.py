"""The frames between the front and a process instance."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from sf_asgi import _wire

FRAMES = [
    ({"op": "invoke", "id": 1, "rid": "r"}, b'{"httpMethod":"GET"}'),
    ({"op": "ready", "init_ms": 1.5}, b""),
    ({"op": "result", "id": 7, "ok": True}, "\u00e9\u4e2d".encode()),
    ({"op": "result", "id": 8, "ok": True}, b"x" * 3_000_000),  # larger than a pipe's buffer
]


@pytest.mark.parametrize(("meta", "payload"), FRAMES)
def test_a_frame_reads_back_as_written(meta: dict[str, Any], payload: bytes) -> None:
    stream = io.BytesIO(_wire.encode(meta, payload) * 2)
    assert _wire.read_frame(stream) == (meta, payload)
    assert _wire.read_frame(stream) == (meta, payload)
    assert _wire.read_frame(stream) is None  # a clean end


def test_frames_cross_a_real_pipe_in_pieces() -> None:
    read_end, write_end = os.pipe()
    data = b"".join(_wire.encode(meta, payload) for meta, payload in FRAMES)

    def write() -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view[:1000]) :]
        os.close(write_end)

    import threading

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(read_end, "rb") as stream:
        assert [_wire.read_frame(stream) for _ in FRAMES] == FRAMES
        assert _wire.read_frame(stream) is None
    writer.join(5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_wire.encode({"op": "x"}, b"abc")[:-1], "ended inside a frame"),
        (_wire.encode({"op": "x"})[:5], "ended inside a frame"),
        (b"\x00\x00\x00\x03\x00\x00\x00\x00abc", "not JSON"),
        (b"\x00\x00\x00\x02\x00\x00\x00\x00[]", "not an object"),
    ],
)
def test_a_broken_frame_is_a_wire_error(data: bytes, message: str) -> None:
    with pytest.raises(_wire.WireError, match=message):
        _wire.read_frame(io.BytesIO(data))


@pytest.mark.parametrize("piece", [1, 7, 4096, 65536, 10_000_000])
def test_the_front_reassembles_frames_from_pieces(piece: int) -> None:
    data = b"".join(_wire.encode(meta, payload) for meta, payload in FRAMES)
    buffer = _wire.FrameBuffer()
    frames = []
    for start in range(0, len(data), piece):  # as a pipe hands them over
        frames.extend(buffer.feed(data[start : start + piece]))
    assert frames == FRAMES
    assert buffer.pending == 0


def test_a_frame_buffer_refuses_a_meta_that_is_not_json() -> None:
    with pytest.raises(_wire.WireError):
        _wire.FrameBuffer().feed(b"\x00\x00\x00\x03\x00\x00\x00\x00abc")


def test_meta_is_compact_json() -> None:
    frame = _wire.encode({"op": "ready"})
    assert frame[_wire.HEADER_SIZE :] == json.dumps({"op": "ready"}, separators=(",", ":")).encode()
