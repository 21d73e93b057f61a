"""The `sync:` service of the loopback device (file sync protocol v1 only).

Requests are `id[4] + u32 len + path`; replies follow SYNC.TXT. Messages do not follow packet
boundaries, so the service reads the stream as a byte stream. SEND writes to a hidden temp file
in the target directory and renames it on DONE, so an interrupted push never leaves a file
that looks complete. Like adbd, a failed SEND or RECV ends the sync session.
"""

from __future__ import annotations

import logging
import os
import struct
import uuid
from pathlib import Path
from typing import Callable

from device_bench.testing._connection import Stream
from device_bench.testing._sandbox import Sandbox

logger = logging.getLogger(__name__)

MAX_PATH = 1024
MAX_DATA = 64 * 1024
_U32 = struct.Struct("<I")
_ID_LEN = struct.Struct("<4sI")
_STAT = struct.Struct("<4sIII")
_DENT = struct.Struct("<4sIIII")
_FLUSH_AT = 256 * 1024
PARTIAL_MARK = ".loopback-partial-"

SpaceLeft = Callable[[], "int | None"]  # bytes still free for pushed files, None = unlimited


def encode_stat(mode: int, size: int, mtime: int) -> bytes:
    """A STAT reply (all zero for a missing path)."""
    return _STAT.pack(b"STAT", mode, size & 0xFFFFFFFF, mtime & 0xFFFFFFFF)


def encode_dent(mode: int, size: int, mtime: int, name: bytes) -> bytes:
    """One LIST entry."""
    return _DENT.pack(b"DENT", mode, size & 0xFFFFFFFF, mtime & 0xFFFFFFFF, len(name)) + name


def encode_fail(message: str) -> bytes:
    """A FAIL reply carrying `message`."""
    raw = message.encode("utf-8")
    return _ID_LEN.pack(b"FAIL", len(raw)) + raw


class _ByteReader:
    """Reads exact byte counts from a stream whose packets split messages arbitrarily."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._stream.read()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class _SyncFailure(Exception):
    """A request failed; the message goes back in FAIL and the session ends."""


def serve_sync(stream: Stream, *, sandbox: Sandbox, space_left: SpaceLeft) -> None:
    """Serves sync requests on `stream` until QUIT, a failure or the stream closes."""
    reader = _ByteReader(stream)
    while True:
        request, length = _ID_LEN.unpack(reader.read_exact(_ID_LEN.size))
        if request == b"QUIT":
            return
        if length > MAX_PATH:
            stream.write(encode_fail(f"path too long: {length} bytes (at most {MAX_PATH})"))
            return
        path = reader.read_exact(length).decode("utf-8", "surrogateescape")
        try:
            if request == b"STAT":
                stream.write(_stat(sandbox, path))
            elif request == b"LIST":
                stream.write(_list(sandbox, path))
            elif request == b"SEND":
                _send(stream, reader, sandbox, path, space_left)
            elif request == b"RECV":
                _recv(stream, sandbox, path)
            else:
                raise _SyncFailure(f"unknown sync request {request!r}")
        except _SyncFailure as exc:
            logger.info("sync %s %s failed: %s", request.decode("ascii", "replace"), path, exc)
            stream.write(encode_fail(str(exc)))
            return


def _host_path(sandbox: Sandbox, path: str, *, follow_last: bool = True) -> Path:
    """The sandbox path for `path`; refused when its real path (symlinks resolved) leaves the root.

    The mapping alone only stops "..": a symlink inside the root (made by `adb shell ln -s`)
    would otherwise let `adb push` write anywhere the user can.
    """
    if not path.startswith("/"):
        raise _SyncFailure(f"path must be absolute: {path!r}")
    host = sandbox.device_path(path)
    real = Path(os.path.realpath(host if follow_last else host.parent))
    root = Path(os.path.realpath(sandbox.root))
    if real != root and root not in real.parents:
        raise _SyncFailure(f"{path}: Permission denied (it resolves outside the device's root)")
    return host


def _stat(sandbox: Sandbox, path: str) -> bytes:
    try:
        st = os.lstat(_host_path(sandbox, path, follow_last=False))
    except (OSError, _SyncFailure):
        return encode_stat(0, 0, 0)
    return encode_stat(st.st_mode, st.st_size, int(st.st_mtime))


def _list(sandbox: Sandbox, path: str) -> bytes:
    out = bytearray()
    try:
        directory = _host_path(sandbox, path)
        names = [".", ".."] + sorted(os.listdir(directory))
    except (OSError, _SyncFailure):
        names = []
    for name in names:
        try:
            st = os.lstat(directory / name)
        except OSError:
            continue
        out += encode_dent(st.st_mode, st.st_size, int(st.st_mtime), os.fsencode(name))
    out += encode_dent(0, 0, 0, b"").replace(b"DENT", b"DONE", 1)
    return bytes(out)


def _send(stream: Stream, reader: _ByteReader, sandbox: Sandbox, spec: str, space_left: SpaceLeft) -> None:
    path, _, mode_text = spec.rpartition(",")
    if not path or not mode_text.isdigit():
        path, mode_text = spec, str(0o100644)
    perms = int(mode_text) & 0o777 or 0o644
    free = space_left()
    handle = None
    error: str | None = None
    try:
        target = _host_path(sandbox, path)
    except _SyncFailure as exc:
        target, error = None, f"couldn't create file: {exc}"
    temp = None if target is None else target.parent / f".{target.name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}"
    if target is not None and target.is_dir():
        error = f"couldn't create file: {path}: Is a directory"
    elif target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = open(temp, "wb")
        except OSError as exc:
            error = f"couldn't create file: {path}: {exc.strerror}"
    try:
        written = 0
        while True:
            kind, length = _ID_LEN.unpack(reader.read_exact(_ID_LEN.size))
            if kind == b"DONE":
                mtime = length
                break
            if kind != b"DATA" or length > MAX_DATA:
                raise _SyncFailure(error or f"invalid sync data message {kind!r} of {length} bytes")
            data = reader.read_exact(length)
            if error is not None:
                continue  # like adbd: read on until DONE so the host gets to see the FAIL
            written += len(data)
            if free is not None and written > free:
                error = "write failed: No space left on device"
                continue
            try:
                handle.write(data)
            except OSError as exc:
                error = f"write failed: {exc.strerror}"
        if error is not None:
            raise _SyncFailure(error)
        handle.close()
        os.chmod(temp, perms)
        os.utime(temp, (mtime, mtime))
        os.replace(temp, target)
    finally:
        if handle is not None:
            handle.close()
        if temp is not None and temp.exists():
            temp.unlink()
    stream.write(_ID_LEN.pack(b"OKAY", 0))


def _recv(stream: Stream, sandbox: Sandbox, path: str) -> None:
    try:
        handle = open(_host_path(sandbox, path), "rb")
    except OSError as exc:
        raise _SyncFailure(f"open failed: {exc.strerror}") from exc
    with handle:
        pending = bytearray()
        while True:
            try:
                data = handle.read(MAX_DATA)
            except OSError as exc:
                raise _SyncFailure(f"read failed: {exc.strerror}") from exc
            if not data:
                break
            pending += _ID_LEN.pack(b"DATA", len(data)) + data
            if len(pending) >= _FLUSH_AT:
                stream.write(bytes(pending))
                pending.clear()
    stream.write(bytes(pending) + _ID_LEN.pack(b"DONE", 0))
