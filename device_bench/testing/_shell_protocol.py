"""Shell protocol v2 framing (`u8 id + u32 LE length + data`). Pure, no I/O."""

from __future__ import annotations

import struct

STDIN = 0
STDOUT = 1
STDERR = 2
EXIT = 3
CLOSE_STDIN = 4
WINDOW_SIZE = 5

_FRAME = struct.Struct("<BI")


def encode_frame(packet_id: int, data: bytes) -> bytes:
    """Returns one shell-v2 frame.

    Example:
        >>> encode_frame(EXIT, bytes([3]))
        b'\\x03\\x01\\x00\\x00\\x00\\x03'
    """
    return _FRAME.pack(packet_id, len(data)) + data


class FrameParser:
    """Splits a byte stream into shell-v2 frames; frames may span or share ADB packets."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Adds `data`; returns the frames completed by it as `(id, payload)` pairs."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= _FRAME.size:
            packet_id, length = _FRAME.unpack_from(self._buffer)
            end = _FRAME.size + length
            if len(self._buffer) < end:
                break
            frames.append((packet_id, bytes(self._buffer[_FRAME.size:end])))
            del self._buffer[:end]
        return frames
