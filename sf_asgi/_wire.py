"""The wire between the front and a process instance: length-prefixed frames over pipes.

A frame is an 8-byte header (the lengths of its two parts, big-endian), then `meta`, a
small JSON object saying what the frame is, then `payload`, bytes that are passed
through as they are: the event's JSON on the way in, the result's JSON text on the way
out. The result text is never parsed or re-encoded by the wire, so what the front reads
back as the platform's response is exactly what the runtime's `json.dumps` wrote (SPEC §4).

The instance's stdin carries frames from the front, its stdout frames back; what the
handler prints goes to a third pipe (see `_runtime.py`).
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

_HEADER = struct.Struct(">II")
HEADER_SIZE = _HEADER.size

# Front -> instance.
INVOKE = "invoke"
# Instance -> front.
READY = "ready"  # the module is imported: {"init_ms"}
LOAD_ERROR = "load_error"  # it could not be: {"report", "error"}, then the instance exits
RESULT = "result"  # {"id", "ok": true, payload = result JSON} or {"id", "ok": false, "error"}

Meta = dict[str, Any]


class WireError(Exception):
    """The other side wrote something that is not a frame."""


def encode(meta: Meta, payload: bytes = b"") -> bytes:
    head = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    return b"".join((_HEADER.pack(len(head), len(payload)), head, payload))


def _meta(data: bytes | bytearray) -> Meta:
    try:
        meta = json.loads(data)
    except ValueError as exc:
        raise WireError(f"a frame's meta is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise WireError("a frame's meta is not an object")
    return meta


def read_frame(stream: IO[bytes]) -> tuple[Meta, bytes] | None:
    """The next frame from a blocking binary stream; None at a clean end of the stream."""
    header = _read_exactly(stream, HEADER_SIZE)
    if header is None:
        return None
    meta_size, payload_size = _HEADER.unpack(header)
    meta = _read_exactly(stream, meta_size)
    payload = _read_exactly(stream, payload_size) if payload_size else b""
    if meta is None or payload is None:
        raise WireError("the stream ended inside a frame")
    return _meta(meta), payload


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    if not data:
        return None
    while len(data) < size:  # a pipe may hand a large frame over in pieces
        more = stream.read(size - len(data))
        if not more:
            raise WireError("the stream ended inside a frame")
        data += more
    return data


class FrameBuffer:
    """Frames from bytes that arrive in pieces: `feed` returns the frames completed so far."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()  # appended to in place: a large payload arrives in many pieces

    def feed(self, chunk: bytes) -> list[tuple[Meta, bytes]]:
        data = self._data
        data += chunk
        frames = []
        start = 0
        while len(data) - start >= HEADER_SIZE:
            meta_size, payload_size = _HEADER.unpack_from(data, start)
            end = start + HEADER_SIZE + meta_size + payload_size
            if len(data) < end:
                break
            meta_end = start + HEADER_SIZE + meta_size
            frames.append((_meta(data[start + HEADER_SIZE : meta_end]), bytes(data[meta_end:end])))
            start = end
        del data[:start]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame not complete yet."""
        return len(self._data)
