"""The loopback device's battery: sysfs files written by a fuel-gauge model, and the truth ledger.

The true draw comes from what runs on the device: load is on while at least one file
`<root>/proc/loopback/load/<pid>[.<suffix>]` exists whose pid is alive (`battery_load()`
makes one). A thread polls for it every `POLL_S`, independent of the gauge's refresh, so the
recorded truth is sharp (the gauge follows the recorded truth exactly; the marker files lead it
by at most one poll); each change is a step of the true `PowerTrace`, appended to
`<root>/proc/loopback/truth.jsonl` with its monotonic and wall time. What the files show is
then *derived* from that truth by the profile's `GaugeModel` (refresh, averaging, lag,
quantisation, noise, unit, sign, charger) — exactly as `gauge.py` computes it.

The files follow the Linux power-supply ABI (`Documentation/ABI/testing/sysfs-class-power`):
`/sys/class/power_supply/<name>/` with `type`, `status`, `present`, `capacity`, `voltage_now`,
`current_now` and/or `current_avg`, `temp`, `charge_counter`, `charge_full`; a `usb` supply
(`type` USB, `online`) sits beside it, and Android's healthd finds the battery by its `type`
file, not by its name. Thermal zones: `/sys/class/thermal/thermal_zone<N>/{type,temp}`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from mobile_opt.errors import InputError

from device_bench.testing._battery_profile import BatteryProfile, BatteryTruth, LoadTransition
from device_bench.testing._sandbox import LOAD_DIR, POWER_SUPPLY_ROOT, THERMAL_ROOT, TRUTH_FILE, pid_alive

__all__ = ["LOAD_KINDS", "POLL_S", "BatteryProfile", "BatterySimulator", "BatteryTruth", "LoadTransition",
           "active_loads", "battery_load"]

logger = logging.getLogger(__name__)

POLL_S = 0.005  # load polling step: the truth is at most this (plus scheduling) late
LOAD_KINDS = ("cpu", "gpu", "nnapi")  # what runs: the battery counts any, the rails tell them apart


_load_ids = itertools.count()


@contextlib.contextmanager
def battery_load(kind: str = "cpu") -> Iterator[Path]:
    """Marks this process as loading the loopback battery while the block runs.

    For processes running ON a loopback device: the device sets `LOOPBACK_ROOT` for them.
    The true draw switches to the load current within one poll (`POLL_S`); the files follow
    by the gauge model. The marker is `<pid>.<n>.<kind>`; a marker without a kind counts as "cpu".

    Args:
        kind: what runs, one of `LOAD_KINDS` (default "cpu"): the ODPM rails it loads
            (`device_bench.testing.rails`); the battery draws the same for every kind.

    Returns:
        A context manager yielding the load marker file.

    Raises:
        InputError: `LOOPBACK_ROOT` is not set (not running on a loopback device), or an unknown kind.

    Example:
        with battery_load():
            run_inferences()
    """
    if kind not in LOAD_KINDS:
        raise InputError(f"battery_load kind must be one of {LOAD_KINDS}. Received: kind={kind!r}")
    root = os.environ.get("LOOPBACK_ROOT")
    if not root:
        raise InputError(
            "battery_load() runs only inside a loopback device command: LOOPBACK_ROOT is not set. "
            "Received: LOOPBACK_ROOT=None"
        )
    marker = Path(root) / LOAD_DIR / f"{os.getpid()}.{next(_load_ids)}.{kind}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        yield marker
    finally:
        marker.unlink(missing_ok=True)


def active_loads(load_dir: Path) -> frozenset[str]:
    """The kinds of the markers in `load_dir` whose pid is alive ("cpu" for a marker without one)."""
    try:
        names = os.listdir(load_dir)
    except FileNotFoundError:
        return frozenset()
    kinds = set()
    for name in names:
        parts = name.split(".")
        if parts[0].isdigit() and pid_alive(int(parts[0])):
            kinds.add(parts[2] if len(parts) > 2 and parts[2] in LOAD_KINDS else "cpu")
    return frozenset(kinds)


class BatterySimulator:
    """Keeps the battery and thermal files of one sandbox following the gauge model."""

    def __init__(self, root: Path, profile: BatteryProfile) -> None:
        self._profile = profile
        self._gauge = profile.gauge_model
        self._dir = root / POWER_SUPPLY_ROOT / profile.name
        self._usb = root / POWER_SUPPLY_ROOT / "usb"
        self._thermal = root / THERMAL_ROOT
        self._load_dir = root / LOAD_DIR
        self._ledger = root / TRUTH_FILE
        self._lock = threading.Lock()
        self._transitions: list[LoadTransition] = []
        self._trace = profile.trace()
        self._load = False
        self._written: dict[Path, str] = {}
        self._t_start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopback-battery", daemon=True)

    def start(self) -> None:
        """Writes every file once (readable on return) and starts the update thread."""
        self._load_dir.mkdir(parents=True, exist_ok=True)
        self._ledger.write_text(
            json.dumps(
                {
                    "event": "profile",
                    "idle_power_w": self._profile.idle_power_w,
                    "load_power_w": self._profile.load_power_w,
                    "profile": self._profile.to_dict(),
                    "t_start": self._t_start,
                }
            )
            + "\n"
        )
        logger.info("Loopback battery %s: gauge %s", self._profile.name, self._gauge)
        self._write_static()
        self._refresh(time.monotonic())
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def truth(self) -> BatteryTruth:
        with self._lock:
            transitions = tuple(self._transitions)
        return BatteryTruth(
            self._profile.idle_power_w, self._profile.load_power_w, transitions, self._profile, self._t_start
        )

    def _write(self, path: Path, text: str) -> None:
        if self._written.get(path) == text:
            return
        # Atomic replace: a concurrent `cat` never sees a half-written value.
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.parent / f".{path.name}.tmp"
        temp.write_text(text)
        os.replace(temp, path)
        self._written[path] = text

    def _write_static(self) -> None:
        charging = self._gauge.charger_ua > 0
        usb = {"type": "USB", "online": f"{int(charging)}", "present": f"{int(charging)}",
               "voltage_now": "5000000" if charging else "0", "current_max": "1500000" if charging else "0"}
        for name, text in usb.items():
            self._write(self._usb / name, f"{text}\n")
        for i, zone in enumerate(self._profile.thermal_zones):
            self._write(self._thermal / f"thermal_zone{i}" / "type", f"{zone.type}\n")
        if not self._profile.present:
            return
        battery = {"type": "Battery", "present": "1", "status": self._profile.status_text,
                   "technology": "Li-ion", "charge_full": f"{self._profile.charge_full_uah}"}
        for name, text in battery.items():
            self._write(self._dir / name, f"{text}\n")

    def _refresh(self, now: float) -> None:
        trace, gauge = self._trace, self._gauge
        ambient = self._profile.temp_decidegc / 10
        battery_temp = None
        for i, zone in enumerate(self._profile.thermal_zones):
            mc = zone.temperature_mc(trace, now, ambient)
            self._write(self._thermal / f"thermal_zone{i}" / "temp", f"{mc}\n")
            if battery_temp is None and zone.type == "battery":
                battery_temp = round(mc / 100)
        if not self._profile.present:
            return
        for file in gauge.files:
            self._write(self._dir / file, gauge.text_at(trace, now, file))
        counter = gauge.charge_counter_uah(trace, now, since_s=self._t_start)
        capacity = min(100, max(0, round(100 * counter / self._profile.charge_full_uah)))
        self._write(self._dir / "voltage_now", f"{gauge.voltage_reading_uv(trace, now)}\n")
        self._write(self._dir / "charge_counter", f"{counter}\n")
        self._write(self._dir / "capacity", f"{capacity}\n")
        self._write(self._dir / "temp", f"{self._profile.temp_decidegc if battery_temp is None else battery_temp}\n")

    def _run(self) -> None:
        shown = self._gauge.refresh_index(time.monotonic())
        while not self._stop.wait(POLL_S):
            try:
                shown = self._step(shown)
            except Exception:  # a dead thread would freeze the battery silently: say why, keep going
                logger.exception("loopback battery: one poll failed")

    def _step(self, shown: int) -> int:
        """One poll: the load's truth, then the files if the gauge refreshed; the shown refresh."""
        load = bool(active_loads(self._load_dir))
        now, wall = time.monotonic(), time.time()
        if load != self._load:
            transition = LoadTransition(now, wall, load)
            with self._lock:
                self._transitions.append(transition)
                self._load = load
                self._trace = self._profile.trace(tuple(self._transitions))
            with open(self._ledger, "a") as ledger:
                ledger.write(json.dumps({"event": "load_on" if load else "load_off", "t_monotonic": now, "t_wall": wall}) + "\n")
        k = self._gauge.refresh_index(now)
        if k != shown:
            self._refresh(now)
        return k
