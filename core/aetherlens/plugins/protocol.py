"""The frame protocol between the supervisor and a plugin process.

A frame is a 4-byte big-endian length followed by that many bytes of JSON (one object). The child's
stdout carries only frames; anything a plugin prints goes to stderr. A length beyond ``MAX_FRAME`` or a
body that is not a JSON object is a protocol error: the supervisor then kills the process, because a
corrupted stream cannot be resynchronised.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
from typing import Any, Final

import orjson

MAX_FRAME: Final = 16 * 1024 * 1024
# Pushes a plugin may have sent and not yet had acknowledged; the supervisor treats more as a protocol
# error. Small on purpose: it is what bounds the memory a pushing plugin can make the core hold.
MAX_UNACKED_PUSHES: Final = 4
_HEADER: Final = struct.Struct(">I")

# Exit codes the host uses so the supervisor can name the cause of a death.
EXIT_MEMORY: Final = 86
EXIT_CONFIG: Final = 87
EXIT_LOAD: Final = 88


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame."""


def encode(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message, default=_default)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


def _default(value: Any) -> Any:
    # datetimes are handled by orjson; anything else a plugin hands us becomes its string form.
    return str(value)


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("frame is not a JSON object with a 'type'")
    return message


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Read one frame; ``None`` at a clean end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a frame header") from None
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame length {length} exceeds the {MAX_FRAME}-byte limit (garbage on stdout?)")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("stream ended inside a frame body") from None
    return decode_body(body)


class FdWriter:
    """Blocking frame writer on a raw file descriptor, safe to use from any thread of the child."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = encode(message)
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
