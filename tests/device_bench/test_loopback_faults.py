"""Fault injection of the loopback device: mid-transfer drops, full storage, a silent device."""

from __future__ import annotations

import os
import time

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.exceptions import AdbTimeoutError, PushFailedError, TcpTimeoutException

from device_bench.testing import LoopbackDevice
from device_bench.testing._sync import PARTIAL_MARK

MB = 1024 * 1024
# adb-shell does not notice EOF: a dropped transport shows as a broken pipe or a read timeout.
DROPPED = (OSError, AdbTimeoutError, TcpTimeoutException)


def _client(device: LoopbackDevice, timeout_s: float = 10) -> AdbDeviceTcp:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=timeout_s)
    client.connect(read_timeout_s=timeout_s)
    return client


def _leftovers(directory, timeout_s: float = 5.0) -> list[str]:
    """Files in `directory` once the device cleaned up its temp files (or `timeout_s` passed)."""
    deadline = time.monotonic() + timeout_s
    while any(PARTIAL_MARK in p.name for p in directory.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(p.name for p in directory.iterdir())


def test_drop_mid_push_leaves_no_file(loopback, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(4 * MB))
    client = _client(loopback, timeout_s=2)
    loopback.disconnect_after_bytes(1 * MB)
    with pytest.raises(DROPPED):
        client.push(str(src), "/data/local/tmp/big.bin", read_timeout_s=2)
    client.close()
    assert _leftovers(loopback.device_path("/data/local/tmp")) == []


def test_drop_mid_pull_fails_the_client(loopback, tmp_path):
    loopback.device_path("/data/local/tmp/big.bin").write_bytes(os.urandom(4 * MB))
    client = _client(loopback, timeout_s=2)
    loopback.disconnect_after_bytes(1 * MB)
    with pytest.raises(DROPPED):
        client.pull("/data/local/tmp/big.bin", str(tmp_path / "back.bin"), read_timeout_s=2)
    client.close()
    assert not (tmp_path / "back.bin").exists() or (tmp_path / "back.bin").stat().st_size < 4 * MB


def test_drop_mid_command_output(loopback):
    client = _client(loopback, timeout_s=2)
    loopback.disconnect_after_bytes(100_000)
    with pytest.raises(DROPPED):
        client.shell("head -c 1000000 /dev/zero", read_timeout_s=2)
    client.close()


def test_real_adb_push_interrupted_then_device_comes_back(loopback, adb, adb_connected, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(8 * MB))
    loopback.disconnect_after_bytes(2 * MB)
    push = adb("-s", adb_connected, "push", str(src), "/data/local/tmp/big.bin")
    assert push.returncode != 0
    assert _leftovers(loopback.device_path("/data/local/tmp")) == []
    # The adb server reconnects to a TCP device that vanished; the next push is intact.
    adb.wait_for_state(adb_connected, "device", 30)
    retry = adb("-s", adb_connected, "push", str(src), "/data/local/tmp/big.bin")
    assert retry.returncode == 0, retry
    assert loopback.device_path("/data/local/tmp/big.bin").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("loopback", [{"free_space_bytes": 3 * MB}], indirect=True)
def test_quota_fails_push_with_no_space_left(loopback, tmp_path):
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(os.urandom(2 * MB))
    big.write_bytes(os.urandom(2 * MB))
    client = _client(loopback)
    try:
        before = client.shell("df /data/local/tmp", read_timeout_s=10).splitlines()
        client.push(str(small), "/data/local/tmp/small.bin", read_timeout_s=10)  # fits: 2 of 3 MB
        after = client.shell("df", read_timeout_s=10).splitlines()
        with pytest.raises(PushFailedError, match="No space left on device"):
            client.push(str(big), "/data/local/tmp/big.bin", read_timeout_s=10)  # 4 > 3 MB
    finally:
        client.close()
    assert _leftovers(loopback.device_path("/data/local/tmp")) == ["small.bin"]
    # The generated df agrees with the quota: 1K blocks total/used/available, /data.
    assert before[0].split()[:4] == ["Filesystem", "1K-blocks", "Used", "Available"]
    assert before[1].split()[1:4] + before[1].split()[5:] == ["3072", "0", "3072", "/data"]
    assert after[1].split()[1:5] == ["3072", "2048", "1024", "66%"]


@pytest.mark.parametrize("loopback", [{"free_space_bytes": 1 * MB}], indirect=True)
def test_quota_with_real_adb(loopback, adb, adb_connected, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(2 * MB))
    push = adb("-s", adb_connected, "push", str(src), "/data/local/tmp/big.bin")
    assert push.returncode == 1
    assert b"No space left on device" in push.stderr + push.stdout
    assert not any(PARTIAL_MARK in n or n == "big.bin" for n in _leftovers(loopback.device_path("/data/local/tmp")))


def test_silent_device_times_out_adb_shell(loopback):
    loopback.go_silent()
    client = AdbDeviceTcp(loopback.host, loopback.port, default_transport_timeout_s=1)
    start = time.monotonic()
    with pytest.raises(TcpTimeoutException):
        client.connect(read_timeout_s=1, auth_timeout_s=1)
    client.close()
    assert time.monotonic() - start < 10


def test_silent_device_is_offline_for_real_adb(loopback, adb, adb_server):
    loopback.go_silent()
    connect = adb("connect", loopback.serial, timeout_s=60)
    assert b"failed to connect" in connect.stdout + connect.stderr, connect
    adb.wait_for_state(loopback.serial, "offline", 30)
