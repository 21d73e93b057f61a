"""adb-shell (AdbDeviceTcp) end to end against the loopback device: auth, shell, sync."""

from __future__ import annotations

import os
import stat

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.exceptions import AdbCommandFailureException, AdbTimeoutError, DeviceAuthError, TcpTimeoutException

from device_bench.testing import LoopbackDevice


def _connect(device: LoopbackDevice, rsa_keys=None, auth_timeout_s: float = 5.0) -> AdbDeviceTcp:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
    client.connect(rsa_keys=rsa_keys, read_timeout_s=10, auth_timeout_s=auth_timeout_s)
    return client


def test_shell_without_auth(loopback):
    client = _connect(loopback)
    try:
        out = client.shell("echo hello; echo oops >&2; getprop ro.product.model", read_timeout_s=10)
    finally:
        client.close()
    # Legacy shell: stdout and stderr merged, no exit code.
    assert out.splitlines() == ["hello", "oops", "Loopback"]


def test_push_pull_stat_list_byte_identical(loopback, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 123)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    client = _connect(loopback)
    try:
        client.push(str(src), "/data/local/tmp/model.bin", read_timeout_s=30)
        mode, size, mtime = client.stat("/data/local/tmp/model.bin")
        names = {bytes(e.filename).decode() for e in client.list("/data/local/tmp")}
        client.pull("/data/local/tmp/model.bin", str(tmp_path / "back.bin"), read_timeout_s=30)
    finally:
        client.close()
    assert (tmp_path / "back.bin").read_bytes() == payload
    assert loopback.device_path("/data/local/tmp/model.bin").read_bytes() == payload
    assert stat.S_ISREG(mode) and size == len(payload) and mtime > 0
    assert {"model.bin", ".", ".."} <= names


def test_stat_of_missing_path_is_zero(loopback):
    client = _connect(loopback)
    try:
        assert client.stat("/data/local/tmp/nope") == (0, 0, 0)
    finally:
        client.close()


def test_pull_missing_file_fails(loopback, tmp_path):
    client = _connect(loopback)
    try:
        with pytest.raises(AdbCommandFailureException, match="No such file or directory"):
            client.pull("/data/local/tmp/missing.bin", str(tmp_path / "x"), read_timeout_s=10)
    finally:
        client.close()


def test_auth_with_accepted_key(tmp_path, make_adb_shell_key):
    key = make_adb_shell_key("good")
    with LoopbackDevice(tmp_path / "dev", auth_keys=[key.public_key]) as device:
        client = _connect(device, rsa_keys=[key.signer()])
        try:
            assert client.shell("getprop ro.adb.secure", read_timeout_s=10).strip() == "1"
        finally:
            client.close()


def test_auth_with_rejected_key_stays_unauthorized(tmp_path, make_adb_shell_key):
    accepted, other = make_adb_shell_key("accepted"), make_adb_shell_key("other")
    with LoopbackDevice(tmp_path / "dev", auth_keys=[accepted.public_key]) as device:
        client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=3)
        with pytest.raises((DeviceAuthError, AdbTimeoutError, TcpTimeoutException)):
            client.connect(rsa_keys=[other.signer()], read_timeout_s=3, auth_timeout_s=1.0)
        client.close()
        assert not client.available


def test_auth_required_but_no_key_given(tmp_path, make_adb_shell_key):
    key = make_adb_shell_key()
    with LoopbackDevice(tmp_path / "dev", auth_keys=[key.public_key]) as device:
        client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=3)
        with pytest.raises(DeviceAuthError):
            client.connect(rsa_keys=None, read_timeout_s=3)
        client.close()
