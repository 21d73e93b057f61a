"""The simulated fuel gauge of the loopback device and its ground-truth ledger.

A thread rewrites `<root>/sys/class/power_supply/battery/*` at `update_hz`. Load is on while
at least one file `<root>/proc/loopback/load/<pid>[.<suffix>]` exists whose pid is alive; the
thread notices it at its next tick, switches the current from idle to load at that moment and
records the transition (monotonic and wall time). The ledger is the truth the gauge follows:
the simulated draw changes exactly when the files do.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from mobile_opt.errors import InputError

from device_bench.testing._sandbox import LOAD_DIR, POWER_SUPPLY_DIR, TRUTH_FILE, pid_alive

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatteryProfile:
    """What the simulated fuel gauge reports ("ground truth" of the loopback device).

    Args:
        idle_current_ua: current magnitude while idle, µA (default 150_000).
        load_current_ua: current magnitude while load is on (replaces idle), µA (default 600_000).
        voltage_uv: battery voltage, µV (default 3_900_000).
        unit: unit `current_now` is written in, "uA" (ABI) or "mA" (some vendors) (default "uA").
        discharge_sign: -1 (ABI: negative = discharging) or +1 (vendor style) (default -1).
        status: the `status` file, e.g. "Discharging" or "Charging" (USB power) (default "Discharging").
        temp_decidegc: the `temp` file in tenths of °C (default 310).
        update_hz: how often the files are rewritten (default 50.0).
        present: False simulates a device without battery files (default True).

    Example:
        >>> BatteryProfile(unit="mA", discharge_sign=+1).unit
        'mA'
    """

    idle_current_ua: int = 150_000
    load_current_ua: int = 600_000
    voltage_uv: int = 3_900_000
    unit: str = "uA"
    discharge_sign: int = -1
    status: str = "Discharging"
    temp_decidegc: int = 310
    update_hz: float = 50.0
    present: bool = True

    def __post_init__(self) -> None:
        if self.unit not in ("uA", "mA"):
            raise InputError(f"BatteryProfile.unit must be 'uA' or 'mA'. Received: unit={self.unit!r}")
        if self.discharge_sign not in (-1, 1):
            raise InputError(
                f"BatteryProfile.discharge_sign must be -1 or +1. Received: discharge_sign={self.discharge_sign!r}"
            )
        if self.idle_current_ua < 0 or self.load_current_ua < 0 or self.voltage_uv <= 0:
            raise InputError(
                "BatteryProfile currents must be >= 0 and the voltage > 0. Received: "
                f"idle_current_ua={self.idle_current_ua}, load_current_ua={self.load_current_ua}, "
                f"voltage_uv={self.voltage_uv}"
            )
        if not (0 < self.update_hz <= 1000):
            raise InputError(f"BatteryProfile.update_hz must be in (0, 1000]. Received: update_hz={self.update_hz}")

    @property
    def idle_power_w(self) -> float:
        """V·I while idle, in watts."""
        return self.voltage_uv * 1e-6 * self.idle_current_ua * 1e-6

    @property
    def load_power_w(self) -> float:
        """V·I while load is on, in watts."""
        return self.voltage_uv * 1e-6 * self.load_current_ua * 1e-6

    def current_now_text(self, load: bool) -> str:
        """The content of `current_now` (sign and unit applied)."""
        magnitude = self.load_current_ua if load else self.idle_current_ua
        value = magnitude if self.unit == "uA" else round(magnitude / 1000)
        return f"{self.discharge_sign * value}\n"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadTransition:
    """Load switched on (`load=True`) or off at `t_monotonic` (time.monotonic) / `t_wall` (time.time)."""

    t_monotonic: float
    t_wall: float
    load: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BatteryTruth:
    """The ground-truth ledger of the simulated battery.

    Times are `time.monotonic()` values (one clock for every process on this host).
    """

    idle_power_w: float
    load_power_w: float
    transitions: tuple[LoadTransition, ...] = field(default_factory=tuple)

    def load_intervals(self, t0: float = -math.inf, t1: float = math.inf) -> list[tuple[float, float]]:
        """The load-on intervals clipped to [t0, t1]; a load still on runs to `t1`."""
        intervals = []
        start: float | None = None
        for tr in self.transitions:
            if tr.load and start is None:
                start = tr.t_monotonic
            elif not tr.load and start is not None:
                intervals.append((start, tr.t_monotonic))
                start = None
        if start is not None:
            intervals.append((start, t1))
        clipped = [(max(a, t0), min(b, t1)) for a, b in intervals]
        return [(a, b) for a, b in clipped if b > a]

    def load_time_s(self, t0: float = -math.inf, t1: float = math.inf) -> float:
        """Seconds of load within [t0, t1]."""
        return sum(b - a for a, b in self.load_intervals(t0, t1))

    def excess_energy_j(self, t0: float, t1: float) -> float:
        """∫ (P_load − P_idle) dt over the load intervals within [t0, t1], in joules.

        Example:
            >>> t = BatteryTruth(0.5, 2.5, (LoadTransition(1.0, 0, True), LoadTransition(3.0, 0, False)))
            >>> t.excess_energy_j(0.0, 10.0)
            4.0
        """
        if t1 < t0:
            raise InputError(f"excess_energy_j needs t0 <= t1. Received: t0={t0}, t1={t1}")
        return (self.load_power_w - self.idle_power_w) * self.load_time_s(t0, t1)

    def to_dict(self) -> dict:
        return {
            "idle_power_w": self.idle_power_w,
            "load_power_w": self.load_power_w,
            "transitions": [t.to_dict() for t in self.transitions],
        }

    @classmethod
    def from_jsonl(cls, path: Path) -> "BatteryTruth":
        """Reads the ledger a loopback device appends to `<root>/proc/loopback/truth.jsonl`.

        Raises:
            InputError: missing file or no profile line in it.
        """
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise InputError(f"Cannot read the battery truth ledger. Received: path={path}") from exc
        idle = load = None
        transitions = []
        for line in lines:
            record = json.loads(line)
            if record["event"] == "profile":
                idle, load = record["idle_power_w"], record["load_power_w"]
            else:
                transitions.append(LoadTransition(record["t_monotonic"], record["t_wall"], record["event"] == "load_on"))
        if idle is None:
            raise InputError(f"Battery truth ledger has no profile line. Received: path={path}")
        return cls(idle, load, tuple(transitions))


_load_ids = itertools.count()


@contextlib.contextmanager
def battery_load() -> Iterator[Path]:
    """Marks this process as loading the loopback battery while the block runs.

    For processes running ON a loopback device: the device sets `LOOPBACK_ROOT` for them.
    The gauge switches to the load current at its next update (≤ 1/update_hz later).

    Returns:
        A context manager yielding the load marker file.

    Raises:
        InputError: `LOOPBACK_ROOT` is not set (not running on a loopback device).

    Example:
        with battery_load():
            run_inferences()
    """
    root = os.environ.get("LOOPBACK_ROOT")
    if not root:
        raise InputError(
            "battery_load() runs only inside a loopback device command: LOOPBACK_ROOT is not set. "
            "Received: LOOPBACK_ROOT=None"
        )
    marker = Path(root) / LOAD_DIR / f"{os.getpid()}.{next(_load_ids)}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        yield marker
    finally:
        marker.unlink(missing_ok=True)


def _load_pid(name: str) -> int | None:
    head = name.split(".", 1)[0]
    return int(head) if head.isdigit() else None


class BatterySimulator:
    """Keeps the battery files of one sandbox updated and records the truth ledger."""

    def __init__(self, root: Path, profile: BatteryProfile) -> None:
        self._root = root
        self._profile = profile
        self._dir = root / POWER_SUPPLY_DIR
        self._load_dir = root / LOAD_DIR
        self._ledger = root / TRUTH_FILE
        self._lock = threading.Lock()
        self._transitions: list[LoadTransition] = []
        self._load = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopback-battery", daemon=True)

    def start(self) -> None:
        """Writes the files once (readable on return) and starts the update thread."""
        self._load_dir.mkdir(parents=True, exist_ok=True)
        self._ledger.write_text(
            json.dumps(
                {
                    "event": "profile",
                    "idle_power_w": self._profile.idle_power_w,
                    "load_power_w": self._profile.load_power_w,
                    "profile": self._profile.to_dict(),
                }
            )
            + "\n"
        )
        if not self._profile.present:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        static = {
            "voltage_now": f"{self._profile.voltage_uv}\n",
            "temp": f"{self._profile.temp_decidegc}\n",
            "status": f"{self._profile.status}\n",
            "capacity": "80\n",
            "present": "1\n",
            "type": "Battery\n",
        }
        for name, text in static.items():
            self._write(name, text)
        self._write("current_now", self._profile.current_now_text(False))
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def truth(self) -> BatteryTruth:
        with self._lock:
            transitions = tuple(self._transitions)
        return BatteryTruth(self._profile.idle_power_w, self._profile.load_power_w, transitions)

    def _write(self, name: str, text: str) -> None:
        # Atomic replace: a concurrent `cat` never sees a half-written value.
        temp = self._dir / f".{name}.tmp"
        temp.write_text(text)
        os.replace(temp, self._dir / name)

    def _load_on(self) -> bool:
        try:
            names = os.listdir(self._load_dir)
        except FileNotFoundError:
            return False
        return any((pid := _load_pid(n)) is not None and pid_alive(pid) for n in names)

    def _run(self) -> None:
        period = 1.0 / self._profile.update_hz
        next_tick = time.monotonic()
        while not self._stop.is_set():
            load = self._load_on()
            if load != self._load:
                now, wall = time.monotonic(), time.time()
                self._write("current_now", self._profile.current_now_text(load))
                transition = LoadTransition(now, wall, load)
                with self._lock:
                    self._transitions.append(transition)
                    self._load = load
                with open(self._ledger, "a") as ledger:
                    ledger.write(json.dumps({"event": "load_on" if load else "load_off", "t_monotonic": now, "t_wall": wall}) + "\n")
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick = time.monotonic()
                delay = 0
            self._stop.wait(delay)
