"""The loopback battery's description and its ground truth: `BatteryProfile`, `BatteryTruth`.

A profile is the device's true draw (idle/load current, an ohmic cell) plus the `GaugeModel`
that reports it; the truth is the ledger of load transitions the live battery recorded, from
which the true `PowerTrace` and every file value follow exactly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobile_opt.errors import InputError

from device_bench.testing.gauge import GaugeModel, PowerTrace
from device_bench.testing.thermal import DEFAULT_ZONES, ThermalZone

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
