"""Everything that reaches into adb-shell's internals, in one place (written for adb-shell 0.4.4).

- `checksum` is replaced, in the two module namespaces adb-shell looks it up in, by a
  vectorised one (same result for every input).
- `EofTcpTransport` subclasses its TCP transport and uses its private `_connection` socket.

tests/test_compat.py pins the version: after an upgrade, recheck both here.
"""

from __future__ import annotations

import socket

import numpy as np
from adb_shell import adb_device as _adb_device_module
from adb_shell import adb_message as _adb_message_module
from adb_shell import exceptions as adb_exc
from adb_shell.transport.tcp_transport import TcpTransport

__all__ = ["WRITTEN_FOR", "EofTcpTransport", "fast_checksum", "pure_python_checksum"]

WRITTEN_FOR = "0.4.4"

pure_python_checksum = _adb_message_module.checksum


def fast_checksum(data) -> int:
    """adb-shell's payload checksum (byte sum mod 2**32), vectorised for bytes-like data.

    adb-shell speaks protocol version 0x01000000, which requires checksums both ways, and
    sums in pure Python (~20 ms per MiB here): it halved direct-push throughput. Same result
    for every input (pinned by a test); other types go to the original.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF
    return pure_python_checksum(data)


# adb-shell looks the function up in these two module namespaces (send and receive side).
_adb_message_module.checksum = fast_checksum
_adb_device_module.checksum = fast_checksum


class EofTcpTransport(TcpTransport):
    """adb-shell's TCP transport, but a closed peer or a closed transport is an
    `AdbConnectionError` (instead of endless b'', or `None.recv` after close()), and with
    Nagle off: every sync exchange is a small request waiting on a small reply, which Nagle
    plus delayed ACKs stall by ~40 ms each (a 0.13 s STAT after a push)."""

    def connect(self, transport_timeout_s):
        super().connect(transport_timeout_s)
        self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def bulk_read(self, numbytes, transport_timeout_s):
        if self._connection is None:
            raise adb_exc.AdbConnectionError("the connection was closed")
        data = super().bulk_read(numbytes, transport_timeout_s)
        if not data:
            raise adb_exc.AdbConnectionError("connection closed by the device")
        return data

    def bulk_write(self, data, transport_timeout_s):
        if self._connection is None:
            raise adb_exc.AdbConnectionError("the connection was closed")
        return super().bulk_write(data, transport_timeout_s)
