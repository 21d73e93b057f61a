"""A loopback Android device for tests: a pure-Python ADB daemon on 127.0.0.1.

Real `adb` and `adb-shell` connect to it; its filesystem is a sandbox directory and its
battery a simulated fuel gauge with a ground-truth ledger. See `LoopbackDevice`. It runs
`adb shell` commands with this host's /bin/sh as the current user: a fixture for tests on
127.0.0.1, authorizing the user's own ADB key by default, never to be exposed.

Example:
    from device_bench.testing import LoopbackDevice
    with LoopbackDevice(tmp_path, auth_keys=None) as device:  # None: no auth, for protocol tests
        print(device.serial)   # 127.0.0.1:<port>
"""

from device_bench.testing._battery import BatteryProfile, BatteryTruth, LoadTransition, battery_load
from device_bench.testing._device import LoopbackDevice

__all__ = ["BatteryProfile", "BatteryTruth", "LoadTransition", "LoopbackDevice", "battery_load"]
