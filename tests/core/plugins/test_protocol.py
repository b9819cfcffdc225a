"""The frame protocol: round trip, and every kind of garbage is a ProtocolError (never a hang or crash)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from aetherlens.plugins.protocol import MAX_FRAME, ProtocolError, encode, read_frame


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_frames_round_trip_and_clean_eof() -> None:
    reader = _reader(encode({"type": "collect", "id": 1}) + encode({"type": "heartbeat", "time": 1.5}))
    assert await read_frame(reader) == {"type": "collect", "id": 1}
    assert await read_frame(reader) == {"type": "heartbeat", "time": 1.5}
    assert await read_frame(reader) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not a frame\n", "exceeds"),
        (struct.pack(">I", 5) + b"hello", "not JSON"),
        (struct.pack(">I", 7) + b"[1,2,3]", "JSON object with a 'type'"),
        (struct.pack(">I", 2) + b"{}", "JSON object with a 'type'"),
        (struct.pack(">I", 50) + b'{"type": "x"', "ended inside a frame body"),
        (b"\x00\x00", "ended inside a frame header"),
        (struct.pack(">I", MAX_FRAME + 1), "exceeds"),
    ],
)
async def test_garbage_is_a_protocol_error(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        await read_frame(_reader(data))


def test_oversized_message_is_refused_at_encode() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        encode({"type": "result", "data": "x" * (MAX_FRAME + 1)})
