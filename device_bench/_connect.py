"""Pick a device from a serial: `connect`, `connect_all`, `list_devices`.

Serials:
    None or "host"        this machine (`HostDevice`)
    "direct:HOST[:PORT]"  adbd over TCP without an adb server (adb-shell; port 5555)
    "usb:" / "usb:SERIAL" adbd over USB without an adb server (extra `mobile-opt[usb]`)
    "auto"                the single device attached to the adb server
    anything else         that serial on the adb server (adbutils)
The adb server is `adb_host`:`adb_port` (port: argument, else $ANDROID_ADB_SERVER_PORT,
else 5037). No adb server is ever started for you.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from types import ModuleType

from device_bench.device import Device, DeviceInfo
from mobile_opt.errors import DeviceError, DeviceNotFoundError, InputError

__all__ = ["connect", "connect_all", "list_devices"]

logger = logging.getLogger(__name__)

DEFAULT_ADB_PORT = 5037
_PORT_ENV = "ANDROID_ADB_SERVER_PORT"


def _env_adb_port() -> int | None:
    """$ANDROID_ADB_SERVER_PORT as a port number, None when unset or empty.

    Raises:
        InputError: it is set to anything but a port number (adb itself refuses it too).
    """
    value = os.environ.get(_PORT_ENV, "").strip()
    if not value:
        return None
    if not (value.isdigit() and 1 <= int(value) <= 65535):
        raise InputError(
            f"{_PORT_ENV} must be the adb server's TCP port, a whole number from 1 to 65535. "
            f"Received: {_PORT_ENV}={value!r}. Set it to your server's port (adb's default is 5037) "
            "or unset it."
        )
    return int(value)


def resolve_adb_port(adb_port: int | None) -> int:
    """`adb_port`, else $ANDROID_ADB_SERVER_PORT, else 5037 (the variable is checked either way)."""
    env_port = _env_adb_port()
    if adb_port is not None:
        return int(adb_port)
    return DEFAULT_ADB_PORT if env_port is None else env_port


def _adb_server(adb_host: str, adb_port: int | None) -> tuple[ModuleType, object]:
    """The adb-server module and a client for adb_host:port.

    Imported late, after the port variable is checked: importing adbutils builds a client
    that parses $ANDROID_ADB_SERVER_PORT with int() (a traceback when it is not a number),
    and "host" or "direct:" serials need no adb server at all.
    """
    from device_bench._direct import is_host_address  # late: it imports adb-shell

    if not is_host_address(adb_host):
        raise InputError(f"the adb server address is not an IP address or host name. Received: "
                         f"adb_host={adb_host!r}. The local server is 127.0.0.1.")
    port = resolve_adb_port(adb_port)
    from device_bench import _adb_server

    return _adb_server, _adb_server.make_client(adb_host, port)

_ATTACH_HELP = (
    "Attach one: plug in a phone with USB debugging on, or `adb connect HOST:PORT` for "
    "wireless debugging; or use 'direct:HOST[:PORT]' (no adb server) or 'host'."
)


def connect(serial: str | None = None, *, adb_host: str = "127.0.0.1",
            adb_port: int | None = None, connect_timeout_s: float = 10.0,
            key_path: Path | None = None) -> Device:
    """Opens one device by serial (see the module docstring for the forms).

    Args:
        serial: which device (default None: this host).
        adb_host: adb server address (default "127.0.0.1").
        adb_port: adb server port (default None: $ANDROID_ADB_SERVER_PORT or 5037).
        connect_timeout_s: seconds for connecting / each server exchange (default 10).
        key_path: RSA key for direct/usb links (default ~/.android/adbkey, created if missing).

    Returns:
        A `Device` (a context manager; close() it when done).

    Raises:
        InputError: malformed serial or timeout; "all" (use `connect_all`); an adb-server
            serial while $ANDROID_ADB_SERVER_PORT is not a port number.
        DeviceNotFoundError: no adb server, no such serial (message lists the attached
            ones), no device for "auto", or nothing listening at a direct address.
        DeviceOfflineError, DeviceUnauthorizedError: the device is not usable yet.
        DependencyError: "usb:" without `pip install 'mobile-opt[usb]'`.

    Example:
        with connect("auto", adb_port=5037) as phone:
            print(phone.info().model)
    """
    if not isinstance(connect_timeout_s, (int, float)) or connect_timeout_s <= 0:
        raise InputError(
            f"connect_timeout_s must be a positive number of seconds. "
            f"Received: connect_timeout_s={connect_timeout_s!r}"
        )
    if serial is not None and (not isinstance(serial, str) or not serial.strip()):
        raise InputError(f"serial must be a non-empty string or None. Received: serial={serial!r}")
    if serial is None or serial == "host":
        from device_bench._host import HostDevice

        return HostDevice()
    if serial == "all":
        raise InputError("serial 'all' names several devices; use connect_all(). Received: serial='all'")
    if serial.startswith(("direct:", "usb:")) or serial == "usb":
        from device_bench._direct import DirectDevice

        return DirectDevice("usb:" if serial == "usb" else serial,
                            connect_timeout_s=connect_timeout_s, key_path=key_path)

    server, client = _adb_server(adb_host, adb_port)
    rows = server.server_devices(client, connect_timeout_s)
    if serial == "auto":
        online = [s for s, state in rows if state == "device"]
        if not online:
            others = ", ".join(f"{s} ({state})" for s, state in rows)
            raise DeviceNotFoundError(
                f"no device is online at the adb server {client.host}:{client.port}"
                f"{'; listed: ' + others if others else ''}. {_ATTACH_HELP}"
            )
        if len(online) > 1:
            raise DeviceNotFoundError(
                f"serial 'auto' needs exactly one device, found {len(online)}: "
                f"{', '.join(online)}. Pass one of them as the serial (or 'all')."
            )
        serial = online[0]
    states = dict(rows)
    if serial not in states:
        listed = ", ".join(f"{s} ({st})" for s, st in rows) or "none"
        raise DeviceNotFoundError(
            f"no device '{serial}' at the adb server {client.host}:{client.port}; attached: "
            f"{listed}. {_ATTACH_HELP}",
            serial=serial, step="connect",
        )
    if states[serial] != "device":
        raise server.state_error(serial, states[serial])
    return server.AdbServerDevice(serial, client, connect_timeout_s=connect_timeout_s)


def connect_all(*, adb_host: str = "127.0.0.1", adb_port: int | None = None,
                connect_timeout_s: float = 10.0) -> list[Device]:
    """Opens every online device of the adb server (serial "all").

    Devices that are offline or unauthorized are skipped with a warning.

    Raises:
        InputError: $ANDROID_ADB_SERVER_PORT is not a port number.
        DeviceNotFoundError: no adb server, or no device online.
    """
    server, client = _adb_server(adb_host, adb_port)
    devices: list[Device] = []
    for serial, state in server.server_devices(client, connect_timeout_s):
        if state != "device":
            logger.warning("skipping %s: %s", serial, state)
            continue
        devices.append(server.AdbServerDevice(serial, client, connect_timeout_s=connect_timeout_s))
    if not devices:
        raise DeviceNotFoundError(
            f"no device is online at the adb server {client.host}:{client.port}. {_ATTACH_HELP}"
        )
    return devices


def _with_rails(device: Device) -> DeviceInfo:
    from device_bench.device_state import Rails, find_rails

    found = find_rails(device)
    return dataclasses.replace(device.info(), rails=list(found.sources) if isinstance(found, Rails) else [])


def list_devices(*, adb_host: str = "127.0.0.1", adb_port: int | None = None,
                 include_host: bool = True, timeout_s: float = 10.0) -> list[DeviceInfo]:
    """Describes every reachable device: the adb server's (any state) plus this host.

    Phones are also asked for power rails (`DeviceInfo.rails`, see `device_bench.rails`).

    A missing adb server is not an error here when `include_host` is True: the list then
    holds only the host (logged at INFO). Devices that are not online, or that fail while
    being described, are listed with their state and None for what could not be read.

    Args:
        adb_host, adb_port: the adb server (see `connect`).
        include_host: append this machine (default True).
        timeout_s: seconds per exchange with the server or a device (default 10).

    Returns:
        DeviceInfo rows, adb devices first.

    Raises:
        InputError: $ANDROID_ADB_SERVER_PORT is not a port number; adb_host is neither an IP
            address nor a host name.
        DeviceNotFoundError: no adb server and include_host is False.

    Example:
        for row in list_devices(adb_port=5037):
            print(row.serial, row.state, row.model)
    """
    rows: list[DeviceInfo] = []
    server, client = _adb_server(adb_host, adb_port)
    try:
        listed = server.server_devices(client, timeout_s)
    except DeviceNotFoundError:
        if not include_host:
            raise
        logger.info("no adb server at %s:%s; listing only the host", client.host, client.port)
        listed = []
    for serial, state in listed:
        if state != "device":
            rows.append(DeviceInfo(serial=serial, transport="adb-server", state=state))
            continue
        try:
            with server.AdbServerDevice(serial, client, connect_timeout_s=timeout_s) as device:
                rows.append(_with_rails(device))
        except DeviceError as exc:
            logger.warning("could not describe %s: %s", serial, exc)
            rows.append(DeviceInfo(serial=serial, transport="adb-server", state=state))
    if include_host:
        from device_bench._host import HostDevice

        with HostDevice() as host:
            rows.append(host.info())
    return rows
