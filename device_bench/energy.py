"""Energy per inference from fuel-gauge samples (pure: no I/O).

Input is the text written by `android_harness/sample_power.sh` and the window markers of
`run_benchmark.sh`:

    start 812.30 Discharging 310        uptime, status, temp (tenths of °C)
    mark 812.30 baseline_start
    812.31 -152000 3901000              uptime, current_now, voltage_now (raw values)
    mark 814.31 baseline_end
    mark 814.31 measured_start
    ...
    mark 817.90 measured_end
    end 817.91 Discharging 312

What the device reports is detected, not assumed, and recorded in the result:
- current unit: µA (the ABI) or mA (some vendors) — a µA reading of a phone under use is
  ≥ 10 000; in mA that would be ≥ 10 A, which no phone draws;
- voltage unit: µV (the ABI), mV or V, by magnitude;
- sign: negative = discharging (the ABI) or positive = discharging (some vendors), from how
  the current moves when the benchmark load starts (more discharge under load), falling back
  to the sign of the readings while the status says Discharging.

Energy: the excess power over the idle baseline measured right before is integrated over the
measured window (each reading stands for the time nearer to it than to its neighbours) and divided
by the inferences run in it. The spread is the standard error over ~1 s bins of the window;
the bound is the most the integration can be off given the gaps between readings where the
power changed (it grows when the sampler was starved near the load's edges).
A device that is charging still yields a number (the net battery current moves with the load)
but is flagged: the charger may cover part of the load.

Example:
    >>> text = "\\n".join(["mark 0 baseline_start", "0.25 -100000 4000000", "0.75 -100000 4000000",
    ...     "mark 1 baseline_end", "mark 1 measured_start", "1.25 -300000 4000000",
    ...     "1.75 -300000 4000000", "mark 2 measured_end", "2.25 -100000 4000000"])
    >>> log = parse_samples(text)
    >>> round(compute_energy(log, inferences=100).energy_per_inference_j, 6)
    0.008
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

__all__ = ["EnergyResult", "PowerLog", "PowerSample", "compute_energy", "parse_samples"]

_WINDOWS = ("baseline", "measured")


@dataclass(frozen=True)
class PowerSample:
    """One fuel-gauge reading: uptime seconds and the raw `current_now` / `voltage_now`."""

    t_s: float
    current_raw: float
    voltage_raw: float


@dataclass(frozen=True)
class PowerLog:
    """A parsed sample file: samples, window markers, battery state at start and end."""

    samples: tuple[PowerSample, ...]
    marks: dict[str, float]
    status_start: str | None = None
    status_end: str | None = None
    temp_start_c: float | None = None
    temp_end_c: float | None = None
    error: str | None = None
    malformed_lines: int = 0


@dataclass(frozen=True)
class EnergyResult:
    """Energy per inference and how it was obtained; `reason` says why a value is None."""

    energy_per_inference_j: float | None
    energy_per_inference_spread_j: float | None
    energy_per_inference_bound_j: float | None
    excess_energy_j: float | None
    inferences: int | None
    baseline_power_w: float | None
    measured_power_w: float | None
    baseline_s: float | None
    measured_s: float | None
    samples: int
    sample_rate_hz: float | None
    max_sample_gap_s: float | None
    current_unit: str | None
    voltage_unit: str | None
    discharge_sign: int | None
    detection: dict[str, str]
    status_start: str | None
    status_end: str | None
    charging: bool
    temp_start_c: float | None
    temp_end_c: float | None
    warnings: tuple[str, ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnergyResult":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["warnings"] = tuple(values.get("warnings", ()))
        values["detection"] = dict(values.get("detection", {}))
        return cls(**values)

    @classmethod
    def unavailable(cls, reason: str, log: PowerLog | None = None) -> "EnergyResult":
        """A result without energy, saying why (battery absent, no samples, bad markers…)."""
        return cls(
            energy_per_inference_j=None,
            energy_per_inference_spread_j=None,
            energy_per_inference_bound_j=None,
            excess_energy_j=None,
            inferences=None,
            baseline_power_w=None,
            measured_power_w=None,
            baseline_s=None,
            measured_s=None,
            samples=len(log.samples) if log else 0,
            sample_rate_hz=None,
            max_sample_gap_s=None,
            current_unit=None,
            voltage_unit=None,
            discharge_sign=None,
            detection={},
            status_start=log.status_start if log else None,
            status_end=log.status_end if log else None,
            charging=_is_charging(log) if log else False,
            temp_start_c=log.temp_start_c if log else None,
            temp_end_c=log.temp_end_c if log else None,
            reason=reason,
        )


def parse_samples(text: str) -> PowerLog:
    """Parses a sample file written by `sample_power.sh` + `run_benchmark.sh`.

    Args:
        text: the file's content. Unknown or truncated lines are counted, not fatal (the
            last line can be cut when the device disappears).

    Returns:
        A `PowerLog` (samples sorted by time).

    Example:
        >>> parse_samples("start 1.0 Charging 305\\n1.0 5 4000000\\n").status_start
        'Charging'
    """
    samples: list[PowerSample] = []
    marks: dict[str, float] = {}
    state: dict[str, Any] = {}
    malformed = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "mark" and len(parts) == 3:
                marks[parts[2]] = float(parts[1])
            elif parts[0] in ("start", "end") and len(parts) >= 4:
                state[f"status_{parts[0]}"] = parts[2] if parts[2] != "?" else None
                state[f"temp_{parts[0]}_c"] = (
                    float(parts[3]) / 10 if parts[3] not in ("?", "") else None
                )
            elif parts[0] == "error":
                state["error"] = " ".join(parts[1:])
            elif len(parts) == 3:
                samples.append(PowerSample(float(parts[0]), float(parts[1]), float(parts[2])))
            else:
                malformed += 1
        except ValueError:
            malformed += 1
    samples.sort(key=lambda s: s.t_s)
    return PowerLog(samples=tuple(samples), marks=marks, malformed_lines=malformed, **state)


def _is_charging(log: PowerLog) -> bool:
    return any(
        status is not None and status.lower() in ("charging", "full")
        for status in (log.status_start, log.status_end)
    )


def _voltage_scale(values: list[float]) -> tuple[float, str]:
    median = statistics.median(abs(v) for v in values)
    if median > 100_000:
        return 1e-6, "uV"
    if median > 100:
        return 1e-3, "mV"
    return 1.0, "V"


def _current_scale(values: list[float]) -> tuple[float, str, str]:
    median = statistics.median(abs(v) for v in values)
    if median >= 10_000:
        return 1e-6, "uA", f"median |current_now| {median:.0f} is ≥ 10000: µA (in mA ≥ 10 A)"
    return 1e-3, "mA", f"median |current_now| {median:.0f} is < 10000: mA (in µA < 10 mA)"


def _time_weighted(
    samples: tuple[PowerSample, ...], values: list[float], start: float, end: float
) -> list[tuple[float, float, float]]:
    """Pieces (t0, t1, value) of `values` as a function of time, clipped to [start, end]."""
    # Each reading stands for the time nearer to it than to its neighbours (midpoint rule):
    # an edge between two readings is then off by half the gap on average, in either
    # direction, instead of always being moved to the later reading.
    pieces = []
    last = len(samples) - 1
    for i, sample in enumerate(samples):
        t0 = (samples[i - 1].t_s + sample.t_s) / 2 if i > 0 else sample.t_s
        t1 = (sample.t_s + samples[i + 1].t_s) / 2 if i < last else sample.t_s
        lo, hi = max(t0, start), min(t1, end)
        if hi > lo:
            pieces.append((lo, hi, values[i]))
    return pieces


def _mean(pieces: list[tuple[float, float, float]]) -> float | None:
    total = sum(t1 - t0 for t0, t1, _ in pieces)
    if total <= 0:
        return None
    return sum((t1 - t0) * v for t0, t1, v in pieces) / total


def compute_energy(log: PowerLog, inferences: int | None, *, bin_s: float = 1.0) -> EnergyResult:
    """Baseline-subtracted energy per inference over the measured window.

    Args:
        log: parsed samples with `baseline_start/_end` and `measured_start/_end` markers.
        inferences: inferences run inside the measured window (warm-up + timed runs).
        bin_s: bin length in seconds for the spread (default 1.0).

    Returns:
        An `EnergyResult`; when the samples cannot give a number, its fields are None and
        `reason` says why.

    Raises:
        ValueError: `bin_s` is not positive.

    Example:
        >>> compute_energy(parse_samples("error no-battery /sys/x"), 10).reason
        'battery not readable: no-battery /sys/x'
    """
    if not bin_s > 0:
        raise ValueError(f"bin_s must be > 0 seconds. Received: bin_s={bin_s!r}")
    if log.error:
        return EnergyResult.unavailable(f"battery not readable: {log.error}", log)
    missing = [
        f"{w}_{edge}" for w in _WINDOWS for edge in ("start", "end") if f"{w}_{edge}" not in log.marks
    ]
    if missing:
        return EnergyResult.unavailable(f"window markers missing: {', '.join(missing)}", log)
    if len(log.samples) < 4:
        return EnergyResult.unavailable(
            f"too few power samples ({len(log.samples)}); the sampler did not run", log
        )
    if not inferences or inferences <= 0:
        return EnergyResult.unavailable(
            f"no inference count for the measured window. Received: inferences={inferences!r}",
            log,
        )

    samples = log.samples
    base_start, base_end = log.marks["baseline_start"], log.marks["baseline_end"]
    meas_start, meas_end = log.marks["measured_start"], log.marks["measured_end"]
    warnings: list[str] = []
    detection: dict[str, str] = {}

    v_scale, v_unit = _voltage_scale([s.voltage_raw for s in samples])
    i_scale, i_unit, i_reason = _current_scale([s.current_raw for s in samples])
    detection["current_unit"] = i_reason
    detection["voltage_unit"] = f"median voltage_now magnitude → {v_unit}"

    raw = [s.current_raw for s in samples]
    base_raw = _mean(_time_weighted(samples, raw, base_start, base_end))
    meas_raw = _mean(_time_weighted(samples, raw, meas_start, meas_end))
    if base_raw is None or meas_raw is None:
        return EnergyResult.unavailable(
            "no power samples inside the baseline or the measured window", log
        )
    noise = statistics.pstdev(v for _, _, v in _time_weighted(samples, raw, base_start, base_end))
    if abs(meas_raw - base_raw) > max(3 * noise, 1e-9 * abs(base_raw)):
        sign = -1 if meas_raw < base_raw else 1
        detection["sign"] = (
            f"current moved {'down' if sign < 0 else 'up'} under load "
            f"({base_raw:.0f} → {meas_raw:.0f}): {'negative' if sign < 0 else 'positive'} "
            "= discharging"
        )
    else:
        negative = sum(1 for v in raw if v < 0) > len(raw) / 2
        sign = -1 if negative else 1
        detection["sign"] = (
            "load changed the current too little to tell; readings are mostly "
            f"{'negative' if negative else 'positive'}: taken as discharging"
        )
        warnings.append("the benchmark load did not measurably change the battery current")

    power = [sign * s.current_raw * i_scale * s.voltage_raw * v_scale for s in samples]
    base_pieces = _time_weighted(samples, power, base_start, base_end)
    meas_pieces = _time_weighted(samples, power, meas_start, meas_end)
    baseline_w = _mean(base_pieces)
    measured_w = _mean(meas_pieces)
    measured_s = meas_end - meas_start
    baseline_s = base_end - base_start
    excess_j = sum((t1 - t0) * (p - baseline_w) for t0, t1, p in meas_pieces)
    covered_s = sum(t1 - t0 for t0, t1, _ in meas_pieces)
    if measured_s > 0 and covered_s < 0.95 * measured_s:
        warnings.append(
            f"power samples cover only {covered_s:.2f} s of the {measured_s:.2f} s measured "
            "window (the sampler stopped early?); energy is underestimated"
        )
    per_inference = excess_j / inferences
    # Where the power changed between two readings, the true edge lies somewhere in that gap;
    # the midpoint rule is then off by at most half the gap times the change. Summed, this
    # bounds the integration error (large when the sampler was starved near an edge).
    inside = [i for i, smp in enumerate(samples) if meas_start <= smp.t_s <= meas_end]
    gaps = [samples[i + 1].t_s - samples[i].t_s for i in range(len(samples) - 1)
            if meas_start <= samples[i].t_s <= meas_end]
    max_gap = max(gaps) if gaps else None
    bound_j = sum(
        (samples[i + 1].t_s - samples[i].t_s) / 2 * abs(power[i + 1] - power[i])
        for i in range(max(inside[0] - 1, 0) if inside else 0, (inside[-1] + 1) if inside else 0)
        if i + 1 < len(samples)
    )
    if excess_j and bound_j > 0.02 * abs(excess_j):
        warnings.append(
            f"readings are sparse around the load's edges (longest gap {max_gap:.2f} s: a "
            f"starved sampler or a busy device); energy is uncertain by up to "
            f"±{bound_j / abs(excess_j) * 100:.1f}%"
        )

    n_bins = int(measured_s // bin_s)
    spread = None
    if n_bins >= 2:
        width = measured_s / n_bins
        bin_power = []
        for k in range(n_bins):
            lo = meas_start + k * width
            mean = _mean(_time_weighted(samples, power, lo, lo + width))
            if mean is not None:
                bin_power.append(mean - baseline_w)
        if len(bin_power) >= 2:
            spread = statistics.stdev(bin_power) / math.sqrt(len(bin_power))
            spread = spread * measured_s / inferences
    span_s = samples[-1].t_s - samples[0].t_s
    rate = (len(samples) - 1) / span_s if span_s > 0 else None
    if rate is not None and rate < 10:
        warnings.append(
            f"power sampled at {rate:.1f} Hz; below ~10 Hz short bursts are badly measured"
        )
    charging = _is_charging(log)
    if charging:
        warnings.append(
            "the battery was charging (USB power?): the charger may cover part of the load; "
            "measure over ADB on Wi-Fi (`adb tcpip 5555`) for trustworthy energy"
        )
    if baseline_s < 1.0:
        warnings.append(f"baseline window is short ({baseline_s:.2f} s)")
    if per_inference <= 0:
        warnings.append("no energy above the idle baseline was measured")
    return EnergyResult(
        energy_per_inference_j=per_inference,
        energy_per_inference_spread_j=spread,
        energy_per_inference_bound_j=bound_j / inferences,
        excess_energy_j=excess_j,
        inferences=inferences,
        baseline_power_w=baseline_w,
        measured_power_w=measured_w,
        baseline_s=baseline_s,
        measured_s=measured_s,
        samples=len(samples),
        sample_rate_hz=rate,
        max_sample_gap_s=max_gap,
        current_unit=i_unit,
        voltage_unit=v_unit,
        discharge_sign=sign,
        detection=detection,
        status_start=log.status_start,
        status_end=log.status_end,
        charging=charging,
        temp_start_c=log.temp_start_c,
        temp_end_c=log.temp_end_c,
        warnings=tuple(warnings),
    )
