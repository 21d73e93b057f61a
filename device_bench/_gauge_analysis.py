"""What a fuel gauge is, learned from its own samples: units, refresh period, resolution, noise,
lag and averaging.

A gauge publishes a new value every refresh period (often 0.1–2 s), possibly the average of a
window, possibly late; the sampler reads it ~100 times a second and so sees a staircase. The
numbers here are what `energy.compute_energy` needs to integrate that staircase and to bound
the error honestly. Pure functions of the samples (no I/O).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Gauge:
    """The gauge as seen in one sample file (times in s, values in the file's raw unit)."""

    refresh_period_s: float | None  # None: the value (almost) never changed
    changes: int  # value changes seen
    resolution_raw: float | None  # smallest step between two published values
    sample_gap_s: float  # median time between two samples
    max_sample_gap_s: float

    def to_dict(self) -> dict:
        return {
            "refresh_period_s": self.refresh_period_s,
            "changes": self.changes,
            "resolution_raw": self.resolution_raw,
            "sample_gap_s": self.sample_gap_s,
            "max_sample_gap_s": self.max_sample_gap_s,
        }


def learn(times: Sequence[float], values: Sequence[float]) -> Gauge:
    """Refresh period from the runs of identical values; resolution from the value steps.

    A published value is held until the next refresh, so the time between two observed
    changes is a multiple of the period (plus the sampler's gap). The lower quartile of
    those times is taken (runs where the value happened to stay the same are longer, never
    shorter), plus one sample gap so the period is never under-estimated.
    """
    gaps = [b - a for a, b in zip(times, times[1:])]
    gap = statistics.median(gaps) if gaps else 0.0
    max_gap = max(gaps) if gaps else 0.0
    change_times = [times[i] for i in range(1, len(values)) if values[i] != values[i - 1]]
    intervals = sorted(b - a for a, b in zip(change_times, change_times[1:]))
    if len(intervals) >= 3:
        period = intervals[len(intervals) // 4] + gap
    elif intervals:
        period = intervals[0] + gap
    else:
        period = None
    return Gauge(
        refresh_period_s=period,
        changes=len(change_times),
        resolution_raw=_resolution(values),
        sample_gap_s=gap,
        max_sample_gap_s=max_gap,
    )


def response(
    times: Sequence[float], values: Sequence[float], *, start: float, end: float,
    idle: float, plateau: float, visible: float, period: float,
) -> dict[str, float | bool | None]:
    """How the reading answered a load from `start` to `end`: lag and averaging, learned.

    `first_move_s`: from `start` to the first reading more than `visible` (one reading's
    noise and step) off idle: the tool's start-up, the lag and up to one refresh. `half_rise_s` / `half_fall_s`: to half the step after `start` /
    back under half after `end`. An instant gauge reaches half at its first move; one that
    averages over a window W gets there about W/2 later, so `averages` is a rise slower than
    one refresh beyond the first move, and `averaging_window_s` ≈ 2 × that extra time.
    """
    half = abs(plateau - idle) / 2

    def first(after: float, test) -> float | None:
        return next((t - after for t, v in zip(times, values) if t >= after and test(abs(v - idle))), None)

    move = first(start, lambda d: d > visible)
    rise = first(start, lambda d: d >= half)
    fall = first(end, lambda d: d < half)
    slow = None if move is None or rise is None else rise - move
    return {
        "first_move_s": move, "half_rise_s": rise, "half_fall_s": fall,
        "averages": None if slow is None else slow > period,
        "averaging_window_s": None if slow is None or slow <= period else 2 * slow,
    }


def _resolution(values: Sequence[float]) -> float | None:
    """The value step: the greatest common divisor of integer readings (sysfs prints integers;
    every value is a multiple of the step, so the gcd is the step or a multiple of it: never
    an under-estimate), capped by the smallest difference seen."""
    distinct = sorted(set(values))
    steps = [b - a for a, b in zip(distinct, distinct[1:])]
    smallest = min(steps) if steps else None
    if all(float(v).is_integer() for v in distinct):
        divisor = 0
        for value in distinct:
            divisor = math.gcd(divisor, int(abs(value)))
        if divisor:
            return float(divisor) if smallest is None else min(float(divisor), smallest)
    return smallest


def voltage_scale(values: Sequence[float]) -> tuple[float, str]:
    """(volts per raw unit, unit name) by magnitude: µV (the ABI), mV or V."""
    median = statistics.median(abs(v) for v in values)
    if median > 100_000:
        return 1e-6, "uV"
    if median > 100:
        return 1e-3, "mV"
    return 1.0, "V"


def current_scale(values: Sequence[float]) -> tuple[float, str, str]:
    """(amperes per raw unit, unit name, why) by the largest currents seen.

    The 95th percentile of |current| is used, not the median: on a charging phone the net
    current can sit near zero at idle, but under load (or at idle) one side is large. A phone
    draws ≥ 10 mA under use; in mA, ≥ 10 000 would be ≥ 10 A, which no phone draws.
    """
    ordered = sorted(abs(v) for v in values)
    high = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    if high >= 10_000:
        return 1e-6, "uA", f"95th percentile |current| {high:.0f} is ≥ 10000: µA (in mA ≥ 10 A)"
    return 1e-3, "mA", f"95th percentile |current| {high:.0f} is < 10000: mA (in µA < 10 mA)"


def pieces(
    times: Sequence[float], values: Sequence[float], start: float, end: float
) -> list[tuple[float, float, float]]:
    """Pieces (t0, t1, value) of the sampled staircase, clipped to [start, end].

    Each reading stands for the time nearer to it than to its neighbours (midpoint rule): a
    change between two readings is then off by at most half the gap, in either direction.
    """
    out = []
    last = len(times) - 1
    for i, t in enumerate(times):
        t0 = (times[i - 1] + t) / 2 if i > 0 else t
        t1 = (t + times[i + 1]) / 2 if i < last else t
        lo, hi = max(t0, start), min(t1, end)
        if hi > lo:
            out.append((lo, hi, values[i]))
    return out


def mean(parts: list[tuple[float, float, float]]) -> float | None:
    """Time-weighted mean of `pieces`; None over an empty span."""
    total = sum(t1 - t0 for t0, t1, _ in parts)
    if total <= 0:
        return None
    return sum((t1 - t0) * v for t0, t1, v in parts) / total


def spread(parts: list[tuple[float, float, float]]) -> float:
    """Time-weighted standard deviation of `pieces` (0 for an empty or flat span)."""
    centre = mean(parts)
    total = sum(t1 - t0 for t0, t1, _ in parts)
    if centre is None or total <= 0:
        return 0.0
    return (sum((t1 - t0) * (v - centre) ** 2 for t0, t1, v in parts) / total) ** 0.5
