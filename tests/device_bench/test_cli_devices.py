"""`mobile-opt devices` end to end: a private real adb server with a loopback device attached."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mobile_opt.cli import cli


@pytest.fixture
def server_with_device(adb_server, adb_connected):
    """(adb server port, loopback serial): a private real adb server with the device connected."""
    return adb_server, adb_connected


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


def test_devices_without_server(closed_port):
    port = closed_port
    runner = CliRunner()
    listed = runner.invoke(cli, ["devices", "--json", "--adb-port", str(port)])
    assert listed.exit_code == 0 and [r["serial"] for r in json.loads(listed.output)] == ["host"]
    failed = runner.invoke(cli, ["devices", "--no-host", "--adb-port", str(port)])
    assert failed.exit_code == 1 and "adb start-server" in failed.output


def test_adb_port_variable_that_is_no_port(tiny_model, tmp_path):
    """A fresh process (importing adbutils reads the variable): `devices` refuses it by name,
    `bench --device host` never reads it."""
    env = dict(os.environ, HOME=str(tmp_path), ANDROID_ADB_SERVER_PORT="abc")
    command = [sys.executable, "-m", "mobile_opt.cli"]
    devices = subprocess.run([*command, "devices"], capture_output=True, text=True, timeout=120, env=env)
    assert devices.returncode == 2, devices.stderr
    assert "ANDROID_ADB_SERVER_PORT must be the adb server's TCP port" in devices.stderr
    assert "Traceback" not in devices.stderr
    bench = subprocess.run([*command, "bench", "--device", "host", str(tiny_model), "--runs", "3", "--json"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert bench.returncode == 0, bench.stderr
    (row,) = json.loads(bench.stdout)["results"]
    assert (row["model_path"], row["status"]) == (str(tiny_model), "ok")
