"""The loopback device's simulated fuel gauge: files, load signalling and the truth ledger."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

import pytest
from adb_shell.adb_device import AdbDeviceTcp

from device_bench.testing import BatteryProfile, BatteryTruth, GaugeModel, LoadTransition, LoopbackDevice
from device_bench.testing._battery import POLL_S
from mobile_opt.errors import InputError

BATTERY = "/sys/class/power_supply/battery"


def _shell(device: LoopbackDevice, command: str) -> str:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    try:
        return client.shell(command, read_timeout_s=30)
    finally:
        client.close()


def _read(device: LoopbackDevice, name: str) -> str:
    return device.device_path(f"{BATTERY}/{name}").read_text().strip()


def _wait_current(device: LoopbackDevice, expected: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _read(device, "current_now") != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"current_now stayed {_read(device, 'current_now')!r}, expected {expected!r}")
        time.sleep(0.01)


def _await_current(value: str) -> str:
    """Device sh: wait (at most 5 s) for current_now to read `value`, then print what it reads."""
    return (
        f"n=0; while [ \"$(cat {BATTERY}/current_now)\" != {value} ] && [ $n -lt 100 ]; "
        f"do sleep 0.05; n=$((n+1)); done; cat {BATTERY}/current_now"
    )


def test_default_files_follow_the_profile_through_device_paths(loopback):
    out = _shell(loopback, f"cd {BATTERY} && for f in current_now voltage_now temp status present type; do cat $f; done")
    assert out.split() == ["-150000", "3900000", "310", "Discharging", "1", "Battery"]
    assert 0 <= int(_read(loopback, "capacity")) <= 100


@pytest.mark.parametrize(
    "loopback",
    [{"battery": BatteryProfile(unit="mA", discharge_sign=+1, status="Charging", idle_current_ua=210_000)}],
    indirect=True,
)
def test_vendor_style_milliamps_positive_and_charging(loopback):
    assert _read(loopback, "current_now") == "210"
    assert _read(loopback, "status") == "Charging"


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(present=False)}, {"battery": None}], indirect=True)
def test_no_battery_files(loopback):
    assert not loopback.device_path(BATTERY).exists()
    assert "No such file" in _shell(loopback, f"cat {BATTERY}/current_now")


def test_battery_none_has_no_truth(tmp_path):
    with LoopbackDevice(tmp_path / "d", auth_keys=None, battery=None) as device:
        with pytest.raises(InputError, match="no battery"):
            device.battery_truth()


def test_load_file_of_a_device_shell_toggles_current(loopback):
    # A device script marks load with its own pid, reads the gauge, then unmarks it.
    out = _shell(
        loopback,
        f"touch /proc/loopback/load/$$; {_await_current('-600000')}; "
        f"rm /proc/loopback/load/$$; {_await_current('-150000')}",
    )
    assert out.split() == ["-600000", "-150000"]


def test_battery_load_context_manager_in_a_device_process(loopback):
    # The device path reaches the program as an argument: command lines are rewritten.
    code = (
        "import sys, time\n"
        "from device_bench.testing import battery_load\n"
        "with battery_load():\n"
        "    deadline = time.monotonic() + 5\n"
        "    while open(sys.argv[1]).read().strip() != '-600000' and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "    print(open(sys.argv[1]).read().strip())\n"
    )
    current = f"{BATTERY}/current_now"
    out = _shell(loopback, f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {current}; {_await_current('-150000')}")
    assert out.split() == ["-600000", "-150000"]
    assert os.listdir(loopback.device_path("/proc/loopback/load")) == []


def test_dead_pid_does_not_count_as_load(loopback):
    finished = subprocess.Popen(["true"])
    finished.wait()
    loopback.device_path(f"/proc/loopback/load/{finished.pid}").touch()
    time.sleep(0.1)
    assert _read(loopback, "current_now") == "-150000"
    assert loopback.battery_truth().transitions == ()


def test_killed_command_releases_its_load(loopback):
    client = AdbDeviceTcp(loopback.host, loopback.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    stream = client.streaming_shell("touch /proc/loopback/load/$$; echo on; sleep 60", read_timeout_s=10)
    assert next(stream).strip() == "on"
    _wait_current(loopback, "-600000")
    client.close()  # connection drop kills the command: its pid is dead, the load ends
    _wait_current(loopback, "-150000")


@pytest.mark.parametrize("update_hz", [20.0, 100.0])
def test_truth_ledger_integrates_a_known_on_time(tmp_path, update_hz):
    profile = BatteryProfile(update_hz=update_hz)
    with LoopbackDevice(tmp_path / "d", auth_keys=None, battery=profile) as device:
        marker = device.device_path(f"/proc/loopback/load/{os.getpid()}")
        t0 = time.monotonic()
        time.sleep(0.2)
        t_on = time.monotonic()
        marker.touch()
        time.sleep(1.0)
        marker.unlink()
        t_off = time.monotonic()
        time.sleep(0.2)
        t1 = time.monotonic()
        truth = device.battery_truth()
    # The truth polls load every POLL_S, whatever the gauge's refresh: each edge is at most one
    # poll late, plus scheduling delay (generous: the suite shares two cores with other work).
    late = POLL_S + 0.15
    (on, off) = truth.transitions
    assert (on.load, off.load) == (True, False)
    assert t_on <= on.t_monotonic <= t_on + late
    assert t_off <= off.t_monotonic <= t_off + late
    assert abs(on.t_wall - off.t_wall - (on.t_monotonic - off.t_monotonic)) < 0.01
    excess_w = (600_000e-6 - 150_000e-6) * 3.9
    assert truth.idle_power_w == pytest.approx(0.15 * 3.9)
    assert truth.load_power_w == pytest.approx(0.6 * 3.9)
    assert truth.excess_energy_j(t0, t1) == pytest.approx(excess_w * (off.t_monotonic - on.t_monotonic))
    assert truth.excess_energy_j(t0, t1) == pytest.approx(excess_w * (t_off - t_on), abs=excess_w * late)
    # Clipping: only the part of the load inside the window counts.
    mid = on.t_monotonic + 0.25
    assert truth.excess_energy_j(mid, t1) == pytest.approx(excess_w * (off.t_monotonic - mid))
    assert truth.excess_energy_j(t0, on.t_monotonic) == 0.0
    # The same ledger is on the device for tests that drive the CLI.
    assert BatteryTruth.from_jsonl(device.device_path("/proc/loopback/truth.jsonl")) == truth
    assert json.loads(device.device_path("/proc/loopback/truth.jsonl").read_text().splitlines()[0])["event"] == "profile"


def test_excess_energy_of_an_open_interval_runs_to_the_window_end():
    truth = BatteryTruth(1.0, 3.0, (LoadTransition(10.0, 0.0, True),))
    assert truth.load_intervals(0.0, 14.0) == [(10.0, 14.0)]
    assert truth.excess_energy_j(0.0, 14.0) == pytest.approx(8.0)
    with pytest.raises(InputError, match="t0 <= t1"):
        truth.excess_energy_j(2.0, 1.0)


def test_profile_validation():
    with pytest.raises(InputError, match="unit"):
        BatteryProfile(unit="A")
    with pytest.raises(InputError, match="discharge_sign"):
        BatteryProfile(discharge_sign=0)
    with pytest.raises(InputError, match="update_hz"):
        BatteryProfile(update_hz=0)
    with pytest.raises(InputError, match="only without a gauge"):
        BatteryProfile(gauge=GaugeModel(), unit="mA")
    with pytest.raises(InputError, match="status"):
        BatteryProfile(status="charging")
    with pytest.raises(InputError, match="name"):
        BatteryProfile(name="usb")
    with pytest.raises(InputError, match="name"):
        BatteryProfile(name="../x")
    assert BatteryProfile().to_dict()["voltage_uv"] == 3_900_000
    assert BatteryProfile(update_hz=10).to_dict()["gauge_model"]["refresh_period_s"] == 0.1


def test_truth_and_its_power_trace_agree_on_excess_energy():
    profile = BatteryProfile(resistance_mohm=150, gauge=GaugeModel(refresh_period_s=0.5, charger_ua=300_000))
    on, off = LoadTransition(10.0, 0.0, True), LoadTransition(12.5, 0.0, False)
    truth = BatteryTruth(profile.idle_power_w, profile.load_power_w, (on, off), profile, t_start=0.0)
    # Sagged voltages: 3.9 V − 0.15 Ω · I.
    assert truth.load_power_w - truth.idle_power_w == pytest.approx((3.9 - 0.09) * 0.6 - (3.9 - 0.0225) * 0.15)
    for t0, t1 in ((0.0, 20.0), (11.0, 12.0), (12.0, 30.0), (13.0, 14.0)):
        assert truth.power_trace().excess_energy_j(t0, t1) == pytest.approx(truth.excess_energy_j(t0, t1), abs=1e-12)
    assert truth.gauge.charger_ua == 300_000 and truth.gauge.status == "Charging"
    with pytest.raises(InputError, match="no profile"):
        BatteryTruth(1.0, 2.0).power_trace()
