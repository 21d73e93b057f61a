"""`AdbServerDevice`: a device reached through a running adb server (adbutils).

adbutils finds the server, lists devices and opens a transport to one; the services on
top of that transport (`shell,v2`, `sync:`) are spoken here on the raw socket, because
adbutils' own helpers have no overall deadline (only a per-recv one), push in 4 KiB
chunks with three syscalls each, and read sync replies with unchecked short `recv`s.
adbutils would also start an adb server when none answers; `_NoSpawnClient` prevents that:
starting a daemon behind the user's back is not ours to do.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from pathlib import Path

from adbutils import AdbClient
from adbutils.errors import AdbError, AdbTimeout

from device_bench._compat_adbutils import no_spawn_client
from device_bench.device import (
    Device,
    Progress,
    RemoteStat,
    ShellResult,
    UNAUTHORIZED_HINT,
    _ExitMarker,
    _remaining,
)
from mobile_opt.errors import (
    DeviceError,
    DeviceNotFoundError,
    DeviceOfflineError,
    DeviceTimeoutError,
    DeviceUnauthorizedError,
)

logger = logging.getLogger(__name__)

_SYNC_CHUNK = 64 * 1024  # the sync protocol's maximum DATA payload
_BATCH = 16


def make_client(adb_host: str, adb_port: int) -> AdbClient:
    """An adbutils client for the server at adb_host:adb_port that never starts a server."""
    return no_spawn_client(adb_host, adb_port)


def _no_server(client: AdbClient, exc: Exception) -> DeviceNotFoundError:
    return DeviceNotFoundError(
        f"no adb server at {client.host}:{client.port} ({exc}); start one with "
        "`adb start-server` (or pass the port of yours with --adb-port / "
        "ANDROID_ADB_SERVER_PORT)."
    )


def server_devices(client: AdbClient, timeout_s: float) -> list[tuple[str, str]]:
    """(serial, state) of every device the adb server knows, offline/unauthorized included.

    Raises:
        DeviceNotFoundError: no adb server answers at the client's address.
    """
    try:
        with client.make_connection(timeout=timeout_s) as conn:
            conn.send_command("host:devices")
            conn.check_okay()
            text = conn.read_string_block()
    except (AdbError, OSError, EOFError) as exc:
        raise _no_server(client, exc) from exc
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            rows.append((parts[0], parts[1]))
    return rows


def state_error(serial: str, state: str, step: str = "connect") -> DeviceError:
    """The error for a device listed in a state other than "device"."""
    if state == "unauthorized":
        return DeviceUnauthorizedError(
            f"{serial} has not authorized this computer: {UNAUTHORIZED_HINT}.",
            serial=serial, step=step,
        )
    if state == "offline":
        return DeviceOfflineError(
            f"{serial} is offline: the adb server sees it but it does not answer. Reconnect "
            "it (replug USB, or `adb disconnect` + `adb connect` for TCP) and retry.",
            serial=serial, step=step,
        )
    return DeviceOfflineError(
        f"{serial} is in state '{state}', not 'device'; wait until it has booted and retry.",
        serial=serial, step=step,
    )


class AdbServerDevice(Device):
    """A device behind a running adb server (USB, emulator or `adb connect` TCP).

    Shell uses the shell protocol v2 when the device offers `shell_v2` (separate stderr,
    real exit code), else the legacy shell with an exit marker (stderr merged into stdout).

    Args:
        serial: the serial as `adb devices` lists it.
        client: from `make_client()`.
        connect_timeout_s: seconds for each exchange with the server that opens a stream.

    Raises:
        DeviceNotFoundError, DeviceOfflineError, DeviceUnauthorizedError: see `connect()`.
    """

    transport = "adb-server"

    def __init__(self, serial: str, client: AdbClient, *, connect_timeout_s: float = 10.0):
        self.serial = serial
        self._client = client
        self._connect_timeout_s = connect_timeout_s
        self._closed = False
        features = self._host_query(f"host-serial:{serial}:features")
        self._shell_v2 = "shell_v2" in features.split(",")
        logger.debug("%s via adb server %s:%s, shell_v2=%s", serial, client.host, client.port,
                     self._shell_v2)

    # --- streams ---------------------------------------------------------------------------
    def _host_query(self, request: str) -> str:
        try:
            with self._client.make_connection(timeout=self._connect_timeout_s) as conn:
                conn.send_command(request)
                conn.check_okay()
                return conn.read_string_block()
        except AdbTimeout as exc:
            raise DeviceTimeoutError(
                f"adb server at {self._client.host}:{self._client.port} did not answer "
                f"'{request}' within {self._connect_timeout_s:g} s.",
                serial=self.serial, step=request,
            ) from exc
        except AdbError as exc:
            raise self._open_error(str(exc), request) from exc
        except OSError as exc:
            raise _no_server(self._client, exc) from exc

    def _open(self, service: str, step: str) -> socket.socket:
        """Opens `service` on the device; returns the raw socket (caller closes it)."""
        if self._closed:
            raise DeviceError(f"{self.serial}: device was closed; connect() again.",
                              serial=self.serial, step=step)
        try:
            conn = self._client.make_connection(timeout=self._connect_timeout_s)
        except (AdbError, OSError) as exc:
            raise _no_server(self._client, exc) from exc
        try:
            conn.send_command(f"host:transport:{self.serial}")
            conn.check_okay()
            conn.send_command(service)
            conn.check_okay()
        except AdbTimeout as exc:
            conn.close()
            raise DeviceTimeoutError(
                f"{self.serial}: opening '{service[:40]}' took over {self._connect_timeout_s:g} s.",
                serial=self.serial, step=step,
            ) from exc
        except AdbError as exc:
            conn.close()
            raise self._open_error(str(exc), step) from exc
        except OSError as exc:
            conn.close()
            raise self._disconnected_error(step, exc) from exc
        return conn.conn

    def _open_error(self, message: str, step: str) -> DeviceError:
        low = message.lower()
        if "unauthorized" in low:
            return state_error(self.serial, "unauthorized", step)
        if "offline" in low:
            return state_error(self.serial, "offline", step)
        if "not found" in low or "no devices" in low:
            return DeviceNotFoundError(
                f"{self.serial} is no longer attached to the adb server ({message.strip()}).",
                serial=self.serial, step=step,
            )
        return DeviceError(f"{self.serial}: adb server refused '{step}': {message.strip()}",
                           serial=self.serial, step=step)

    def _recv_exact(self, sock: socket.socket, n: int, deadline: float, step: str,
                    timeout_s: float) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            left = _remaining(deadline)
            if left <= 0:
                raise self._timeout_error(step, timeout_s)
            sock.settimeout(left)
            try:
                k = sock.recv_into(view[got:])
            except socket.timeout as exc:
                raise self._timeout_error(step, timeout_s) from exc
            except OSError as exc:
                raise self._disconnected_error(step, exc) from exc
            if k == 0:
                raise self._disconnected_error(step, "connection closed by the adb server")
            got += k
        return bytes(buf)

    def _sendall(self, sock: socket.socket, data, deadline: float, step: str,
                 timeout_s: float) -> None:
        left = _remaining(deadline)
        if left <= 0:
            raise self._timeout_error(step, timeout_s)
        sock.settimeout(left)
        try:
            sock.sendall(data)
        except socket.timeout as exc:
            raise self._timeout_error(step, timeout_s) from exc

    # --- shell ----------------------------------------------------------------------------------
    def _run(self, command: str, timeout_s: float, step: str) -> ShellResult:
        deadline = time.monotonic() + timeout_s
        if self._shell_v2:
            return self._run_v2(command, deadline, timeout_s, step)
        return self._run_legacy(command, deadline, timeout_s, step)

    def _run_v2(self, command: str, deadline: float, timeout_s: float, step: str) -> ShellResult:
        sock = self._open(f"shell,v2,raw:{command}", step)
        out, err = bytearray(), bytearray()
        try:
            # id 4 = close stdin: a command that reads stdin gets EOF instead of waiting.
            self._sendall(sock, b"\x04\x00\x00\x00\x00", deadline, step, timeout_s)
            while True:
                header = self._recv_exact(sock, 5, deadline, step, timeout_s)
                kind, length = header[0], struct.unpack("<I", header[1:])[0]
                data = self._recv_exact(sock, length, deadline, step, timeout_s) if length else b""
                if kind == 1:
                    out += data
                elif kind == 2:
                    err += data
                elif kind == 3:
                    code = data[0] if data else 255
                    return ShellResult(code, out.decode(errors="replace"), err.decode(errors="replace"))
        finally:
            # Closing the stream makes the server send CLSE: the device stops the command.
            sock.close()

    def _run_legacy(self, command: str, deadline: float, timeout_s: float, step: str) -> ShellResult:
        marker = _ExitMarker()
        sock = self._open(f"shell:{marker.wrap(command)}", step)
        out = bytearray()
        try:
            while True:
                left = _remaining(deadline)
                if left <= 0:
                    raise self._timeout_error(step, timeout_s)
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except socket.timeout as exc:
                    raise self._timeout_error(step, timeout_s) from exc
                except OSError as exc:
                    raise self._disconnected_error(step, exc) from exc
                if not chunk:
                    break
                out += chunk
        finally:
            sock.close()
        parsed = marker.split(bytes(out))
        if parsed is None:
            raise self._disconnected_error(step, "output ended before the command's exit status")
        code, body = parsed
        return ShellResult(code, body.decode(errors="replace"), "")

    # --- sync -------------------------------------------------------------------------------------
    def _sync_request(self, sock, verb: bytes, path: str, deadline, step, timeout_s) -> None:
        raw = path.encode()
        self._sendall(sock, verb + struct.pack("<I", len(raw)) + raw, deadline, step, timeout_s)

    def _read_fail(self, sock, deadline, step, timeout_s) -> str:
        length = struct.unpack("<I", self._recv_exact(sock, 4, deadline, step, timeout_s))[0]
        return self._recv_exact(sock, length, deadline, step, timeout_s).decode(errors="replace")

    def stat(self, remote: str) -> RemoteStat | None:
        step = f"stat {remote}"
        timeout_s = self._connect_timeout_s
        deadline = time.monotonic() + timeout_s
        sock = self._open("sync:", step)
        try:
            self._sync_request(sock, b"STAT", remote, deadline, step, timeout_s)
            reply = self._recv_exact(sock, 16, deadline, step, timeout_s)
            self._sendall(sock, b"QUIT\x00\x00\x00\x00", deadline, step, timeout_s)
        finally:
            sock.close()
        verb, mode, size, mtime = struct.unpack("<4sIII", reply)
        if verb != b"STAT":
            raise DeviceError(f"{self.serial}: unexpected sync reply {verb!r} to STAT",
                              serial=self.serial, step=step)
        if mode == 0 and size == 0 and mtime == 0:
            return None
        return RemoteStat(mode=mode, size=size, mtime=mtime)

    def _push_file(self, local: Path, remote: str, size: int, deadline: float,
                   progress: Progress | None, step: str) -> None:
        timeout_s = deadline - time.monotonic()
        mode = 0o100000 | (local.stat().st_mode & 0o777)
        sock = self._open("sync:", step)
        try:
            self._sync_request(sock, b"SEND", f"{remote},{mode}", deadline, step, timeout_s)
            # DATA messages are at most 64 KiB; batching 16 of them per sendall keeps the
            # syscall count (and Python overhead) per MB low.
            slot = 8 + _SYNC_CHUNK
            buf = bytearray(slot * _BATCH)
            view = memoryview(buf)
            done = 0
            try:
                with open(local, "rb") as src:
                    while True:
                        filled = 0
                        for _ in range(_BATCH):
                            n = src.readinto(view[filled + 8: filled + slot])
                            if not n:
                                break
                            struct.pack_into("<4sI", buf, filled, b"DATA", n)
                            filled += 8 + n
                            done += n
                            if n < _SYNC_CHUNK:
                                break
                        if not filled:
                            break
                        self._sendall(sock, view[:filled], deadline, step, timeout_s)
                        if progress is not None:
                            progress(done, size)
                    mtime = int(local.stat().st_mtime)
                    self._sendall(sock, b"DONE" + struct.pack("<I", mtime), deadline, step, timeout_s)
            except OSError as exc:
                # The device may have refused early (e.g. disk full) and closed the stream:
                # its FAIL reply says why, if it arrived.
                message = self._pending_fail(sock)
                if message is not None:
                    raise self._sync_failure(step, message) from exc
                raise self._disconnected_error(step, exc) from exc
            reply = self._recv_exact(sock, 4, deadline, step, timeout_s)
            if reply == b"FAIL":
                raise self._sync_failure(step, self._read_fail(sock, deadline, step, timeout_s))
            if reply != b"OKAY":
                raise DeviceError(f"{self.serial}: unexpected sync reply {reply!r} to SEND",
                                  serial=self.serial, step=step)
            self._recv_exact(sock, 4, deadline, step, timeout_s)
            self._sendall(sock, b"QUIT\x00\x00\x00\x00", deadline, step, timeout_s)
        finally:
            sock.close()

    def _pending_fail(self, sock: socket.socket) -> str | None:
        try:
            sock.settimeout(0.5)
            head = sock.recv(8, socket.MSG_PEEK)
            if not head.startswith(b"FAIL"):
                return None
            sock.recv(8)
            length = struct.unpack("<I", head[4:8])[0]
            return sock.recv(length).decode(errors="replace")
        except (OSError, struct.error):
            return None

    def _pull_file(self, remote: str, sink, deadline: float, progress: Progress | None,
                   total: int, step: str) -> None:
        timeout_s = deadline - time.monotonic()
        sock = self._open("sync:", step)
        try:
            self._sync_request(sock, b"RECV", remote, deadline, step, timeout_s)
            done = 0
            while True:
                verb, length = struct.unpack("<4sI", self._recv_exact(sock, 8, deadline, step, timeout_s))
                if verb == b"DATA":
                    sink.write(self._recv_exact(sock, length, deadline, step, timeout_s))
                    done += length
                    if progress is not None:
                        progress(done, total)
                elif verb == b"DONE":
                    break
                elif verb == b"FAIL":
                    message = self._recv_exact(sock, length, deadline, step, timeout_s)
                    raise self._sync_failure(step, message.decode(errors="replace"))
                else:
                    raise DeviceError(f"{self.serial}: unexpected sync reply {verb!r} to RECV",
                                      serial=self.serial, step=step)
            self._sendall(sock, b"QUIT\x00\x00\x00\x00", deadline, step, timeout_s)
        finally:
            sock.close()

    def close(self) -> None:
        # Every operation opens and closes its own stream; nothing is held between calls.
        self._closed = True
