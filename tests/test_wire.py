"""The frames between the front and a process instance."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream

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


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_front_reads_frames_from_an_anyio_stream(anyio_backend: str) -> None:
    send, receive = anyio.create_memory_object_stream[bytes](100)
    data = b"".join(_wire.encode(meta, payload) for meta, payload in FRAMES)
    for start in range(0, len(data), 65536):  # as a pipe hands them over: in chunks
        await send.send(data[start : start + 65536])
    await send.aclose()
    stream = BufferedByteReceiveStream(_as_byte_stream(receive))
    async with receive:
        assert [await _wire.receive_frame(stream) for _ in FRAMES] == FRAMES
        with pytest.raises((anyio.EndOfStream, anyio.IncompleteRead)):
            await _wire.receive_frame(stream)


def _as_byte_stream(receive: MemoryObjectReceiveStream[bytes]) -> Any:
    class Stream(anyio.abc.ByteReceiveStream):
        async def receive(self, max_bytes: int = 65536) -> bytes:
            return await receive.receive()

        async def aclose(self) -> None:
            await receive.aclose()

    return Stream()


def test_meta_is_compact_json() -> None:
    frame = _wire.encode({"op": "ready"})
    assert frame[_wire.HEADER_SIZE :] == json.dumps({"op": "ready"}, separators=(",", ":")).encode()
