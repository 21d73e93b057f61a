"""Device faults over real sockets, for the adb-server and the direct path: the device
vanishing mid-push / mid-pull / mid-command, a full disk, a rejected key, a silent peer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from device_bench import connect
from device_bench.testing import LoopbackDevice
from mobile_opt.errors import (
    DeviceDisconnectedError,
    DeviceError,
    DeviceOfflineError,
    DeviceStorageFullError,
    DeviceUnauthorizedError,
)

TMP = "/data/local/tmp"
PATHS = ["adb-server", "direct"]


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Keys default to ~/.android/adbkey: keep every test away from the real one."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _wait_listed(adb, serial: str, states: tuple[str, ...], timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        listing = adb("devices", timeout_s=10).stdout.decode()
        for state in states:
            if f"{serial}\t{state}" in listing:
                return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{serial} not listed as {states} within {timeout_s} s:\n{listing}")
        time.sleep(0.1)


def _open(path: str, request: pytest.FixtureRequest, loopback: LoopbackDevice, tmp_path: Path):
    """Connects to `loopback` by `path`; for adb-server, `adb connect`s it to the private server."""
    if path == "direct":
        return connect(f"direct:127.0.0.1:{loopback.port}", key_path=tmp_path / "adbkey",
                       connect_timeout_s=5)
    adb = request.getfixturevalue("adb")
    adb("connect", loopback.serial, timeout_s=30)
    _wait_listed(adb, loopback.serial, ("device",))
    return connect(loopback.serial, adb_port=request.getfixturevalue("adb_server"), connect_timeout_s=5)


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(4_000_000))
    return path


@pytest.mark.parametrize("path", PATHS)
def test_disconnect_mid_push_names_device_and_step(path, request, loopback, tmp_path, big_file):
    device = _open(path, request, loopback, tmp_path)
    remote = f"{TMP}/big.bin"
    loopback.disconnect_after_bytes(1_000_000)
    start = time.monotonic()
    with pytest.raises(DeviceDisconnectedError) as info:
        device.push(big_file, remote, timeout_s=30)
    assert time.monotonic() - start < 30  # the drop is seen, not waited out
    assert info.value.serial == device.serial and info.value.step == f"push {remote}"
    assert device.serial in str(info.value) and remote in str(info.value)
    on_device = loopback.device_path(remote)
    assert not on_device.exists() or on_device.stat().st_size != big_file.stat().st_size
    device.close()


@pytest.mark.parametrize("path", PATHS)
def test_disconnect_mid_pull_leaves_no_half_written_file(path, request, loopback, tmp_path, big_file):
    device = _open(path, request, loopback, tmp_path)
    remote = f"{TMP}/big.bin"
    loopback.device_path(remote).write_bytes(big_file.read_bytes())
    out_dir = tmp_path / "pulled"
    out_dir.mkdir()
    loopback.disconnect_after_bytes(1_000_000)
    with pytest.raises(DeviceDisconnectedError) as info:
        device.pull(remote, out_dir / "big.bin", timeout_s=30)
    assert info.value.serial == device.serial and info.value.step == f"pull {remote}"
    assert os.listdir(out_dir) == []  # neither the target nor a temp file
    device.close()


@pytest.mark.parametrize("path", PATHS)
def test_disconnect_mid_command(path, request, loopback, tmp_path):
    device = _open(path, request, loopback, tmp_path)
    loopback.disconnect_after_bytes(200_000)
    with pytest.raises(DeviceDisconnectedError) as info:
        device.shell("i=0; while [ $i -lt 200 ]; do head -c 10000 /dev/zero | tr '\\0' x; "
                     "echo; sleep 0.01; i=$((i+1)); done", timeout_s=30)
    assert info.value.serial == device.serial and info.value.step.startswith("shell ")
    device.close()


@pytest.mark.parametrize("loopback", [{"free_space_bytes": 500_000}], indirect=True)
@pytest.mark.parametrize("path", PATHS)
def test_no_space_left(path, request, loopback, tmp_path, big_file):
    device = _open(path, request, loopback, tmp_path)
    with pytest.raises(DeviceStorageFullError) as info:
        device.push(big_file, f"{TMP}/big.bin", timeout_s=30)
    assert info.value.serial == device.serial and "no space left" in str(info.value).lower()
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    device.close()
    device = _open(path, request, loopback, tmp_path)  # the device still works for what fits
    device.push(small, f"{TMP}/small.bin")
    assert loopback.device_path(f"{TMP}/small.bin").read_bytes() == small.read_bytes()
    device.close()


def test_direct_rejected_key_is_unauthorized_and_accepted_key_works(tmp_path, make_adb_shell_key):
    accepted = make_adb_shell_key("accepted")
    with LoopbackDevice(tmp_path / "dev", auth_keys=[accepted.public_key]) as loopback:
        start = time.monotonic()
        with pytest.raises(DeviceUnauthorizedError, match="Allow USB debugging") as info:
            connect(f"direct:127.0.0.1:{loopback.port}", key_path=tmp_path / "other-key",
                    connect_timeout_s=1.5)
        # Gives up after the auth exchange's timeout; the key is generated first (seconds on a busy CPU).
        assert time.monotonic() - start < 20 * 1.5
        assert info.value.serial == f"direct:127.0.0.1:{loopback.port}"
        with connect(f"direct:127.0.0.1:{loopback.port}", key_path=accepted.private_path) as device:
            assert device.shell("echo authorized").stdout == "authorized\n"


def test_direct_key_created_0600_on_first_auth_then_accepted_after_the_prompt(tmp_path, make_adb_shell_key):
    other = make_adb_shell_key("someone-else")
    key = tmp_path / "fresh" / "adbkey"
    with LoopbackDevice(tmp_path / "dev", auth_keys=[other.public_key]) as loopback:
        with pytest.raises(DeviceUnauthorizedError):
            connect(f"direct:127.0.0.1:{loopback.port}", key_path=key, connect_timeout_s=1.5)
    assert key.stat().st_mode & 0o777 == 0o600
    public = Path(f"{key}.pub").read_text()
    # The user accepts the prompt (the device now knows the key), then retries.
    with LoopbackDevice(tmp_path / "dev2", auth_keys=[public]) as loopback:
        with connect(f"direct:127.0.0.1:{loopback.port}", key_path=key) as device:
            assert device.shell("echo ok").stdout == "ok\n"


def test_direct_no_auth_device_needs_no_key(loopback, tmp_path):
    key = tmp_path / "never" / "adbkey"
    with connect(f"direct:127.0.0.1:{loopback.port}", key_path=key) as device:
        assert device.shell("echo ok").exit_code == 0
    assert not key.exists()


def test_adb_server_unauthorized_device(tmp_path, adb, adb_server, make_adb_shell_key):
    other = make_adb_shell_key("not-the-server-key")
    with LoopbackDevice(tmp_path / "dev", auth_keys=[other.public_key]) as loopback:
        adb("connect", loopback.serial, timeout_s=30)
        _wait_listed(adb, loopback.serial, ("unauthorized",))
        with pytest.raises(DeviceUnauthorizedError, match="Allow USB debugging") as info:
            connect(loopback.serial, adb_port=adb_server)
        assert info.value.serial == loopback.serial


def test_direct_silent_peer_is_offline_fast(loopback):
    loopback.go_silent()
    start = time.monotonic()
    with pytest.raises(DeviceOfflineError, match="did not answer"):
        connect(f"direct:127.0.0.1:{loopback.port}", connect_timeout_s=1)
    assert time.monotonic() - start < 20 * 1  # a few 1 s exchanges, never the OS's TCP timeout


def test_adb_server_offline_device(loopback, adb, adb_server):
    # A device that stops answering shows up "offline" at the server (adb's own verdict).
    loopback.go_silent()
    adb("connect", loopback.serial, timeout_s=30)
    state = _wait_listed(adb, loopback.serial, ("offline",), timeout_s=30)
    assert state == "offline"
    with pytest.raises(DeviceOfflineError) as info:
        connect(loopback.serial, adb_port=adb_server)
    assert info.value.serial == loopback.serial


def test_operations_after_close_raise(loopback, tmp_path):
    device = connect(f"direct:127.0.0.1:{loopback.port}", key_path=tmp_path / "adbkey")
    device.close()
    with pytest.raises(DeviceError, match="closed"):
        device.shell("true")
