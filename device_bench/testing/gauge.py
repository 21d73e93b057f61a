"""A fuel-gauge model: what the battery files of a phone read, given the true current draw.

Pure functions of a `PowerTrace` (the ground truth) and a `GaugeModel` (how a gauge reports
it); no threads, no clock. The loopback battery (`_battery.py`) writes these values into its
sysfs files; a test can also evaluate them offline.

Where each behaviour comes from (outside specs, not our client):
- Linux `Documentation/ABI/testing/sysfs-class-power`: `current_now` is one IBAT reading in
  µA, `current_avg` an average "over a fixed period"; positive = charging, negative =
  discharging; `voltage_now` µV; `charge_counter` µAh; `temp` tenths of °C; `capacity` %.
- Fuel gauges (Maxim MAX17050 / MAX1720x class datasheets): the Current register is an ADC
  conversion integrated over its conversion period and refreshed every 175.8 ms; AverageCurrent
  is a filtered average over a configurable window of ~0.7 s up to hours; registers have a fixed
  LSB (e.g. 156.25 µA with a 10 mΩ sense resistor); the coulomb counter integrates continuously.
  A driver reads them over I2C, so what sysfs shows is behind the register by the driver's poll.
- Field conventions (phones in the wild): some vendors report mA, some positive = discharging;
  a phone on USB is charged while measured (battery current = consumption − charger input).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Sequence

from mobile_opt.errors import InputError

__all__ = ["CURRENT_FILES", "GaugeModel", "PowerTrace", "random_gauge"]

CURRENT_FILES = ("current_now", "current_avg")
_CHANNEL = {"current_now": 1, "current_avg": 2}  # noise streams, independent per file


@dataclass(frozen=True)
class PowerTrace:
    """The true current drawn by the device: piecewise constant, with an ohmic battery voltage.

    The device draws `idle_ua` until `times_s[0]`, then `currents_ua[i]` from `times_s[i]` up to
    `times_s[i + 1]` (the last value for ever after). `idle_ua` is also the baseline "excess"
    energy is counted above. The battery's terminal voltage sags under load:
    `V = voltage_uv − resistance_mohm · I` (a Li-ion cell's internal resistance is ~0.05–0.2 Ω),
    so the true power is `V · I`.

    Args:
        idle_ua: consumption before the first step and the excess baseline, µA >= 0.
        times_s: strictly increasing step times, seconds (any clock; the loopback device uses
            `time.monotonic()`) (default ()).
        currents_ua: consumption from each step on, µA >= 0 (default ()).
        voltage_uv: open-circuit voltage, µV (default 3_900_000).
        resistance_mohm: internal resistance, mΩ (default 0.0: no sag).

    Raises:
        InputError: lengths differ, times not increasing, negative current, non-positive voltage.

    Example:
        >>> trace = PowerTrace.step(idle_ua=100_000, load_ua=500_000, t_on=1.0, t_off=3.0, voltage_uv=4_000_000)
        >>> round(trace.excess_energy_j(0.0, 10.0), 9)
        3.2
    """

    idle_ua: float
    times_s: tuple[float, ...] = ()
    currents_ua: tuple[float, ...] = ()
    voltage_uv: float = 3_900_000
    resistance_mohm: float = 0.0
    _charge: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _energy: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times, currents = tuple(map(float, self.times_s)), tuple(map(float, self.currents_ua))
        if len(times) != len(currents):
            raise InputError(
                "PowerTrace needs one current per step time. "
                f"Received: len(times_s)={len(times)}, len(currents_ua)={len(currents)}"
            )
        if any(b <= a for a, b in zip(times, times[1:])):
            raise InputError(f"PowerTrace.times_s must be strictly increasing. Received: times_s={times}")
        levels = (float(self.idle_ua), *currents)
        if min(levels) < 0 or self.voltage_uv <= 0 or self.resistance_mohm < 0:
            raise InputError(
                "PowerTrace needs currents >= 0, voltage > 0 and resistance >= 0. Received: "
                f"min(current)={min(levels)}, voltage_uv={self.voltage_uv}, resistance_mohm={self.resistance_mohm}"
            )
        if any(self.terminal_voltage_uv(c) <= 0 for c in levels):
            raise InputError(
                f"PowerTrace: the voltage sag exceeds the voltage. Received: resistance_mohm={self.resistance_mohm}"
            )
        object.__setattr__(self, "times_s", times)
        object.__setattr__(self, "currents_ua", currents)
        # Cumulative charge / energy at each step time, from times_s[0].
        charge, energy = [0.0], [0.0]
        for i in range(len(times) - 1):
            dt = times[i + 1] - times[i]
            charge.append(charge[-1] + currents[i] * dt)
            energy.append(energy[-1] + self.power_w(currents[i]) * dt)
        object.__setattr__(self, "_charge", tuple(charge))
        object.__setattr__(self, "_energy", tuple(energy))

    @classmethod
    def from_steps(cls, idle_ua: float, steps: Sequence[tuple[float, float]], **kwargs: float) -> "PowerTrace":
        """A trace from `(t, current_ua)` steps; keyword arguments as the constructor's."""
        return cls(idle_ua, tuple(t for t, _ in steps), tuple(c for _, c in steps), **kwargs)

    @classmethod
    def step(
        cls, *, idle_ua: float, load_ua: float, t_on: float, t_off: float, voltage_uv: float = 3_900_000,
        resistance_mohm: float = 0.0,
    ) -> "PowerTrace":
        """Idle, then `load_ua` during [t_on, t_off), then idle again.

        Raises:
            InputError: t_off <= t_on (or as the constructor).
        """
        if t_off <= t_on:
            raise InputError(f"PowerTrace.step needs t_on < t_off. Received: t_on={t_on}, t_off={t_off}")
        return cls(idle_ua, (t_on, t_off), (load_ua, idle_ua), voltage_uv, resistance_mohm)

    def terminal_voltage_uv(self, current_ua: float) -> float:
        """Battery terminal voltage while `current_ua` is drawn (ohmic sag)."""
        return self.voltage_uv - self.resistance_mohm * 1e-3 * current_ua

    def power_w(self, current_ua: float) -> float:
        """V·I while `current_ua` is drawn, watts."""
        return self.terminal_voltage_uv(current_ua) * 1e-6 * current_ua * 1e-6

    def current_ua(self, t: float) -> float:
        """The consumption at `t` (right-continuous: a step at `t` counts at `t`)."""
        i = bisect.bisect_right(self.times_s, t) - 1
        return float(self.idle_ua) if i < 0 else self.currents_ua[i]

    def voltage_at_uv(self, t: float) -> float:
        """The terminal voltage at `t`."""
        return self.terminal_voltage_uv(self.current_ua(t))

    def _cumulative(self, t: float, table: tuple[float, ...], rate) -> float:
        # ∫ rate(I) from times_s[0] (or from 0 without steps) to t; negative before it.
        if not self.times_s:
            return rate(float(self.idle_ua)) * t
        i = bisect.bisect_right(self.times_s, t) - 1
        if i < 0:
            return rate(float(self.idle_ua)) * (t - self.times_s[0])
        return table[i] + rate(self.currents_ua[i]) * (t - self.times_s[i])

    def charge_uc(self, t0: float, t1: float) -> float:
        """∫ I dt over [t0, t1], µA·s (= µC); exact."""
        return self._cumulative(t1, self._charge, float) - self._cumulative(t0, self._charge, float)

    def mean_current_ua(self, t0: float, t1: float) -> float:
        """The exact mean consumption over [t0, t1]; the value at `t0` if the window is empty."""
        if t1 <= t0:
            return self.current_ua(t0)
        return self.charge_uc(t0, t1) / (t1 - t0)

    def energy_j(self, t0: float, t1: float) -> float:
        """∫ V·I dt over [t0, t1], joules; exact."""
        return self._cumulative(t1, self._energy, self.power_w) - self._cumulative(t0, self._energy, self.power_w)

    @property
    def idle_power_w(self) -> float:
        """V·I at the idle current, watts."""
        return self.power_w(float(self.idle_ua))

    def excess_energy_j(self, t0: float, t1: float) -> float:
        """∫ (V·I − P_idle) dt over [t0, t1], joules: the ground truth a client should measure.

        Raises:
            InputError: t1 < t0.
        """
        if t1 < t0:
            raise InputError(f"excess_energy_j needs t0 <= t1. Received: t0={t0}, t1={t1}")
        return self.energy_j(t0, t1) - self.idle_power_w * (t1 - t0)


@dataclass(frozen=True)
class GaugeModel:
    """How one phone's fuel gauge and driver publish the battery current.

    A new value is computed at each refresh instant `r_k = phase_s + k · refresh_period_s` and
    becomes readable at `r_k + lag_s`; between refreshes a read returns the same value.

    Args:
        refresh_period_s: how often the published value changes, 0.01–5 s (default 0.02).
            MAX170xx: 0.1758 s; phones' drivers poll at ~1–10 Hz.
        averaging_window_s: None (default): the value is the instantaneous current at `r_k`
            (the ABI's "single IBAT reading"); else the exact mean over `[r_k − window, r_k]`
            (an integrating ADC: window = period; a smoothed driver: seconds). 0 < window <= 60.
        lag_s: delay from `r_k` until the value is readable (I2C/driver poll), 0–10 s (default 0).
        resolution_ua: quantisation step of the current, 1–1000 µA (default 1).
        noise_ua: Gaussian standard deviation added to each published value, µA, 0–100_000
            (default 0.0); deterministic per `(seed, file, k)`.
        phase_s: offset of the refresh grid, 0 <= phase < period (default 0.0).
        unit: "uA" (ABI) or "mA" (several vendors) (default "uA").
        discharge_sign: -1 (ABI: discharging reads negative) or +1 (vendor style) (default -1).
        charger_ua: charger input current, µA >= 0 (default 0): the gauge sees the battery's
            net current `consumption − charger`, and `status` reads "Charging".
        files: which current files exist, a non-empty subset of ("current_now", "current_avg")
            (default ("current_now",)); some phones only have `current_avg`.
        avg_window_s: window of `current_avg`, seconds (default 5.0), refreshed on the same grid.
        charge_counter_start_uah: the coulomb counter at the start of counting, µAh
            (default 3_000_000).
        charge_counter_step_uah: quantisation of `charge_counter`, µAh (default 1000).
        seed: noise seed (default 0).

    Raises:
        InputError: any value outside the ranges above.

    Example:
        >>> gauge = GaugeModel(refresh_period_s=1.0, unit="mA", discharge_sign=+1)
        >>> gauge.reading_at(PowerTrace(250_000), 3.5)
        250
    """

    refresh_period_s: float = 0.02
    averaging_window_s: float | None = None
    lag_s: float = 0.0
    resolution_ua: int = 1
    noise_ua: float = 0.0
    phase_s: float = 0.0
    unit: str = "uA"
    discharge_sign: int = -1
    charger_ua: int = 0
    files: tuple[str, ...] = ("current_now",)
    avg_window_s: float = 5.0
    charge_counter_start_uah: int = 3_000_000
    charge_counter_step_uah: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(self.files))
        checks = [
            (0.01 <= self.refresh_period_s <= 5.0, "refresh_period_s in [0.01, 5]", "refresh_period_s", self.refresh_period_s),
            (self.averaging_window_s is None or 0 < self.averaging_window_s <= 60,
             "averaging_window_s None or in (0, 60]", "averaging_window_s", self.averaging_window_s),
            (0 <= self.lag_s <= 10, "lag_s in [0, 10]", "lag_s", self.lag_s),
            (isinstance(self.resolution_ua, int) and 1 <= self.resolution_ua <= 1000,
             "an integer resolution_ua in [1, 1000]", "resolution_ua", self.resolution_ua),
            (0 <= self.noise_ua <= 100_000, "noise_ua in [0, 100000]", "noise_ua", self.noise_ua),
            (0 <= self.phase_s < self.refresh_period_s, "0 <= phase_s < refresh_period_s", "phase_s", self.phase_s),
            (self.unit in ("uA", "mA"), "unit 'uA' or 'mA'", "unit", self.unit),
            (self.discharge_sign in (-1, 1), "discharge_sign -1 or +1", "discharge_sign", self.discharge_sign),
            (self.charger_ua >= 0, "charger_ua >= 0", "charger_ua", self.charger_ua),
            (bool(self.files) and set(self.files) <= set(CURRENT_FILES),
             f"files a non-empty subset of {CURRENT_FILES}", "files", self.files),
            (0 < self.avg_window_s <= 60, "avg_window_s in (0, 60]", "avg_window_s", self.avg_window_s),
            (self.charge_counter_step_uah >= 1, "charge_counter_step_uah >= 1", "charge_counter_step_uah",
             self.charge_counter_step_uah),
        ]
        for ok, expected, name, value in checks:
            if not ok:
                raise InputError(f"GaugeModel needs {expected}. Received: {name}={value!r}")

    @property
    def status(self) -> str:
        """The `status` file: "Charging" while a charger feeds the battery, else "Discharging"."""
        return "Charging" if self.charger_ua > 0 else "Discharging"

    def refresh_index(self, t: float) -> int:
        """Index `k` of the value readable at `t`: the last refresh with `r_k + lag_s <= t`."""
        return math.floor((t - self.lag_s - self.phase_s) / self.refresh_period_s)

    def refresh_instant(self, k: int) -> float:
        """`r_k`, the instant whose current the k-th published value describes."""
        return self.phase_s + k * self.refresh_period_s

    def true_value_ua(self, trace: PowerTrace, k: int, file: str = "current_now") -> float:
        """The k-th published consumption before noise, sign, charger and quantisation, µA."""
        r = self.refresh_instant(k)
        window = self.avg_window_s if file == "current_avg" else self.averaging_window_s
        return trace.current_ua(r) if window is None else trace.mean_current_ua(r - window, r)

    def published_ua(self, trace: PowerTrace, k: int, file: str = "current_now") -> int:
        """The k-th value of `file` in µA as the gauge reports it (sign, charger, noise, step)."""
        if file not in CURRENT_FILES:
            raise InputError(f"file must be one of {CURRENT_FILES}. Received: file={file!r}")
        net_discharge = self.true_value_ua(trace, k, file) - self.charger_ua
        if self.noise_ua:
            net_discharge += random.Random(f"{self.seed}:{_CHANNEL[file]}:{k}").gauss(0.0, self.noise_ua)
        return self.discharge_sign * self.resolution_ua * round(net_discharge / self.resolution_ua)

    def reading_at(self, trace: PowerTrace, t: float, file: str = "current_now") -> int:
        """What a read of `file` returns at `t`, in the gauge's unit (the file's integer).

        Any of `CURRENT_FILES` can be computed; `files` says which ones the device has.
        """
        value = self.published_ua(trace, self.refresh_index(t), file)
        # mA drivers divide the µA value in C: integer division truncates toward zero.
        return value if self.unit == "uA" else int(value / 1000)

    def text_at(self, trace: PowerTrace, t: float, file: str = "current_now") -> str:
        """The file's content at `t` (sysfs prints one integer and a newline)."""
        return f"{self.reading_at(trace, t, file)}\n"

    def voltage_reading_uv(self, trace: PowerTrace, t: float) -> int:
        """`voltage_now` at `t`: the terminal voltage at the refresh instant, µV."""
        return round(trace.voltage_at_uv(self.refresh_instant(self.refresh_index(t))))

    def charge_counter_uah(self, trace: PowerTrace, t: float, since_s: float = 0.0) -> int:
        """`charge_counter` at `t`: the coulomb counter at the refresh instant, µAh, quantised.

        The counter holds `charge_counter_start_uah` at `since_s` and integrates the net battery
        current continuously (datasheets: it does not sample), so its difference over a long
        window measures charge exactly up to `charge_counter_step_uah`.
        """
        r = self.refresh_instant(self.refresh_index(t))
        used_uah = (trace.charge_uc(since_s, r) - self.charger_ua * (r - since_s)) / 3600.0
        value = self.charge_counter_start_uah - used_uah
        return self.charge_counter_step_uah * math.floor(value / self.charge_counter_step_uah)

    def to_dict(self) -> dict:
        return asdict(self)


def random_gauge(rng: random.Random, *, charging: bool | None = None) -> GaugeModel:
    """A realistic random gauge for randomized tests.

    Refresh 10 ms–2 s (log-uniform); averaging none / previous period / 1 s / 5 s; lag 0–one
    period; resolution 1 µA–1 mA (log-uniform); noise up to 2 % of a typical 300 mA draw; any
    of the four unit/sign conventions; sometimes only `current_avg`; charging with probability
    1/4 unless `charging` says.

    Args:
        rng: the random source (seed it for a reproducible gauge).
        charging: True/False forces a charger on/off (default None: random).

    Returns:
        A `GaugeModel`.
    """
    period = round(math.exp(rng.uniform(math.log(0.01), math.log(2.0))), 4)
    averaging = rng.choice([None, period, 1.0, 5.0])
    files = rng.choice([("current_now",), ("current_now", "current_avg"), ("current_avg",)])
    charge = rng.random() < 0.25 if charging is None else charging
    return GaugeModel(
        refresh_period_s=period,
        averaging_window_s=averaging,
        lag_s=rng.uniform(0.0, period),
        resolution_ua=round(math.exp(rng.uniform(0.0, math.log(1000)))),
        noise_ua=rng.choice([0.0, rng.uniform(0.0, 6000.0)]),
        phase_s=rng.uniform(0.0, period) % period,
        unit=rng.choice(["uA", "mA"]),
        discharge_sign=rng.choice([-1, 1]),
        charger_ua=rng.randrange(100_000, 1_000_000) if charge else 0,
        files=files,
        avg_window_s=rng.choice([1.0, 5.0, 10.0]),
        seed=rng.randrange(2**31),
    )
