"""The settled baseline: `wait_idle` outwaits a slow, averaging gauge still publishing a load."""

from __future__ import annotations

import os
import time

import pytest

from device_bench import device_state
from device_bench.testing import BatteryProfile, GaugeModel

# A gauge refreshing once a second with the mean of the last 5 s: after a load it decays
# for 5 s, one step a second — a 2 s look sees one step and would call it settled.
SLOW = GaugeModel(refresh_period_s=1.0, averaging_window_s=5.0, noise_ua=2000.0, seed=3)
PS = "/sys/class/power_supply"


def _wait(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=SLOW)}], indirect=True)
def test_wait_idle_outwaits_a_slow_averaging_gauge(loopback, direct):
    battery = device_state.find_battery(direct)
    assert isinstance(battery, device_state.Battery)
    reading = loopback.device_path(f"{PS}/battery/{battery.current_file}")
    profile = loopback.battery_truth().profile
    halfway = (profile.idle_current_ua + profile.load_current_ua) / 2
    marker = loopback.device_path(f"/proc/loopback/load/{os.getpid()}")
    marker.touch()
    try:
        # The gauge has published at least half of the load step.
        _wait(lambda: abs(int(reading.read_text())) > halfway, "the gauge to show the load")
    finally:
        marker.unlink()
    assert device_state.wait_idle(direct, battery, window_s=2.0, timeout_s=120.0)
    returned = time.monotonic()
    (_, load_off), = loopback.battery_truth().load_intervals()
    # Until then the published average still held part of the load.
    assert returned >= load_off + SLOW.averaging_window_s + SLOW.lag_s
