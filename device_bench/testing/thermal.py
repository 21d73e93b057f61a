"""Thermal zones of the loopback device: temperatures that rise under load, first order.

`/sys/class/thermal/thermal_zone<N>/{type,temp}` (Linux thermal sysfs ABI,
`Documentation/driver-api/thermal/sysfs-api.rst`): `type` names the sensor, `temp` is in
millidegrees Celsius. A zone heats towards `ambient + rise · (P − P_idle)` with one time
constant (a lumped RC model: SoC sensors react in seconds, battery and skin in minutes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mobile_opt.errors import InputError

from device_bench.testing.gauge import PowerTrace

__all__ = ["DEFAULT_ZONES", "ThermalZone"]


@dataclass(frozen=True)
class ThermalZone:
    """One temperature sensor.

    Args:
        type: the zone's `type` file, e.g. "battery", "cpu-0-0", "skin".
        rise_c_per_w: steady-state rise per watt above idle, °C/W (>= 0).
        time_constant_s: first-order time constant, seconds (> 0).

    Raises:
        InputError: an empty type, a negative rise or a non-positive time constant.

    Example:
        >>> zone = ThermalZone("cpu-0-0", rise_c_per_w=10.0, time_constant_s=1.0)
        >>> trace = PowerTrace(100_000, (0.0,), (600_000,), voltage_uv=4_000_000)
        >>> zone.temperature_mc(trace, 1e6, ambient_c=30.0)
        50000
    """

    type: str
    rise_c_per_w: float
    time_constant_s: float

    def __post_init__(self) -> None:
        if not self.type or self.rise_c_per_w < 0 or self.time_constant_s <= 0:
            raise InputError(
                "ThermalZone needs a type, rise_c_per_w >= 0 and time_constant_s > 0. Received: "
                f"type={self.type!r}, rise_c_per_w={self.rise_c_per_w}, time_constant_s={self.time_constant_s}"
            )

    def rise_c(self, trace: PowerTrace, t: float) -> float:
        """Exact rise above ambient at `t`, starting from idle equilibrium before the first step."""
        rise, previous = 0.0, None
        for start, current in zip(trace.times_s, trace.currents_ua):
            if start >= t:
                break
            if previous is not None:
                rise = self._relax(rise, previous[1], start - previous[0], trace)
            previous = (start, current)
        if previous is not None:
            rise = self._relax(rise, previous[1], t - previous[0], trace)
        return rise

    def _relax(self, rise: float, current_ua: float, dt: float, trace: PowerTrace) -> float:
        target = self.rise_c_per_w * (trace.power_w(current_ua) - trace.idle_power_w)
        return target + (rise - target) * math.exp(-dt / self.time_constant_s)

    def temperature_mc(self, trace: PowerTrace, t: float, ambient_c: float) -> int:
        """The `temp` file's value at `t`, millidegrees Celsius."""
        return round((ambient_c + self.rise_c(trace, t)) * 1000)

    def to_dict(self) -> dict:
        return asdict(self)


# A phone's usual sensors; the first one also drives the battery's own `temp`.
DEFAULT_ZONES = (
    ThermalZone("battery", rise_c_per_w=2.0, time_constant_s=60.0),
    ThermalZone("cpu-0-0", rise_c_per_w=8.0, time_constant_s=2.0),
    ThermalZone("skin", rise_c_per_w=1.5, time_constant_s=120.0),
)
