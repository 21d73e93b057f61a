"""The live sysfs files of the loopback battery follow the gauge model of its truth ledger.

Files are read through the real ADB protocol (adb-shell), each read bracketed by host
monotonic times [t0, t1]. A read must return the model's value for some refresh k that was
readable by t1 (`r_k + lag <= t1`: never early) and not older than `STALE_S` before t0 (the
writer thread may be descheduled on a loaded machine): no test races the clock.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from adb_shell.adb_device import AdbDeviceTcp

from device_bench.testing import BatteryProfile, GaugeModel, LoopbackDevice, random_gauge

PS = "/sys/class/power_supply"
STALE_S = 3.0


def _client(device: LoopbackDevice) -> AdbDeviceTcp:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    return client


def _model_value(truth, file: str, k: int) -> int:
    gauge, trace = truth.gauge, truth.power_trace()
    # The middle of k's readable interval: unambiguous whatever the float rounding.
    t = gauge.refresh_instant(k) + gauge.lag_s + gauge.refresh_period_s / 2
    if file == "voltage_now":
        return gauge.voltage_reading_uv(trace, t)
    if file == "charge_counter":
        return gauge.charge_counter_uah(trace, t, since_s=truth.t_start)
    return gauge.reading_at(trace, t, file)


def _sample(device: LoopbackDevice, name: str, files: list[str], n: int, load_from: int, load_to: int):
    """`n` ADB reads of `files`; the host holds load from read `load_from` to `load_to`."""
    marker = device.device_path(f"/proc/loopback/load/{os.getpid()}")
    command = "cat " + " ".join(f"{PS}/{name}/{f}" for f in files)
    samples = []
    client = _client(device)
    try:
        for i in range(n):
            if i == load_from:
                marker.touch()
            if i == load_to:
                marker.unlink()
            t0 = time.monotonic()
            out = client.shell(command, read_timeout_s=30)
            samples.append((t0, time.monotonic(), [int(v) for v in out.split()]))
    finally:
        client.close()
        marker.unlink(missing_ok=True)
    return samples


def _assert_follows_model(device: LoopbackDevice, name: str, files: list[str], samples) -> None:
    truth = device.battery_truth()
    gauge = truth.gauge
    for t0, t1, values in samples:
        assert len(values) == len(files), values
        ks = range(gauge.refresh_index(t0 - STALE_S), gauge.refresh_index(t1) + 1)
        for file, value in zip(files, values):
            candidates = {_model_value(truth, file, k) for k in ks}
            assert value in candidates, (file, value, t0, t1, gauge)


GAUGES = [
    # A fast averaging gauge with noise, lag and a vendor convention.
    GaugeModel(refresh_period_s=0.05, averaging_window_s=0.05, lag_s=0.02, resolution_ua=10, noise_ua=3000.0,
               unit="mA", discharge_sign=+1, seed=3),
    # A slow smoothed one that only has current_avg, on a charger.
    GaugeModel(refresh_period_s=0.5, averaging_window_s=1.0, lag_s=0.25, files=("current_avg",), avg_window_s=1.0,
               charger_ua=450_000, resolution_ua=1000),
    *(random_gauge(random.Random(seed)) for seed in range(3)),
]


@pytest.mark.parametrize("gauge", GAUGES, ids=lambda g: f"{g.refresh_period_s}s-{g.unit}{g.discharge_sign:+d}")
def test_live_files_follow_the_model_of_the_truth(tmp_path, gauge):
    profile = BatteryProfile(gauge=gauge, resistance_mohm=120, name="bms")
    with LoopbackDevice(tmp_path / "d", auth_keys=None, battery=profile) as device:
        files = [*gauge.files, "voltage_now", "charge_counter"]
        samples = _sample(device, "bms", files, n=40, load_from=10, load_to=28)
        truth = device.battery_truth()
        assert truth.gauge == gauge and truth.profile == profile
        assert [t.load for t in truth.transitions] == [True, False]
        _assert_follows_model(device, "bms", files, samples)


def _wait_reading(client: AdbDeviceTcp, path: str, accept, what: str, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        value = int(client.shell(f"cat {path}", read_timeout_s=30))
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} read {value}, never {what} within {timeout_s} s")


def test_load_reaches_the_files_and_the_voltage_sags(tmp_path):
    profile = BatteryProfile(resistance_mohm=100, gauge=GaugeModel(refresh_period_s=0.05))
    with LoopbackDevice(tmp_path / "d", auth_keys=None, battery=profile) as device:
        client = _client(device)
        try:
            battery = f"{PS}/battery"
            assert int(client.shell(f"cat {battery}/voltage_now")) == 3_900_000 - 100 * 150  # µV: mΩ · mA
            marker = device.device_path(f"/proc/loopback/load/{os.getpid()}")
            marker.touch()
            _wait_reading(client, f"{battery}/current_now", lambda v: v == -600_000, "the load current")
            _wait_reading(client, f"{battery}/voltage_now", lambda v: v == 3_900_000 - 100 * 600, "the sagged voltage")
            marker.unlink()
            _wait_reading(client, f"{battery}/current_now", lambda v: v == -150_000, "the idle current")
        finally:
            client.close()


def test_supplies_are_found_by_type_and_a_charger_shows(tmp_path):
    gauge = GaugeModel(files=("current_avg",), charger_ua=400_000)
    with LoopbackDevice(tmp_path / "d", auth_keys=None, battery=BatteryProfile(gauge=gauge, name="max170xx_battery")) as device:
        client = _client(device)
        try:
            listing = client.shell(f'for d in {PS}/*; do echo "${{d##*/}} $(cat $d/type)"; done')
            assert sorted(listing.splitlines()) == ["max170xx_battery Battery", "usb USB"]
            battery = f"{PS}/max170xx_battery"
            assert client.shell(f"cat {battery}/status {PS}/usb/online").split() == ["Charging", "1"]
            # ABI: positive = into the battery: 400 mA in, 150 mA consumed.
            assert int(client.shell(f"cat {battery}/current_avg")) == 250_000
            assert "No such file" in client.shell(f"cat {battery}/current_now 2>&1")
            assert not device.device_path(f"{PS}/battery").exists()
        finally:
            client.close()


def test_thermal_zones_heat_under_load(tmp_path):
    with LoopbackDevice(tmp_path / "d", auth_keys=None) as device:
        client = _client(device)
        try:
            zones = "/sys/class/thermal"
            assert client.shell(f"cat {zones}/thermal_zone*/type").split() == ["battery", "cpu-0-0", "skin"]
            assert client.shell(f"cat {zones}/thermal_zone*/temp").split() == ["31000"] * 3
            profile = device.battery_truth().profile
            cpu = profile.thermal_zones[1]
            ceiling = round((31.0 + cpu.rise_c_per_w * (profile.load_power_w - profile.idle_power_w)) * 1000)
            marker = device.device_path(f"/proc/loopback/load/{os.getpid()}")
            marker.touch()
            hot = _wait_reading(client, f"{zones}/thermal_zone1/temp", lambda v: v > 32000, "above 32 °C")
            assert hot <= ceiling  # never above the steady state
            marker.unlink()
            _wait_reading(client, f"{zones}/thermal_zone1/temp", lambda v: v < hot, "cooling down")
            battery_mc, battery_dc = map(int, client.shell(f"cat {zones}/thermal_zone0/temp {PS}/battery/temp").split())
            # The same sensor in tenths; one read may straddle a refresh (a change of < 1 m°C).
            assert abs(battery_dc * 100 - battery_mc) <= 50 + 1
        finally:
            client.close()
