"""LoopbackDevice API, sandbox mapping, concurrency, process cleanup and the `python -m` entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from adb_shell.adb_device import AdbDeviceTcp

import device_bench.testing as testing
from device_bench.testing import LoopbackDevice
from device_bench.testing._sandbox import Sandbox
from mobile_opt.errors import InputError


def test_public_api_is_pinned():
    assert testing.__all__ == ["BatteryProfile", "BatteryTruth", "LoadTransition", "LoopbackDevice", "battery_load"]


def _client(device: LoopbackDevice) -> AdbDeviceTcp:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    return client


def _pid_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _wait_for_file(path: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


# --- sandbox -----------------------------------------------------------------------------


def test_device_path_maps_into_root_and_refuses_escape(loopback):
    assert loopback.device_path("/data/local/tmp/x") == loopback.root / "data/local/tmp/x"
    assert loopback.device_path("/data/../../etc/passwd") == loopback.root / "etc/passwd"
    with pytest.raises(InputError, match="absolute"):
        loopback.device_path("data/x")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("cat /sys/class/power_supply/battery/current_now", "cat R/sys/class/power_supply/battery/current_now"),
        ("ls -l /data/local/tmp", "ls -l R/data/local/tmp"),
        ("cd /sdcard && echo x>/data/a", "cd R/sdcard && echo x>R/data/a"),
        ("sh '/system/bin/run.sh' \"/data/m.tflite\"", "sh 'R/system/bin/run.sh' \"R/data/m.tflite\""),
        ("echo /database /dev/null x/data /proc/self", "echo /database /dev/null x/data /proc/self"),
        ("ls /proc/loopback/load", "ls R/proc/loopback/load"),
        ("X=/data/local/tmp f", "X=R/data/local/tmp f"),
    ],
)
def test_command_rewriting(tmp_path, command, expected):
    sandbox = Sandbox(tmp_path)
    assert sandbox.rewrite_command(command) == expected.replace("R/", f"{tmp_path.resolve()}/")


def test_root_with_shell_metacharacters_refused(tmp_path):
    with pytest.raises(InputError, match="metacharacters"):
        LoopbackDevice(tmp_path / "has space")


@pytest.mark.parametrize("port", [5555, 5585, -1, 70000])
def test_reserved_or_invalid_port_refused(tmp_path, port):
    with pytest.raises(InputError, match="5555-5585"):
        LoopbackDevice(tmp_path, port=port)


def test_unparsable_auth_key_refused(tmp_path):
    with pytest.raises(InputError, match="adbkey.pub"):
        LoopbackDevice(tmp_path, auth_keys=["not a key"])


@pytest.mark.parametrize("loopback", [{"props": {"ro.product.model": "Pixel 9", "x.custom": "a b"}}], indirect=True)
def test_props_override_defaults_and_shell_environment(loopback):
    client = _client(loopback)
    try:
        out = client.shell(
            "getprop ro.product.model; getprop x.custom; getprop ro.product.manufacturer; "
            "getprop no.such.prop fallback; echo $HOME; echo $LOOPBACK_ROOT; ls /data/local/tmp/../..",
            read_timeout_s=10,
        )
    finally:
        client.close()
    lines = out.splitlines()
    assert lines[:4] == ["Pixel 9", "a b", "mobile-opt", "fallback"]
    assert lines[4] == str(loopback.device_path("/data/local/tmp"))
    assert lines[5] == str(loopback.root)
    assert "local" in lines[6:]


# --- concurrency and cleanup ---------------------------------------------------------------


def _rendezvous(name: str, parties: int) -> str:
    """A device command that only finishes once `parties` such commands run at the same time."""
    return (
        f"touch /data/local/tmp/here.{name}; n=0; "
        f"while [ $(ls /data/local/tmp | grep -c here) -lt {parties} ] && [ $n -lt 300 ]; "
        "do sleep 0.05; n=$((n+1)); done; "
        f"echo {name} $(ls /data/local/tmp | grep -c here)"
    )


def test_concurrent_connections_and_streams(loopback, adb, adb_connected):
    results: dict[int, str] = {}

    def via_adb_shell(i: int) -> None:
        client = _client(loopback)
        try:
            results[i] = client.shell(_rendezvous(f"conn{i}", 6), read_timeout_s=30).strip()
        finally:
            client.close()

    threads = [threading.Thread(target=via_adb_shell, args=(i,)) for i in range(3)]
    # Several streams over the one real-adb transport at the same time.
    procs = [adb.popen("-s", adb_connected, "shell", _rendezvous(f"stream{i}", 6), stdout=subprocess.PIPE) for i in range(3)]
    for t in threads:
        t.start()
    outs = [p.communicate(timeout=30)[0].decode().strip() for p in procs]
    for t in threads:
        t.join(30)
    # Each command saw all six markers: the six ran concurrently (serially they would time out at 1..5).
    assert outs == ["stream0 6", "stream1 6", "stream2 6"]
    assert results == {0: "conn0 6", 1: "conn1 6", 2: "conn2 6"}


def test_client_close_kills_process_group(loopback, adb, adb_connected):
    pidfile = loopback.device_path("/data/local/tmp/pid")
    client = adb.popen("-s", adb_connected, "shell", "echo $$ > /data/local/tmp/pid; sleep 60 & sleep 60")
    pid = int(_wait_for_file(pidfile))
    client.send_signal(signal.SIGKILL)  # the adb server then CLSEs the stream
    client.wait(10)
    assert _pid_gone(pid), "the command's process group survived the stream close"


def test_connection_drop_kills_process_group(loopback):
    pidfile = loopback.device_path("/data/local/tmp/pid")
    client = _client(loopback)
    stream = client.streaming_shell("echo $$ > /data/local/tmp/pid; echo started; sleep 60", read_timeout_s=10)
    assert next(stream).strip() == "started"
    pid = int(_wait_for_file(pidfile))
    client.close()
    assert _pid_gone(pid)


def test_interactive_shell_refused_exec_out_served(adb, adb_connected):
    interactive = adb("-s", adb_connected, "shell", timeout_s=30)
    assert interactive.returncode == 1 and b"closed" in interactive.stderr
    raw = adb("-s", adb_connected, "exec-out", "echo hi; echo e >&2")
    assert (raw.returncode, raw.stdout) == (0, b"hi\ne\n")  # exec: raw, stderr merged


def test_disconnect_all_then_reconnect(loopback):
    client = _client(loopback)
    loopback.disconnect_all()
    with pytest.raises(OSError):
        client.shell("echo x", read_timeout_s=3)
    client.close()
    again = _client(loopback)
    try:
        assert again.shell("echo back", read_timeout_s=10).strip() == "back"
    finally:
        again.close()


# --- python -m device_bench.testing ----------------------------------------------------------


def test_module_entry_point_serves_until_sigterm(tmp_path, make_adb_shell_key):
    key = make_adb_shell_key()
    (tmp_path / "key.pub").write_text(key.public_key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_bench.testing", "--port", "0", "--root", str(tmp_path / "dev"),
         "--auth-key", str(tmp_path / "key.pub")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        serial = proc.stdout.readline().strip()
        host, port = serial.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        client = AdbDeviceTcp(host, int(port), default_transport_timeout_s=10)
        client.connect(rsa_keys=[key.signer()], read_timeout_s=10)
        assert client.shell("getprop ro.serialno", read_timeout_s=10).strip() == serial
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
