"""Choosing a device from a serial: host, direct, usb, auto, all, unknown, no server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from device_bench import connect, connect_all, list_devices
from device_bench._adb_server import AdbServerDevice
from device_bench._connect import resolve_adb_port
from device_bench._direct import DirectDevice, parse_direct_address
from device_bench._host import HostDevice
from device_bench.testing import LoopbackDevice
from mobile_opt.cli import cli
from mobile_opt.errors import DependencyError, DeviceNotFoundError, InputError


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Keys default to ~/.android/adbkey: keep every test away from the real one."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _adb_connect(adb, serial: str, timeout_s: float = 20.0) -> None:
    adb("connect", serial, timeout_s=30)
    deadline = time.monotonic() + timeout_s
    while f"{serial}\tdevice" not in adb("devices", timeout_s=10).stdout.decode():
        assert time.monotonic() < deadline, f"{serial} never came online"
        time.sleep(0.1)


def test_host_is_the_default():
    for serial in (None, "host"):
        with connect(serial) as device:
            assert isinstance(device, HostDevice) and device.transport == "host"
            assert device.serial == "host"


def test_host_maps_device_tmp_into_its_work_dir(tmp_path: Path):
    with HostDevice(tmp_path / "work") as host:
        assert host.local_path("/data/local/tmp/a/b.bin") == (tmp_path / "work" / "a" / "b.bin").resolve()
        assert host.local_path("/etc/hostname") == Path("/etc/hostname")
        assert host.shell("pwd").stdout.strip() == str((tmp_path / "work").resolve())
        host.shell("echo hi > /data/local/tmp/made-by-shell.txt").check("write")
        assert (tmp_path / "work" / "made-by-shell.txt").read_text() == "hi\n"
    assert (tmp_path / "work").exists()  # a root it did not create is left alone
    temp = HostDevice()
    root = temp.root
    temp.close()
    assert not root.exists()  # its own temporary root is removed


def test_no_adb_server_fails_fast_and_starts_none(closed_port):
    port = closed_port
    timeout_s = 60.0
    start = time.monotonic()
    with pytest.raises(DeviceNotFoundError, match=r"no adb server at 127\.0\.0\.1:\d+.*adb start-server"):
        connect("emulator-5554", adb_port=port, connect_timeout_s=timeout_s)
    assert time.monotonic() - start < timeout_s  # refused at once, not timed out
    assert not _listening(port), "an adb server was started behind our back"


def test_adb_port_from_environment(monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "6123")
    assert resolve_adb_port(None) == 6123
    assert resolve_adb_port(7000) == 7000
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT")
    assert resolve_adb_port(None) == 5037


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "5037x"])
def test_adb_port_variable_that_is_no_port_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", value)
    for call in (lambda: connect("emulator-5554"), connect_all, lambda: list_devices(include_host=True)):
        with pytest.raises(InputError, match=r"ANDROID_ADB_SERVER_PORT must be the adb server's TCP port.*"
                                             rf"Received: ANDROID_ADB_SERVER_PORT='{value}'"):
            call()
    with connect("host") as host:  # the host needs no adb server
        assert host.info().transport == "host"


def test_unknown_serial_lists_attached(loopback, adb_connected, adb_server):
    with pytest.raises(DeviceNotFoundError) as info:
        connect("no-such-phone", adb_port=adb_server)
    assert "no-such-phone" in str(info.value) and f"{loopback.serial} (device)" in str(info.value)


def test_serial_and_auto_pick_the_device(loopback, adb_connected, adb_server):
    for serial in (loopback.serial, "auto"):
        with connect(serial, adb_port=adb_server) as device:
            assert isinstance(device, AdbServerDevice) and device.serial == loopback.serial
            assert device.shell("echo ok").stdout == "ok\n"


def test_auto_without_devices(adb_server):
    with pytest.raises(DeviceNotFoundError, match="no device is online.*adb connect"):
        connect("auto", adb_port=adb_server)
    with pytest.raises(DeviceNotFoundError, match="no device is online"):
        connect_all(adb_port=adb_server)


def test_auto_with_two_devices_lists_both_and_all_opens_both(tmp_path, adb, adb_server):
    with LoopbackDevice(tmp_path / "a", auth_keys=None) as first, \
            LoopbackDevice(tmp_path / "b", auth_keys=None) as second:
        _adb_connect(adb, first.serial)
        _adb_connect(adb, second.serial)
        with pytest.raises(DeviceNotFoundError) as info:
            connect("auto", adb_port=adb_server)
        assert first.serial in str(info.value) and second.serial in str(info.value)
        with pytest.raises(InputError, match="connect_all"):
            connect("all", adb_port=adb_server)
        devices = connect_all(adb_port=adb_server)
        try:
            assert sorted(d.serial for d in devices) == sorted([first.serial, second.serial])
            assert all(d.shell("echo x").stdout == "x\n" for d in devices)
        finally:
            for device in devices:
                device.close()


def test_list_devices_describes_server_devices_and_host(loopback, adb_connected, adb_server):
    rows = list_devices(adb_port=adb_server)
    by_serial = {row.serial: row for row in rows}
    row = by_serial[loopback.serial]
    assert (row.transport, row.state, row.model, row.abi, row.android_version, row.sdk) == (
        "adb-server", "device", "Loopback", "arm64-v8a", "14", 34)
    assert isinstance(row.battery["level"], int)
    assert by_serial["host"].transport == "host"
    assert [r.serial for r in list_devices(adb_port=adb_server, include_host=False)] == [loopback.serial]


def test_list_devices_without_server(closed_port):
    port = closed_port
    assert [r.serial for r in list_devices(adb_port=port)] == ["host"]
    with pytest.raises(DeviceNotFoundError):
        list_devices(adb_port=port, include_host=False)


def test_direct_nothing_listening_fails_fast(tmp_path, closed_port):
    port = closed_port
    timeout_s = 60.0
    start = time.monotonic()
    with pytest.raises(DeviceNotFoundError, match="nothing listens"):
        connect(f"direct:127.0.0.1:{port}", key_path=tmp_path / "adbkey", connect_timeout_s=timeout_s)
    assert time.monotonic() - start < timeout_s  # refused at once, not timed out
    assert not (tmp_path / "adbkey").exists()  # no key generated for an address where nothing listens


def test_direct_connects(loopback, tmp_path):
    with connect(f"direct:127.0.0.1:{loopback.port}", key_path=tmp_path / "k") as device:
        assert isinstance(device, DirectDevice) and device.transport == "direct"
        assert device.getprop("ro.serialno") == loopback.serial


def test_direct_address_parsing():
    assert parse_direct_address("10.0.0.2") == ("10.0.0.2", 5555)
    assert parse_direct_address("10.0.0.2:6000") == ("10.0.0.2", 6000)
    assert parse_direct_address("[::1]:7000") == ("::1", 7000)
    assert parse_direct_address("pixel-7.lan:5555") == ("pixel-7.lan", 5555)
    for bad in ("", "host:port", "h:0", "h:70000"):
        with pytest.raises(InputError):
            parse_direct_address(bad)
    # issue 22: "256.1.1.1" went to the resolver and came back as "Name or service not known".
    for bad in ("256.1.1.1", "10.0.0", "1.2.3.4.5", "-a.b", "a..b", "a_b", "[10.0.0.1]", "x" * 64):
        with pytest.raises(InputError, match="is not an IP address or host name"):
            parse_direct_address(bad)


def test_a_bad_direct_host_is_exit_2_before_any_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["tools", "install", "--device", "direct:256.1.1.1",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert "'256.1.1.1' is not an IP address or host name" in result.output
    assert "Name or service" not in result.output and not (tmp_path / "home").exists()


def test_a_host_name_no_resolver_knows_is_named(tmp_path):
    # RFC 6761: names under .invalid never resolve.
    with pytest.raises(DeviceNotFoundError, match=r"cannot look up the host of direct:phone\.invalid"):
        connect("direct:phone.invalid", key_path=tmp_path / "adbkey")


def test_usb_needs_the_extra():
    pytest.importorskip("adb_shell")
    try:
        import usb1  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyError, match=r"pip install 'mobile-opt\[usb\]'"):
            connect("usb:")
    else:
        pytest.skip("libusb bindings installed: the missing-extra path cannot be shown here")


def test_bad_arguments():
    with pytest.raises(InputError):
        connect("", adb_port=1)
    with pytest.raises(InputError):
        connect("auto", connect_timeout_s=0)


def test_direct_to_something_that_is_not_adbd_says_so(tmp_path):
    """A peer that answers the CNXN with HTTP: no raw wire bytes in the message."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer_http():
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 2)

    thread = threading.Thread(target=answer_http, daemon=True)
    thread.start()
    try:
        with pytest.raises(DeviceNotFoundError, match="not in the ADB protocol: this is not adbd") as info:
            connect(f"direct:127.0.0.1:{server.getsockname()[1]}", key_path=tmp_path / "k", connect_timeout_s=30)
        assert "HTTP" not in str(info.value)
    finally:
        thread.join(timeout=30)
        server.close()
