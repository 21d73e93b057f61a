"""ADB packet codec: 24-byte headers and payload checksums. Pure functions, no I/O.

Hand-written on purpose: the Python ADB libraries (adb-shell, adbutils) implement the
host side only; no maintained library implements the device side of the wire protocol.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

HEADER_SIZE = 24
_HEADER = struct.Struct("<6I")

VERSION_MIN = 0x01000000
VERSION_SKIP_CHECKSUM = 0x01000001  # from this version on a sender may write data_check = 0
MAX_PAYLOAD = 1024 * 1024
MAX_PAYLOAD_HANDSHAKE = 4096  # CNXN/AUTH payloads fit here whatever the peer advertises


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


CNXN = _cmd(b"CNXN")
AUTH = _cmd(b"AUTH")
OPEN = _cmd(b"OPEN")
OKAY = _cmd(b"OKAY")
CLSE = _cmd(b"CLSE")
WRTE = _cmd(b"WRTE")
STLS = _cmd(b"STLS")
COMMANDS = frozenset({CNXN, AUTH, OPEN, OKAY, CLSE, WRTE, STLS})

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3


class PacketError(ValueError):
    """Bytes that are not a valid ADB packet (bad magic, unknown command, oversize, checksum)."""


@dataclass(frozen=True)
class Header:
    """A decoded packet header; `data_length` payload bytes follow it on the wire."""

    command: int
    arg0: int
    arg1: int
    data_length: int
    data_check: int


@dataclass(frozen=True)
class Packet:
    """One ADB packet: command, two arguments and the payload."""

    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        """The command as its four ASCII letters, e.g. "WRTE"."""
        return command_name(self.command)


def command_name(command: int) -> str:
    """Returns the four-letter name of `command` ("WRTE"), or its hex value if unknown."""
    raw = struct.pack("<I", command)
    return raw.decode("ascii") if raw.isalpha() else f"0x{command:08x}"


def checksum(data: bytes) -> int:
    """The ADB payload checksum: the plain byte sum (not a CRC)."""
    # numpy: a Python-level sum() over a 1 MiB payload costs ~20 ms and capped the
    # direct (adb-shell, checksummed protocol) path at ~25 MB/s in bench/transfer.py.
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


def encode_packet(packet: Packet) -> bytes:
    """Returns header + payload; the checksum is always the real sum (adb-shell verifies it).

    Example:
        >>> encode_packet(Packet(OKAY, 1, 2))[:4]
        b'OKAY'
    """
    header = _HEADER.pack(
        packet.command,
        packet.arg0 & 0xFFFFFFFF,
        packet.arg1 & 0xFFFFFFFF,
        len(packet.data),
        checksum(packet.data),
        packet.command ^ 0xFFFFFFFF,
    )
    return header + packet.data


def decode_header(raw: bytes, *, max_payload: int = MAX_PAYLOAD) -> Header:
    """Parses a 24-byte header.

    Args:
        raw: exactly `HEADER_SIZE` bytes.
        max_payload: the largest `data_length` accepted (default 1 MiB).

    Returns:
        The `Header`.

    Raises:
        PacketError: wrong size, bad magic, unknown command or a payload over `max_payload`.
    """
    if len(raw) != HEADER_SIZE:
        raise PacketError(f"An ADB header is {HEADER_SIZE} bytes. Received: len(raw)={len(raw)}")
    command, arg0, arg1, length, check, magic = _HEADER.unpack(raw)
    if magic != command ^ 0xFFFFFFFF:
        raise PacketError(
            f"Bad magic: expected command ^ 0xffffffff. Received: command=0x{command:08x}, "
            f"magic=0x{magic:08x}"
        )
    if command not in COMMANDS:
        raise PacketError(f"Unknown ADB command. Received: command={command_name(command)}")
    if length > max_payload:
        raise PacketError(
            f"Payload longer than the agreed maximum {max_payload}. Received: data_length={length}"
        )
    return Header(command, arg0, arg1, length, check)


def check_payload(header: Header, data: bytes, *, version: int) -> Packet:
    """Verifies the payload against the header and returns the whole packet.

    A zero `data_check` is accepted once `version` (the agreed one) allows skipping it.

    Raises:
        PacketError: wrong length or checksum mismatch.
    """
    if len(data) != header.data_length:
        raise PacketError(
            f"Payload length differs from the header. Received: expected={header.data_length}, "
            f"got={len(data)}"
        )
    skipped = header.data_check == 0 and version >= VERSION_SKIP_CHECKSUM
    if not skipped and header.data_check != checksum(data):
        raise PacketError(
            f"Payload checksum mismatch on {command_name(header.command)}. Received: "
            f"data_check={header.data_check}, actual={checksum(data)}"
        )
    return Packet(header.command, header.arg0, header.arg1, data)


def decode_packet(raw: bytes, *, version: int = VERSION_MIN, max_payload: int = MAX_PAYLOAD) -> Packet:
    """Decodes one whole packet (header + payload) from `raw`; see `decode_header`.

    Example:
        >>> decode_packet(encode_packet(Packet(WRTE, 1, 2, b"hi"))).data
        b'hi'
    """
    header = decode_header(raw[:HEADER_SIZE], max_payload=max_payload)
    return check_payload(header, raw[HEADER_SIZE:], version=version)
