"""A binary response: a PNG drawn in code, sent base64-encoded with isBase64Encoded."""

import base64
import struct
import zlib


def _png(width, height, rgb):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def handler(event, context):
    color = event["queryStringParameters"].get("color", "3366cc")
    try:
        rgb = bytes.fromhex(color)[:3].ljust(3, b"\x00")
    except ValueError:
        return {"statusCode": 400, "body": "color must be six hex digits, e.g. ?color=ff8800"}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png", "Cache-Control": "max-age=60"},
        "body": base64.b64encode(_png(64, 32, rgb)).decode("ascii"),
        "isBase64Encoded": True,
    }
