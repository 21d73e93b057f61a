"""The Pixel ODPM meter, pure: the driver's energy arithmetic and text, and the HAL's dump text.

No I/O and no clock: `Meter` is fed boot-clock nanoseconds, so a test can run a hundred
simulated loads in a moment and the live device (`_rails_sim`) feeds it the real clocks.
Sources are cited in `device_bench.testing.rails`; the comments here name the function each
piece copies the behaviour of.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Mapping, Sequence

from mobile_opt.errors import InputError

SAMPLE_PERIOD_NS = 1_000_000  # the PMIC's internal ADC at 1 kHz, the driver's fastest rate
SAMPLING_RATE_UHZ = 1_000_000_000
MIN_INTERVAL_ACC_COUNT = 20  # odpm.c ODPM_MIN_INTERVAL_ACC_COUNT
MEASURED_BEFORE_S = 600  # the counters have counted idle power this long when the device starts
FAULTS = ("none", "missing_channel", "backwards", "unknown_unit", "unparsable")


def driver_uws(acc_data: int, lsb_nw: int, sampling_uhz: int) -> int:
    """One refresh's energy, µWs, computed as odpm.c `odpm_calculate_uW_sec` does (IQ fixed point).

    Example:
        >>> driver_uws(acc_data=1000, lsb_nw=18315, sampling_uhz=SAMPLING_RATE_UHZ)  # 1 s at one LSB, 18.3 µW
        18
    """
    resolution_mw_iq30 = (lsb_nw << 30) // 1_000_000
    period_ms_iq22 = (((1_000_000_000) << 30) // sampling_uhz) >> 8
    return ((acc_data * resolution_mw_iq30 * period_ms_iq22) >> 30) >> 22


def estimated_rate_uhz(acc_count: int, elapsed_ms: int) -> int:
    """The ADC rate the driver assumes for one refresh (`odpm_estimate_sampling_frequency`):
    counts per truncated elapsed millisecond, unless too few counts or outside ±12.5 %."""
    if acc_count < MIN_INTERVAL_ACC_COUNT or elapsed_ms == 0:
        return SAMPLING_RATE_UHZ
    estimate = acc_count * 1_000_000_000 // elapsed_ms
    if not SAMPLING_RATE_UHZ * 7 // 8 <= estimate <= SAMPLING_RATE_UHZ * 9 // 8:
        return SAMPLING_RATE_UHZ
    return estimate


@dataclass(frozen=True)
class MeterRail:
    """What the meter needs of one rail: its name and LSB, nW per ADC count."""

    schematic: str
    lsb_nw: int


class Meter:
    """One PMIC-pair's accumulators and the exact truth they measure (boot-clock ns).

    The true power is piecewise constant (`set_power`). The ADC samples every rail at every
    multiple of `SAMPLE_PERIOD_NS` and adds `round(P / LSB)`; `refresh` converts the counts as
    the driver does and adds the integer µWs to the counters, as `odpm_refresh_registers` does.
    """

    def __init__(self, rails: Sequence[MeterRail], t_ns: int, power_uw: Mapping[str, float]) -> None:
        self._rails = tuple(rails)
        start = {r.schematic: int(power_uw[r.schematic] * MEASURED_BEFORE_S) for r in self._rails}
        self.counters: dict[str, int] = dict(start)
        self.truth_uws: dict[str, float] = {name: float(v) for name, v in start.items()}
        self.last_poll_ns = t_ns
        self._truth_ns = t_ns
        self._steps: list[tuple[int, dict[str, float]]] = [(t_ns, dict(power_uw))]

    @property
    def power_uw(self) -> dict[str, float]:
        """The true power now, µW per rail."""
        return dict(self._steps[-1][1])

    def set_power(self, t_ns: int, power_uw: Mapping[str, float]) -> None:
        """The true power changes at `t_ns` (not before the last change)."""
        self._advance_truth(t_ns)
        if t_ns == self._steps[-1][0]:
            self._steps[-1] = (t_ns, dict(power_uw))
        else:
            self._steps.append((t_ns, dict(power_uw)))

    def truth_at(self, t_ns: int) -> dict[str, float]:
        """The true cumulative energy at `t_ns` (>= the last change), µWs per rail."""
        dt_s = (t_ns - self._truth_ns) / 1e9
        power = self._steps[-1][1]
        return {name: e + power[name] * dt_s for name, e in self.truth_uws.items()}

    def refresh(self, t_ns: int) -> None:
        """Reads the accumulators at `t_ns` and adds the interval's energy to the counters."""
        a, b = self.last_poll_ns, t_ns
        count = b // SAMPLE_PERIOD_NS - a // SAMPLE_PERIOD_NS
        rate = estimated_rate_uhz(count, (b - a) // 1_000_000)
        for rail in self._rails:
            self.counters[rail.schematic] += driver_uws(self._codes(rail, a, b), rail.lsb_nw, rate)
        self.last_poll_ns = b
        # Keep only the step in effect at the new poll and the later ones.
        while len(self._steps) > 1 and self._steps[1][0] <= b:
            self._steps.pop(0)

    def _codes(self, rail: MeterRail, a: int, b: int) -> int:
        """Sum of the ADC codes of the samples at times in (a, b]."""
        total = 0
        for i, (start, power) in enumerate(self._steps):
            end = self._steps[i + 1][0] if i + 1 < len(self._steps) else b + 1
            lo, hi = max(a, start - 1), min(b, end - 1)
            if hi > lo:
                n = hi // SAMPLE_PERIOD_NS - lo // SAMPLE_PERIOD_NS
                total += n * round(power[rail.schematic] * 1000 / rail.lsb_nw)
        return total

    def _advance_truth(self, t_ns: int) -> None:
        if t_ns < self._truth_ns:
            raise InputError(f"Power steps must not go back in time. Received: t_ns={t_ns} < {self._truth_ns}")
        self.truth_uws = self.truth_at(t_ns)
        self._truth_ns = t_ns


def energy_value_text(t_ms: int, readings: Sequence[tuple[int, str, int]], fault: str, fault_rail: str) -> str:
    """`energy_value` (`energy_value_show`): `t=<ms>`, then `CH<n>(T=<ms>)[<schematic>], <µWs>`
    per channel. The driver starts every channel's measurement at 0 ms, so T equals t."""
    lines = [f"t={t_ms}\n"]
    for channel, name, uws in readings:
        head = f"CH{channel}(T={t_ms})[{name}], "
        if name != fault_rail or fault in ("none", "backwards"):
            lines.append(f"{head}{uws}\n")
        elif fault == "unknown_unit":
            lines.append(f"{head}{uws} mJ\n")
        elif fault == "unparsable":
            lines.append(f"CH{channel}(T={t_ms})[{name[: len(name) // 2]}\n")  # torn mid-name
    return "".join(lines)


def enabled_rails_text(channels: Sequence[tuple[int, str, str]]) -> str:
    """`enabled_rails` (`enabled_rails_show`): `CH<n>[<schematic>]:<subsystem>`."""
    return "".join(f"CH{channel}[{name}]:{subsys}\n" for channel, name, subsys in channels)


def available_rails_text(rails: Sequence[tuple[str, str, str]]) -> str:
    """`available_rails` (`available_rails_show`): `<regulator>(<schematic>):<subsystem>`."""
    return "".join(f"{name}({schematic}):{subsys}\n" for name, schematic, subsys in rails)


def sampling_rate_text() -> str:
    """`sampling_rate` (`scnprintf_sampling_rate`): Hz with six decimals."""
    return f"{SAMPLING_RATE_UHZ // 1_000_000}.{SAMPLING_RATE_UHZ % 1_000_000:06d}\n"


def _float32(value: int) -> float:
    # The HAL prints static_cast<float>(energyUWs) / 1000.0.
    return struct.unpack("<f", struct.pack("<f", float(value)))[0]


def powerstats_dump_text(channels: Sequence[tuple[str, str, int]], consumers: Sequence[tuple[str, int]],
                         fault: str, fault_rail: str) -> str:
    """What `dumpsys android.hardware.power.stats.IPowerStats/default` prints (`PowerStats::dump`
    without "delta"): state residencies (none here), energy consumers, then the energy meter,
    one row `[<schematic>]:<subsystem>` per channel in channel-id order, in mWs."""
    out = ["\n============= PowerStats HAL 2.0 state residencies ==============\n",
           "  %16s   %18s   %16s   %15s   %17s\n" % ("Entity", "State", "Total time", "Total entries",
                                                    "Last entry tstamp"),
           "========== End of PowerStats HAL 2.0 state residencies ==========\n",
           "\n============= PowerStats HAL 2.0 energy consumers ==============\n"]
    out += ["%-12s : %14.2f mWs\n" % (name, _float32(uws) / 1000.0) for name, uws in consumers]
    out += ["========== End of PowerStats HAL 2.0 energy consumers ==========\n",
            "\n============= PowerStats HAL 2.0 energy meter ==============\n",
            "  %32s   %18s\n" % ("Channel", "Cumulative Energy")]
    for name, subsys, uws in channels:
        label = f"[{name}]:{subsys}"
        if name != fault_rail or fault in ("none", "backwards"):
            out.append("  %32s   %14.2f mWs\n" % (label, _float32(uws) / 1000.0))
        elif fault == "unknown_unit":
            out.append("  %32s   %14.2f mJ\n" % (label, _float32(uws) / 1000.0))
        elif fault == "unparsable":
            out.append("  %32s   \n" % label)  # the value torn off
    out.append("========== End of PowerStats HAL 2.0 energy meter ==========\n")
    return "".join(out)
