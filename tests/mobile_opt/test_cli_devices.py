"""`mobile-opt devices` end to end: a private real adb server with a loopback device attached."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from device_bench.testing import LoopbackDevice
from mobile_opt.cli import cli

ADB = Path("/usr/bin/adb")


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not 5555 <= port <= 5585:
            return port


@pytest.fixture
def server_with_device(tmp_path: Path):
    """(adb server port, loopback serial): a private `adb nodaemon server` with the device connected."""
    if not ADB.exists():
        pytest.skip("real adb client not installed at /usr/bin/adb (Debian: apt-get install adb)")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
    env["HOME"] = str(tmp_path)  # the server's key goes here, not into the user's ~/.android
    server = subprocess.Popen([str(ADB), "-P", str(port), "nodaemon", "server"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def adb(*args: str) -> str:
        return subprocess.run([str(ADB), "-P", str(port), *args], env=env, capture_output=True,
                              text=True, timeout=30).stdout

    try:
        deadline = time.monotonic() + 15
        while True:  # probe the socket: `adb devices` would fork a daemon if ours is not up
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "private adb server did not start"
                time.sleep(0.05)
        with LoopbackDevice(tmp_path / "device") as loopback:
            adb("connect", loopback.serial)
            while f"{loopback.serial}\tdevice" not in adb("devices"):
                assert time.monotonic() < deadline + 15, "loopback device never came online"
                time.sleep(0.1)
            yield port, loopback.serial
    finally:
        server.terminate()
        server.wait(10)


def test_devices_json_against_private_server(server_with_device, tmp_path):
    port, serial = server_with_device
    result = subprocess.run(
        [sys.executable, "-m", "mobile_opt.cli", "devices", "--json", "--adb-port", str(port)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    rows = {row["serial"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {serial, "host"}
    device = rows[serial]
    assert device["transport"] == "adb-server" and device["state"] == "device"
    assert (device["model"], device["abi"], device["android_version"], device["sdk"]) == (
        "Loopback", "arm64-v8a", "14", 34)
    assert isinstance(device["battery"]["level"], int) and device["battery"]["status"] == "Discharging"


def test_devices_table(server_with_device):
    port, serial = server_with_device
    result = CliRunner().invoke(cli, ["devices", "--adb-port", str(port), "--no-host"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert serial in result.output and "Loopback" in result.output and "arm64-v8a" in result.output


def test_devices_without_server():
    port = _free_port()
    runner = CliRunner()
    listed = runner.invoke(cli, ["devices", "--json", "--adb-port", str(port)])
    assert listed.exit_code == 0 and [r["serial"] for r in json.loads(listed.output)] == ["host"]
    failed = runner.invoke(cli, ["devices", "--no-host", "--adb-port", str(port)])
    assert failed.exit_code == 1 and "adb start-server" in failed.output
