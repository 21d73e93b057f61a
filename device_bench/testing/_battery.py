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
import math
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from mobile_opt.errors import InputError

from device_bench.testing._sandbox import LOAD_DIR, POWER_SUPPLY_ROOT, THERMAL_ROOT, TRUTH_FILE, pid_alive
from device_bench.testing.gauge import GaugeModel, PowerTrace
from device_bench.testing.thermal import DEFAULT_ZONES, ThermalZone

logger = logging.getLogger(__name__)

POLL_S = 0.005  # load polling step: the truth is at most this (plus scheduling) late
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_STATUSES = ("Charging", "Discharging", "Not charging", "Full", "Unknown")


@dataclass(frozen=True)
class BatteryProfile:
    """The loopback battery: the device's true draw and the gauge that reports it.

    Args:
        idle_current_ua: consumption while idle, µA (default 150_000).
        load_current_ua: consumption while load is on (replaces idle), µA (default 600_000).
        voltage_uv: open-circuit battery voltage, µV (default 3_900_000).
        resistance_mohm: internal resistance; `voltage_now` sags by R·I under load (default 0.0).
        gauge: how the files report the current (default None: an instantaneous gauge refreshed
            at `update_hz` in `unit` / `discharge_sign`, the shorthand below).
        unit: shorthand for `GaugeModel.unit` when `gauge` is None (default "uA").
        discharge_sign: shorthand for `GaugeModel.discharge_sign` when `gauge` is None (default -1).
        update_hz: shorthand refresh rate when `gauge` is None, (0, 100] Hz (default 50.0).
        status: overrides the `status` file ("Charging", "Discharging", "Not charging", "Full",
            "Unknown"); None (default): "Charging" while the gauge has a charger, else "Discharging".
        temp_decidegc: ambient temperature, tenths of °C: `temp` at idle (default 310).
        present: False simulates a device without battery files (default True).
        name: the battery's directory under /sys/class/power_supply (default "battery"; phones
            also use "bms", "max170xx_battery", "bq27500-0", ...).
        charge_full_uah: `charge_full`; `capacity` = charge_counter / charge_full (default 4_000_000).
        thermal_zones: the thermal zones, rising with excess power (default: battery, cpu, skin;
            a zone typed "battery" also drives the battery's `temp`).

    Raises:
        InputError: a value out of range, or shorthand options given together with `gauge`.

    Example:
        >>> BatteryProfile(unit="mA", discharge_sign=+1).gauge_model.unit
        'mA'
    """

    idle_current_ua: int = 150_000
    load_current_ua: int = 600_000
    voltage_uv: int = 3_900_000
    resistance_mohm: float = 0.0
    gauge: GaugeModel | None = None
    unit: str = "uA"
    discharge_sign: int = -1
    update_hz: float = 50.0
    status: str | None = None
    temp_decidegc: int = 310
    present: bool = True
    name: str = "battery"
    charge_full_uah: int = 4_000_000
    thermal_zones: tuple[ThermalZone, ...] = DEFAULT_ZONES

    def __post_init__(self) -> None:
        if self.gauge is not None and (self.unit, self.discharge_sign, self.update_hz) != ("uA", -1, 50.0):
            raise InputError(
                "BatteryProfile takes unit/discharge_sign/update_hz only without a gauge; set them on the "
                f"GaugeModel instead. Received: unit={self.unit!r}, discharge_sign={self.discharge_sign}, "
                f"update_hz={self.update_hz}, gauge={self.gauge!r}"
            )
        if not (0 < self.update_hz <= 100):
            raise InputError(f"BatteryProfile.update_hz must be in (0, 100]. Received: update_hz={self.update_hz}")
        if self.idle_current_ua < 0 or self.load_current_ua < 0 or self.voltage_uv <= 0:
            raise InputError(
                "BatteryProfile currents must be >= 0 and the voltage > 0. Received: "
                f"idle_current_ua={self.idle_current_ua}, load_current_ua={self.load_current_ua}, "
                f"voltage_uv={self.voltage_uv}"
            )
        if self.status is not None and self.status not in _STATUSES:
            raise InputError(f"BatteryProfile.status must be None or one of {_STATUSES}. Received: status={self.status!r}")
        if not _NAME_RE.match(self.name) or self.name == "usb":
            raise InputError(
                f"BatteryProfile.name must be a plain directory name other than 'usb'. Received: name={self.name!r}"
            )
        if self.charge_full_uah <= 0:
            raise InputError(f"BatteryProfile.charge_full_uah must be > 0. Received: charge_full_uah={self.charge_full_uah}")
        object.__setattr__(self, "thermal_zones", tuple(self.thermal_zones))
        self.gauge_model  # validates the shorthand (unit, sign)
        self.trace()  # validates the voltage sag

    @property
    def gauge_model(self) -> GaugeModel:
        """The gauge in effect (`gauge`, or the one the shorthand options describe)."""
        if self.gauge is not None:
            return self.gauge
        return GaugeModel(refresh_period_s=1.0 / self.update_hz, unit=self.unit, discharge_sign=self.discharge_sign)

    @property
    def status_text(self) -> str:
        """The `status` file."""
        return self.status or self.gauge_model.status

    def trace(self, transitions: tuple["LoadTransition", ...] = ()) -> PowerTrace:
        """The true draw given load transitions (monotonic times)."""
        steps = [(tr.t_monotonic, self.load_current_ua if tr.load else self.idle_current_ua) for tr in transitions]
        return PowerTrace.from_steps(
            self.idle_current_ua, steps, voltage_uv=self.voltage_uv, resistance_mohm=self.resistance_mohm
        )

    @property
    def idle_power_w(self) -> float:
        """V·I while idle, in watts (V sagged by the internal resistance)."""
        return self.trace().power_w(self.idle_current_ua)

    @property
    def load_power_w(self) -> float:
        """V·I while load is on, in watts."""
        return self.trace().power_w(self.load_current_ua)

    def to_dict(self) -> dict:
        """The fields, plus `gauge_model`: the gauge in effect."""
        return {**asdict(self), "gauge_model": self.gauge_model.to_dict()}


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

    Times are `time.monotonic()` values (one clock for every process on this host). The
    excess energy is exact for the recorded transitions: the gauge's files derive from them.

    Args:
        idle_power_w: true power while idle, W.
        load_power_w: true power while load is on, W.
        transitions: the load switches, in order (default ()).
        profile: the battery profile (default None: only the powers are known).
        t_start: monotonic time the battery started counting, e.g. `charge_counter` (default None).
    """

    idle_power_w: float
    load_power_w: float
    transitions: tuple[LoadTransition, ...] = field(default_factory=tuple)
    profile: BatteryProfile | None = None
    t_start: float | None = None

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
        """∫ (P − P_idle) dt within [t0, t1], in joules.

        Example:
            >>> t = BatteryTruth(0.5, 2.5, (LoadTransition(1.0, 0, True), LoadTransition(3.0, 0, False)))
            >>> t.excess_energy_j(0.0, 10.0)
            4.0
        """
        if t1 < t0:
            raise InputError(f"excess_energy_j needs t0 <= t1. Received: t0={t0}, t1={t1}")
        return (self.load_power_w - self.idle_power_w) * self.load_time_s(t0, t1)

    def power_trace(self) -> PowerTrace:
        """The true draw as a `PowerTrace` (monotonic clock).

        Raises:
            InputError: the truth carries no profile.
        """
        return self._profile().trace(self.transitions)

    @property
    def gauge(self) -> GaugeModel:
        """The gauge that wrote the files.

        Raises:
            InputError: the truth carries no profile.
        """
        return self._profile().gauge_model

    def _profile(self) -> BatteryProfile:
        if self.profile is None:
            raise InputError("This BatteryTruth carries no profile. Received: profile=None")
        return self.profile

    def to_dict(self) -> dict:
        return {
            "idle_power_w": self.idle_power_w,
            "load_power_w": self.load_power_w,
            "transitions": [t.to_dict() for t in self.transitions],
            "profile": None if self.profile is None else self.profile.to_dict(),
            "t_start": self.t_start,
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
        head = None
        transitions = []
        for line in lines:
            record = json.loads(line)
            if record["event"] == "profile":
                head = record
            else:
                transitions.append(LoadTransition(record["t_monotonic"], record["t_wall"], record["event"] == "load_on"))
        if head is None:
            raise InputError(f"Battery truth ledger has no profile line. Received: path={path}")
        return cls(head["idle_power_w"], head["load_power_w"], tuple(transitions), _profile_from_dict(head["profile"]), head["t_start"])


def _profile_from_dict(d: dict) -> BatteryProfile:
    d = {k: v for k, v in d.items() if k != "gauge_model"}
    d["gauge"] = None if d["gauge"] is None else GaugeModel(**d["gauge"])
    d["thermal_zones"] = tuple(ThermalZone(**z) for z in d["thermal_zones"])
    return BatteryProfile(**d)


_load_ids = itertools.count()


@contextlib.contextmanager
def battery_load() -> Iterator[Path]:
    """Marks this process as loading the loopback battery while the block runs.

    For processes running ON a loopback device: the device sets `LOOPBACK_ROOT` for them.
    The true draw switches to the load current within one poll (`POLL_S`); the files follow
    by the gauge model.

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

    def _load_on(self) -> bool:
        try:
            names = os.listdir(self._load_dir)
        except FileNotFoundError:
            return False
        return any((pid := _load_pid(n)) is not None and pid_alive(pid) for n in names)

    def _run(self) -> None:
        shown = self._gauge.refresh_index(time.monotonic())
        while not self._stop.wait(POLL_S):
            load = self._load_on()
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
                shown = k
                self._refresh(now)
