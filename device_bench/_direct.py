"""`DirectDevice`: talk ADB straight to a device's adbd (TCP, or USB), without an adb server.

Uses adb-shell (`AdbDevice` over a TCP or USB transport). adb-shell's shell is the legacy
`shell:` service: no exit code and stderr merged into stdout, so `shell()` appends an exit
marker (see `device._ExitMarker`) and returns `stderr=""`.

adb-shell has no overall deadline for push/pull and, on a closed socket, spins until its
read timeout; so (1) the TCP transport (`_compat_adb_shell`) raises at EOF, (2) transfers run through file
wrappers that check the deadline, and (3) after a timeout or a broken stream the link is
dropped (adbd then kills the stream's command) and reopened on the next call.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import re
import socket
from pathlib import Path

from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice

from device_bench._compat_adb_shell import EofTcpTransport

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
    DependencyError,
    DeviceError,
    DeviceNotFoundError,
    DeviceOfflineError,
    DeviceTimeoutError,
    DeviceUnauthorizedError,
)

logger = logging.getLogger(__name__)

DEFAULT_DIRECT_PORT = 5555
USB_INSTALL = "pip install 'mobile-opt[usb]'"

# Everything adb-shell raises when the link, not the request, fails.
_LINK_ERRORS = (
    adb_exc.AdbConnectionError,
    adb_exc.InvalidChecksumError,
    adb_exc.InvalidCommandError,
    adb_exc.InvalidResponseError,
    adb_exc.UsbReadFailedError,
    adb_exc.UsbWriteFailedError,
    OSError,
)
_TIMEOUT_ERRORS = (adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException)
# What adb-shell raises when the peer's bytes are no ADB messages.
_PROTOCOL_ERRORS = (adb_exc.InvalidCommandError, adb_exc.InvalidResponseError, adb_exc.InvalidChecksumError)


class _LazySigner:
    """adb-shell signer for an RSA key file, loaded (or created) only when a device asks.

    Devices without auth, and addresses where nothing listens, never cost a key
    generation (~1 s); a missing key is created 0600 from the start and logged.
    """

    def __init__(self, key_path: Path | None):
        self.path = Path(key_path) if key_path is not None else Path.home() / ".android" / "adbkey"
        self._signer = None

    def _load(self):
        if self._signer is None:
            from adb_shell.auth.keygen import keygen
            from adb_shell.auth.sign_cryptography import CryptographySigner

            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Created 0600 before keygen writes into it: the key is never world-readable.
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                keygen(str(self.path))
                logger.warning("created ADB key %s (the phone will ask to allow it once)", self.path)
            self._signer = CryptographySigner(str(self.path))
        return self._signer

    def Sign(self, data):  # noqa: N802 - adb-shell's signer interface
        return self._load().Sign(data)

    def GetPublicKey(self):  # noqa: N802 - adb-shell's signer interface
        return self._load().GetPublicKey()


class _DeadlineReader(io.BytesIO):
    """A file adb-shell's push reads from; enforces the deadline and reports progress.

    adb-shell accepts a BytesIO as source; subclassing keeps the file on disk.
    """

    def __init__(self, path: Path, size: int, deadline: float, progress: Progress | None,
                 on_timeout):
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size, self._deadline, self._progress, self._on_timeout = size, deadline, progress, on_timeout
        self._done = 0

    def read(self, n: int = -1) -> bytes:
        if _remaining(self._deadline) <= 0:
            raise self._on_timeout()
        data = self._file.read(n)
        self._done += len(data)
        if data and self._progress is not None:
            self._progress(self._done, self._size)
        return data

    def close(self) -> None:
        self._file.close()
        super().close()


class _DeadlineWriter(io.BytesIO):
    """A file adb-shell's pull writes into; forwards to `sink`, enforces the deadline."""

    def __init__(self, sink, total: int, deadline: float, progress: Progress | None, on_timeout):
        super().__init__()
        self._sink, self._total, self._deadline = sink, total, deadline
        self._progress, self._on_timeout = progress, on_timeout
        self._done = 0

    def write(self, data) -> int:
        if _remaining(self._deadline) <= 0:
            raise self._on_timeout()
        self._sink.write(data)
        self._done += len(data)
        if self._progress is not None:
            self._progress(self._done, self._total)
        return len(data)


class DirectDevice(Device):
    """A device reached by adb-shell directly: `direct:HOST[:PORT]` (TCP) or `usb:[SERIAL]`.

    Args:
        serial: "direct:HOST[:PORT]" (port default 5555) or "usb:" / "usb:SERIAL".
        connect_timeout_s: seconds for TCP connect and the CNXN/AUTH handshake (default 10).
        key_path: RSA private key (default ~/.android/adbkey; created 0600 when a device
            first asks for authentication and it is missing).

    Raises:
        DeviceNotFoundError: nothing listens at HOST:PORT (fails at once) / no USB device.
        DeviceUnauthorizedError: the device did not accept our key.
        DeviceOfflineError: the peer accepted TCP but never answered the handshake.
        DependencyError: `usb:` without the USB extra installed.
    """

    transport = "direct"

    def __init__(self, serial: str, *, connect_timeout_s: float = 10.0,
                 key_path: Path | None = None):
        self.serial = serial
        self._connect_timeout_s = float(connect_timeout_s)
        self._closed = False
        self._adb: AdbDevice | None = None
        first = self._make_adb()  # checks the address / USB extra before touching keys
        self._signer = _LazySigner(key_path)
        self._connect(first)

    def _make_adb(self) -> AdbDevice:
        kind, _, rest = self.serial.partition(":")
        if kind == "usb":
            try:
                from adb_shell.adb_device import AdbDeviceUsb

                return AdbDeviceUsb(serial=rest or None,
                                    default_transport_timeout_s=self._connect_timeout_s)
            except adb_exc.InvalidTransportError as exc:
                raise DependencyError(
                    f"USB without an adb server needs libusb bindings: {USB_INSTALL}"
                ) from exc
            except adb_exc.UsbDeviceNotFoundError as exc:
                raise DeviceNotFoundError(
                    f"no USB ADB device{' ' + rest if rest else ''} found ({exc}). Plug it in "
                    "with USB debugging on; stop any adb server that holds it (`adb kill-server`).",
                    serial=self.serial, step="connect",
                ) from exc
        host, port = parse_direct_address(rest)
        return AdbDevice(EofTcpTransport(host, port),
                         default_transport_timeout_s=self._connect_timeout_s)

    def _unreachable(self, exc: OSError, timeout: float) -> str:
        """What a failed TCP connect means, and what to do."""
        if isinstance(exc, ConnectionRefusedError):
            return (f"nothing listens at {self.serial} ({exc}). On the phone enable wireless "
                    "debugging / `adb tcpip 5555`, and check the address.")
        if isinstance(exc, socket.gaierror):  # a well-formed host name that no resolver knows
            return (f"cannot look up the host of {self.serial}: {exc.strerror or exc}. Check the name, "
                    "or use the phone's IP address (shown under wireless debugging).")
        return (f"no answer from {self.serial} within {timeout:g} s; check the address and "
                "that the phone is on the same network.")

    def _connect(self, adb: AdbDevice | None = None) -> None:
        adb = adb if adb is not None else self._make_adb()
        asked = []
        timeout = self._connect_timeout_s
        try:
            adb.connect(rsa_keys=[self._signer], transport_timeout_s=timeout,
                        auth_timeout_s=timeout, read_timeout_s=timeout,
                        auth_callback=lambda _dev: asked.append(True))
        except (ConnectionRefusedError, socket.gaierror, socket.timeout) as exc:  # no adbd reached
            adb.close()
            raise DeviceNotFoundError(self._unreachable(exc, timeout), serial=self.serial, step="connect") from exc
        except (adb_exc.DeviceAuthError, *_TIMEOUT_ERRORS) as exc:
            adb.close()
            if asked or isinstance(exc, adb_exc.DeviceAuthError):
                raise DeviceUnauthorizedError(
                    f"{self.serial} did not accept this computer's ADB key within "
                    f"{timeout:g} s: {UNAUTHORIZED_HINT}.",
                    serial=self.serial, step="connect",
                ) from exc
            raise DeviceOfflineError(
                f"{self.serial} accepted the connection but did not answer the ADB handshake "
                f"within {timeout:g} s; it is not an adbd, or it is hung. Restart adbd "
                "(toggle USB/wireless debugging) and retry.",
                serial=self.serial, step="connect",
            ) from exc
        except _PROTOCOL_ERRORS as exc:
            adb.close()
            # adb-shell's message quotes the raw bytes ("Unknown command: 1347703880 = 'b'HTTP''").
            raise DeviceNotFoundError(
                f"{self.serial} answered, but not in the ADB protocol: this is not adbd. Check the "
                "address and port (`adb tcpip 5555` opens 5555; wireless debugging shows its own port).",
                serial=self.serial, step="connect",
            ) from exc
        except _LINK_ERRORS as exc:
            adb.close()
            hint = (" Stop any adb server that holds the device (`adb kill-server`)."
                    if self.serial.startswith("usb") else "")
            raise DeviceNotFoundError(
                f"cannot connect to {self.serial}: {exc}.{hint}", serial=self.serial, step="connect",
            ) from exc
        self._adb = adb

    def _link(self, step: str) -> AdbDevice:
        if self._closed:
            raise DeviceError(f"{self.serial}: device was closed; connect() again.",
                              serial=self.serial, step=step)
        if self._adb is None:
            self._connect()
        return self._adb

    def _drop(self) -> None:
        # Closing the TCP link makes adbd kill every command of this connection.
        if self._adb is not None:
            self._adb.close()
            self._adb = None

    def _call(self, step: str, timeout_s: float, fn):
        adb = self._link(step)
        try:
            return fn(adb)
        except DeviceTimeoutError:
            self._drop()
            raise
        except _TIMEOUT_ERRORS as exc:
            self._drop()
            raise self._timeout_error(step, timeout_s) from exc
        except (adb_exc.PushFailedError, adb_exc.AdbCommandFailureException) as exc:
            self._drop()  # the sync stream is in an unknown state
            raise self._sync_failure(step, str(exc)) from exc
        except _LINK_ERRORS as exc:
            self._drop()
            raise self._disconnected_error(step, exc) from exc

    def _run(self, command: str, timeout_s: float, step: str) -> ShellResult:
        marker = _ExitMarker()
        wrapped = marker.wrap(command)
        raw = self._call(step, timeout_s, lambda adb: adb.shell(
            wrapped, transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
            timeout_s=timeout_s, decode=False))
        parsed = marker.split(raw)
        if parsed is None:
            raise self._disconnected_error(step, "output ended before the command's exit status")
        code, body = parsed
        return ShellResult(code, body.decode(errors="replace"), "")

    def stat(self, remote: str) -> RemoteStat | None:
        timeout = self._connect_timeout_s
        mode, size, mtime = self._call(f"stat {remote}", timeout, lambda adb: adb.stat(
            remote, transport_timeout_s=timeout, read_timeout_s=timeout))
        if mode == 0 and size == 0 and mtime == 0:
            return None
        return RemoteStat(mode=mode, size=size, mtime=mtime)

    def _push_file(self, local: Path, remote: str, size: int, deadline: float,
                   progress: Progress | None, step: str) -> None:
        timeout_s = _remaining(deadline)
        mode = 0o100000 | (local.stat().st_mode & 0o777)
        reader = _DeadlineReader(local, size, deadline, progress,
                                 lambda: self._timeout_error(step, timeout_s))
        per_packet = min(timeout_s, max(self._connect_timeout_s, 1.0))
        try:
            self._call(step, timeout_s, lambda adb: adb.push(
                reader, remote, st_mode=mode, mtime=int(local.stat().st_mtime),
                transport_timeout_s=per_packet, read_timeout_s=per_packet))
        finally:
            reader.close()

    def _pull_file(self, remote: str, sink, deadline: float, progress: Progress | None,
                   total: int, step: str) -> None:
        timeout_s = _remaining(deadline)
        writer = _DeadlineWriter(sink, total, deadline, progress,
                                 lambda: self._timeout_error(step, timeout_s))
        per_packet = min(timeout_s, max(self._connect_timeout_s, 1.0))
        self._call(step, timeout_s, lambda adb: adb.pull(
            remote, writer, transport_timeout_s=per_packet, read_timeout_s=per_packet))

    def close(self) -> None:
        self._closed = True
        self._drop()


def parse_direct_address(address: str) -> tuple[str, int]:
    """"HOST[:PORT]" -> (host, port); port defaults to 5555. IPv6 as "[::1]:5555".

    Raises:
        InputError: malformed, a port outside 1..65535, or a host that is neither an IP
            address nor a host name (e.g. "256.1.1.1"): no lookup is tried for those.
    """
    from mobile_opt.errors import InputError

    text = address.strip()
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host or (port_text and not port_text.isdigit()):
        raise InputError(
            "direct serials look like 'direct:192.168.1.20' or 'direct:192.168.1.20:5555'. "
            f"Received: serial='direct:{address}'"
        )
    bracketed = text.startswith("[")
    if not is_host_address(host) or bracketed != (":" in host):
        raise InputError(
            f"{host!r} is not an IP address or host name (IPv4 is four numbers 0..255, IPv6 goes in "
            f"brackets: 'direct:[fe80::1]:5555'). Received: serial='direct:{address}'"
        )
    port = int(port_text) if port_text else DEFAULT_DIRECT_PORT
    if not 0 < port < 65536:
        raise InputError(f"port must be 1..65535. Received: port={port}")
    return host, port


# RFC 1123 host name labels: letters, digits and inner hyphens, at most 63 characters each.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_host_address(host: str) -> bool:
    """True for an IPv4/IPv6 address or a well-formed host name (checked before any lookup)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    # All-numeric names ("256.1.1.1", "10.0.0") are mistyped IPv4 addresses: no top-level domain is numeric.
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()
