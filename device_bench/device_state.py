"""The device's battery and temperatures, read over `adb shell` in one command each.

- `find_battery`: the supply under `/sys/class/power_supply/*/` whose `type` is `Battery`
  (Android's healthd finds it the same way; phones name it `battery`, `bms`,
  `max170xx_battery`, ...), with `current_now`, or `current_avg` where that is missing.
- `find_rails`: the ODPM power monitors (`/sys/bus/iio/devices/iio:device*/energy_value`,
  Pixel 6 and later), else the PowerStats HAL's energy meter in `dumpsys`; see `rails.py`.
- `read_thermal`: battery `temp` (tenths of °C) and every `thermal_zone*/temp` (m°C).
- `wait_until`: bounded polling for "cool enough" and "back at idle".
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Callable

from device_bench import rails as _rails
from device_bench.device import Device

__all__ = ["Battery", "Rails", "find_battery", "find_rails", "hot_warning", "read_thermal", "wait_idle", "wait_until"]

logger = logging.getLogger(__name__)

POWER_SUPPLY = "/sys/class/power_supply"
THERMAL = "/sys/class/thermal"
IIO_DEVICES = "/sys/bus/iio/devices"
POWER_STATS = "android.hardware.power.stats.IPowerStats/default"
HOT_BATTERY_C = 40.0  # Android's battery-health "warm" zone starts around here
HOT_ZONE_C = 70.0

# One line per supply: DIR|TYPE|has current_now|has current_avg|has voltage_now.
_DISCOVER = (
    'for d in "$1"/*; do t=?; [ -r "$d/type" ] && read -r t < "$d/type"; '
    'n=0; a=0; v=0; [ -r "$d/current_now" ] && n=1; [ -r "$d/current_avg" ] && a=1; '
    '[ -r "$d/voltage_now" ] && v=1; echo "$d|$t|$n|$a|$v"; done'
)
# "battery TEMP" then "ZONE_TYPE TEMP" per zone.
_THERMAL = (
    't=?; [ -n "$1" ] && [ -r "$1/temp" ] && read -r t < "$1/temp"; echo "battery $t"; '
    'for z in "$2"/thermal_zone*; do [ -r "$z/temp" ] || continue; read -r v < "$z/temp"; '
    'n=${z##*/}; [ -r "$z/type" ] && read -r n < "$z/type"; echo "$n $v"; done'
)

# Read, not `[ -r ]`: root passes -r on a file that the driver still refuses.
_FIND_RAILS = 'for d in "$1"/iio:device*; do cat "$d/energy_value" >/dev/null 2>&1 && echo "$d"; done; true'


@dataclass(frozen=True)
class Rails:
    """Where the rail counters are read: ODPM IIO directories, or ("dumpsys",)."""

    sources: tuple[str, ...]


@dataclass(frozen=True)
class Battery:
    """The battery's sysfs directory and which current file is sampled."""

    directory: str
    current_file: str  # "current_now" or "current_avg"


def find_battery(
    device: Device, *, name: str | None = None, directory: str | None = None
) -> Battery | str:
    """The battery to sample, or a sentence saying why there is none.

    Args:
        device: the device.
        name: a supply name under /sys/class/power_supply (overrides discovery).
        directory: a full sysfs path (overrides `name`).
    """
    if directory is None and name is not None:
        directory = f"{POWER_SUPPLY}/{name}"
    parent = directory.rsplit("/", 1)[0] if directory else POWER_SUPPLY
    shell = device.shell(["sh", "-c", _DISCOVER, "sh", parent], timeout_s=30)
    rows = []
    for line in shell.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            # The path we asked about plus the entry's name (the shell may print it otherwise,
            # e.g. through a symlinked /sys).
            path = f"{parent}/{parts[0].rsplit('/', 1)[-1]}"
            rows.append((path, parts[1], parts[2] == "1", parts[3] == "1", parts[4] == "1"))
    if directory is not None:
        rows = [r for r in rows if r[0] == directory]
        if not rows:
            return f"no power supply at {directory} on {device.serial}"
    else:
        rows = [r for r in rows if r[1].strip().lower() == "battery"]
        if not rows:
            return (f"no supply of type Battery under {POWER_SUPPLY} on {device.serial}; name "
                    "one with --battery NAME")
    usable = [r for r in rows if (r[2] or r[3]) and r[4]]
    if not usable:
        found = ", ".join(r[0] for r in rows)
        return (f"battery {found} on {device.serial} has no readable current_now/current_avg "
                "and voltage_now")
    # Prefer a battery with the instantaneous current; then the conventional name.
    usable.sort(key=lambda r: (not r[2], not r[0].endswith("/battery")))
    chosen = usable[0]
    if len(usable) > 1:
        logger.info("several batteries on %s (%s); using %s", device.serial,
                    ", ".join(r[0] for r in usable), chosen[0])
    return Battery(chosen[0], "current_now" if chosen[2] else "current_avg")


def read_thermal(device: Device, battery_dir: str | None) -> dict[str, float]:
    """{"battery": °C, "thermal/<zone type>": °C, ...}; unreadable sensors are left out."""
    shell = device.shell(["sh", "-c", _THERMAL, "sh", battery_dir or "", THERMAL], timeout_s=30)
    temps: dict[str, float] = {}
    for index, line in enumerate(shell.stdout.splitlines()):
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            raw = float(parts[1])
        except ValueError:
            continue
        # Battery `temp` is in tenths of °C (power-supply ABI); zones in m°C (thermal ABI).
        if index == 0:
            temps["battery"] = raw / 10
            continue
        name = f"thermal/{parts[0]}"
        while name in temps:
            name += "'"
        temps[name] = raw / 1000
    return temps


def hot_warning(temps: dict[str, float]) -> str | None:
    """A sentence when the battery or a zone is hot enough to throttle, else None."""
    hot = [f"{name} {value:.1f} °C" for name, value in temps.items()
           if value >= (HOT_BATTERY_C if name == "battery" else HOT_ZONE_C)]
    if not hot:
        return None
    return (f"the device was hot ({', '.join(hot)}): it may throttle; let it cool "
            "(--cooldown-to CELSIUS) for comparable numbers")


def device_temperature(temps: dict[str, float]) -> float | None:
    """The battery's temperature, else the hottest zone's."""
    if "battery" in temps:
        return temps["battery"]
    return max(temps.values()) if temps else None


def wait_until(check: Callable[[], bool], timeout_s: float, poll_s: float) -> bool:
    """Calls `check` until it is true or `timeout_s` passed; True when it became true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


MIN_CHANGES = 4  # refreshes seen before the reading's trend is judged
MAX_IDLE_WINDOW_S = 16.0  # a reading that has not changed in this long is steady


def wait_idle(device: Device, battery: Battery, *, window_s: float, timeout_s: float) -> bool:
    """Waits (bounded) until the battery reading has stopped moving: back at idle.

    The reading is sampled over a window that grows (from `window_s`, doubling) until it
    holds at least `MIN_CHANGES` gauge refreshes, so a gauge refreshing every second or two is
    judged on its own periods, not on one repeated value. Runs of one value are one refresh.
    It is settled when the later half of the refreshes has the mean of the earlier half within
    three standard errors (and one reading step): an averaging gauge still publishing the last
    run decays and fails this. A reading that does not change for `MAX_IDLE_WINDOW_S` is steady.
    """
    deadline = time.monotonic() + timeout_s
    window = window_s
    while True:
        values = _read_current(device, battery, window)
        if values is None:
            return True  # unreadable: nothing to wait for here; the analysis will say
        refreshes = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
        if len(refreshes) <= MIN_CHANGES and window < MAX_IDLE_WINDOW_S:
            window = min(2 * window, MAX_IDLE_WINDOW_S)
        elif len(refreshes) <= MIN_CHANGES or _steady(refreshes):
            return True
        if time.monotonic() + window > deadline:
            return False


def _read_current(device: Device, battery: Battery, window_s: float) -> list[float] | None:
    count = 20
    script = (f'i=0; while [ $i -lt {count} ]; do read -r v < "$1"; echo "$v"; '
              f'i=$((i+1)); sleep {window_s / count:.3f}; done')
    out = device.shell(["sh", "-c", script, "sh", f"{battery.directory}/{battery.current_file}"],
                       timeout_s=window_s + 30).stdout
    try:
        values = [float(v) for v in out.split()]
    except ValueError:
        return None
    return values if len(values) >= 4 else None


def _steady(refreshes: list[float]) -> bool:
    half = len(refreshes) // 2
    first, second = refreshes[:half], refreshes[half:]
    diffs = [b - a for a, b in zip(refreshes, refreshes[1:])]
    step = min(abs(d) for d in diffs)
    # Successive differences have σ·√2 of noise and barely feel a steady trend; the halves'
    # means differ by σ·√(2/half) from noise alone.
    noise = statistics.pstdev(diffs) / half ** 0.5
    return abs(statistics.fmean(second) - statistics.fmean(first)) <= 3 * noise + step


def find_rails(device: Device) -> Rails | str:
    """The device's power-rail counters, or a sentence saying why it has none.

    Sysfs first (the driver's own counters and timestamps); where no `energy_value` is
    readable, the PowerStats HAL's dump, if it has an energy meter with channels.
    """
    shell = device.shell(["sh", "-c", _FIND_RAILS, "sh", IIO_DEVICES], timeout_s=30)
    # The path asked about plus the entry's name (the shell may print it otherwise).
    dirs = tuple(f"{IIO_DEVICES}/{line.strip().rsplit('/', 1)[-1]}"
                 for line in shell.stdout.splitlines() if line.strip())
    if dirs:
        return Rails(dirs)
    dump = device.shell(["dumpsys", POWER_STATS], timeout_s=30)
    try:
        if dump.exit_code == 0 and _rails.parse_dumpsys(dump.stdout):
            return Rails((_rails.DUMPSYS_SOURCE,))
        why = "no channels" if dump.exit_code == 0 else f"exit {dump.exit_code}"
    except _rails.RailsFormatError as exc:
        why = str(exc)
    return (f"no power rails on {device.serial}: no readable {IIO_DEVICES}/iio:device*/energy_value "
            f"(ODPM, Pixel 6 and later) and `dumpsys {POWER_STATS}` gave no energy meter ({why})")
