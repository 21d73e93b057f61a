"""A loopback Android device for tests: a pure-Python ADB daemon on 127.0.0.1.

Real `adb` and `adb-shell` connect to it; its filesystem is a sandbox directory and its
battery a fuel-gauge model (`gauge.GaugeModel`) fed by a ground-truth ledger; optionally it has a
Pixel's ODPM power rails (`rails`). See `LoopbackDevice`.
It runs `adb shell` commands with this host's shell as the current user: a fixture for tests on
127.0.0.1, authorizing the user's own ADB key by default, never to be exposed.

Example:
    from device_bench.testing import LoopbackDevice
    with LoopbackDevice(tmp_path, auth_keys=None) as device:  # None: no auth, for protocol tests
        print(device.serial)   # 127.0.0.1:<port>
"""

from device_bench.testing._battery import BatteryProfile, BatteryTruth, LoadTransition, battery_load
from device_bench.testing._device import LoopbackDevice
from device_bench.testing.gauge import GaugeModel, PowerTrace, random_gauge
from device_bench.testing.rails import RailsProfile, RailsTruth, configure_rails, rails_truth
from device_bench.testing.thermal import ThermalZone

__all__ = [
    "BatteryProfile",
    "BatteryTruth",
    "GaugeModel",
    "LoadTransition",
    "LoopbackDevice",
    "PowerTrace",
    "RailsProfile",
    "RailsTruth",
    "ThermalZone",
    "battery_load",
    "configure_rails",
    "rails_truth",
    "random_gauge",
]
