"""Energy per inference from fuel-gauge samples (pure: no I/O).

Input is the text written by `android_harness/sample_power.sh` and the window markers of
`run_benchmark.sh`:

    battery /sys/class/power_supply/bms current_now voltage_now   the files read
    start 812.30 Discharging 310        uptime, status, temp (tenths of °C)
    mark 812.30 baseline_start
    812.31 -152000 3901000              uptime, current, voltage (raw values)
    mark 817.31 baseline_end
    mark 817.31 measured_start
    ...
    mark 821.90 measured_end
    mark 824.90 tail_end                sampling goes on after the benchmark
    end 824.91 Discharging 312

How: a gauge publishes a value every refresh period (0.01–2 s or more), maybe the average
of a window, maybe late, so the load's energy shows up *after* the benchmark too. An
averaging gauge keeps the integral of what it averages, so the excess over the idle
baseline is integrated from `measured_start` to `tail_end` — past the end by the gauge's
response — and divided by the inferences run (warm-up + timed). The baseline is the mean
before the run and checked against the idle level at the tail's end: a tail still above
idle (the gauge has not settled) gives no number but asks for a longer tail (`needs`).

What the device reports is detected, not assumed, and recorded: current unit (µA or mA) and
voltage unit by magnitude; the sign from the load response (more discharge under load),
checked against the idle reading, never from "most readings are negative" alone.

The bound (`energy_per_inference_bound_j`) adds up, linearly: time quantisation (one refresh
period of the load step), the sampler's own gaps at each change, the value resolution over
the window, 3 σ of gauge noise in the window and in the baseline mean, the baseline drift
(before vs after). Where the gauge cannot support a figure (a charging phone: the charger's
share is invisible; sign ambiguous; load not visible; run shorter than
10 gauge periods, bound over half the value) `energy_per_inference_j` is None and `reason`
says why and what to do.

Example:
    >>> def reading(t, amps):  # a gauge refreshing every 0.1 s, with ±1 mA of noise
    ...     return f"{t / 100:.2f} {-amps - 1000 * ((t // 10) % 2)} 4000000"
    >>> rows = ["mark 0 baseline_start"] + [reading(t, 100_000) for t in range(100)]
    >>> rows += ["mark 1 baseline_end", "mark 1 measured_start"]
    >>> rows += [reading(t, 300_000) for t in range(100, 1100)]
    >>> rows += ["mark 11 measured_end"] + [reading(t, 100_000) for t in range(1100, 1400)]
    >>> rows += ["mark 14 tail_end"]
    >>> round(compute_energy(parse_samples("\\n".join(rows)), inferences=100).energy_per_inference_j, 3)
    0.08
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from device_bench import _gauge_analysis as ga
from device_bench.rails import RailsEnergy

__all__ = ["EnergyResult", "PowerLog", "PowerSample", "compute_energy", "parse_samples"]

_WINDOWS = ("baseline", "measured")
MIN_PERIODS = 10  # a run shorter than this many gauge periods gives no figure
MAX_BOUND = 0.5  # a bound wider than this fraction of the value gives no figure
TARGET = 0.02  # the share of the bound a gauge's refresh period may take before a longer run
MAX_MIN_SECS = 60.0  # the longest run asked for by itself


@dataclass(frozen=True)
class PowerSample:
    """One fuel-gauge reading: uptime seconds and the raw current / voltage file values."""

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
    battery_dir: str | None = None
    files_read: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnergyResult:
    """Energy per inference, its bound, and how it was obtained.

    `energy_per_inference_j` is None when no figure is supported; `reason` then says why and
    what to do, and `needs` may name settings that would support one (e.g. a longer run).
    `rails` is the per-rail figure from the phone's power monitors (`device_bench.rails`), valid
    on USB power too; None when energy was not run through the harness.
    """

    energy_per_inference_j: float | None = None
    energy_per_inference_bound_j: float | None = None
    bound_terms_j: dict[str, float] = field(default_factory=dict)
    excess_energy_j: float | None = None
    inferences: int | None = None
    baseline_power_w: float | None = None
    idle_after_power_w: float | None = None
    measured_power_w: float | None = None
    baseline_s: float | None = None
    measured_s: float | None = None
    tail_s: float | None = None
    samples: int = 0
    sample_rate_hz: float | None = None
    max_sample_gap_s: float | None = None
    gauge: dict[str, Any] = field(default_factory=dict)
    current_unit: str | None = None
    voltage_unit: str | None = None
    discharge_sign: int | None = None
    detection: dict[str, str] = field(default_factory=dict)
    battery_dir: str | None = None
    files_read: tuple[str, ...] = ()
    status_start: str | None = None
    status_end: str | None = None
    charging: bool = False
    temp_start_c: float | None = None
    temp_end_c: float | None = None
    needs: dict[str, float] = field(default_factory=dict)
    extended: str | None = None
    warnings: tuple[str, ...] = ()
    reason: str | None = None
    rails: RailsEnergy | None = None  # per-rail energy (ODPM), where the phone has rails

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnergyResult":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        for name in ("warnings", "files_read"):
            values[name] = tuple(values.get(name, ()))
        if values.get("rails") is not None:
            values["rails"] = RailsEnergy.from_dict(values["rails"])
        return cls(**values)

    @classmethod
    def unavailable(cls, reason: str, log: PowerLog | None = None, **known: Any) -> "EnergyResult":
        """A result without a figure, saying why; keeps what the log says about the battery."""
        if log is not None:
            known = {
                "samples": len(log.samples), "status_start": log.status_start,
                "status_end": log.status_end, "charging": _is_charging(log),
                "temp_start_c": log.temp_start_c, "temp_end_c": log.temp_end_c,
                "battery_dir": log.battery_dir, "files_read": log.files_read, **known,
            }
        return cls(reason=reason, **known)


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
            elif parts[0] == "battery" and len(parts) >= 3:
                state["battery_dir"] = parts[1]
                state["files_read"] = tuple(f"{parts[1]}/{name}" for name in parts[2:])
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


def compute_energy(log: PowerLog, inferences: int | None) -> EnergyResult:
    """Baseline-subtracted energy per inference, integrated past the run by the gauge's lag.

    Args:
        log: parsed samples with `baseline_start/_end`, `measured_start/_end` and (current
            harness) `tail_end` markers.
        inferences: inferences run inside the measured window (warm-up + timed runs).

    Returns:
        An `EnergyResult`; when the samples cannot support a figure, its energy is None and
        `reason` says why.

    Example:
        >>> compute_energy(parse_samples("error no-battery /sys/x"), 10).reason
        'battery not readable: no-battery /sys/x'
    """
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
    return _Analysis(log, inferences).result()


class _Analysis:
    """One sample file's energy figure; the steps share the learned gauge and levels."""

    def __init__(self, log: PowerLog, inferences: int) -> None:
        self.log, self.inferences = log, inferences
        self.warnings: list[str] = []
        self.detection: dict[str, str] = {}
        self.response: dict[str, Any] | None = None  # lag and averaging, once the load is seen
        marks = log.marks
        self.base_start, self.base_end = marks["baseline_start"], marks["baseline_end"]
        self.meas_start, self.meas_end = marks["measured_start"], marks["measured_end"]
        last = log.samples[-1].t_s
        self.tail_end = min(marks.get("tail_end", last), last)
        if "tail_end" not in marks:
            self.warnings.append(
                "no tail_end marker (an older harness): the gauge's last period of load after "
                "the run may be missed"
            )
        self.times = [s.t_s for s in log.samples]
        raw_current = [s.current_raw for s in log.samples]
        v_scale, self.v_unit = ga.voltage_scale([s.voltage_raw for s in log.samples])
        self.i_scale, self.i_unit, why = ga.current_scale(raw_current)
        self.detection["current_unit"] = why
        self.detection["voltage_unit"] = f"median voltage magnitude → {self.v_unit}"
        self.gauge = ga.learn(self.times, raw_current)
        # Amperes with the file's own sign (the discharge sign is decided below), volts.
        self.amps = [v * self.i_scale for v in raw_current]
        self.volts = [s.voltage_raw * v_scale for s in log.samples]

    def _mean(self, values: list[float], start: float, end: float) -> float | None:
        return ga.mean(ga.pieces(self.times, values, start, end))

    def _base(self, **known: Any) -> dict[str, Any]:
        span = self.times[-1] - self.times[0]
        return {
            "inferences": self.inferences,
            "baseline_s": self.base_end - self.base_start,
            "measured_s": self.meas_end - self.meas_start,
            "tail_s": self.tail_end - self.meas_end,
            "sample_rate_hz": (len(self.times) - 1) / span if span > 0 else None,
            "max_sample_gap_s": self.gauge.max_sample_gap_s,
            "gauge": {**self.gauge.to_dict(), "response": self.response},
            "current_unit": self.i_unit,
            "voltage_unit": self.v_unit,
            "detection": dict(self.detection),
            "warnings": tuple(self.warnings),
            **known,
        }

    def _none(self, reason: str, **known: Any) -> EnergyResult:
        return EnergyResult.unavailable(reason, self.log, **self._base(**known))

    def _loaded_voltage(self, v_idle: float) -> tuple[float, float, float]:
        """(voltage under load, seconds under load by the voltage, its spread).

        `voltage_now` is not averaged by the gauge, so it shows the battery's sag under load
        at once: the loaded level and how long it lasted, where the current may be smeared.
        """
        parts = ga.pieces(self.times, self.volts, self.meas_start, self.meas_end)
        if not parts:
            return v_idle, 0.0, 0.0
        deepest = max(abs(v - v_idle) for _, _, v in parts)
        loaded = [p for p in parts if abs(p[2] - v_idle) > deepest / 2]
        if deepest <= 0 or not loaded:
            return v_idle, 0.0, 0.0
        return ga.mean(loaded), sum(t1 - t0 for t0, t1, _ in loaded), ga.spread(loaded)

    def result(self) -> EnergyResult:
        log, gauge = self.log, self.gauge
        charging = _is_charging(log)
        period = gauge.refresh_period_s
        measured_s = self.meas_end - self.meas_start
        base_parts = ga.pieces(self.times, self.amps, self.base_start, self.base_end)
        b0 = ga.mean(base_parts)
        if b0 is None or self._mean(self.amps, self.meas_start, self.meas_end) is None:
            return self._none("no power samples inside the baseline or the measured window")
        if charging:
            # The battery sees consumption minus what the charger supplies, and a USB charger
            # takes up load as its current limit allows: no reading tells how much it covered.
            return self._none(
                f"the battery was {log.status_start or log.status_end} (USB power): the "
                "charger supplies an unknown part of the load, which the battery's gauge never "
                "sees, so energy cannot be measured. Unplug USB and measure over Wi-Fi ADB "
                "(`adb tcpip 5555`, then `adb connect PHONE_IP:5555`)", charging=True,
            )
        if period is None or gauge.changes < 4:
            return self._none(
                f"the battery reading changed only {gauge.changes} times: the load is not "
                "visible, or the gauge has no noise and its refresh period cannot be learned, "
                "so no bound can be given. Unplug USB and measure over Wi-Fi ADB (`adb tcpip "
                "5555`) or run a longer benchmark"
            )
        # Levels: idle before, idle at the tail's end, and the load's plateau (after the
        # gauge's response, which is at most the tail's length).
        settle_s = max(1.0, 3 * period)
        tail_s = self.tail_end - self.meas_end
        b1 = self._mean(self.amps, max(self.meas_end, self.tail_end - settle_s), self.tail_end)
        plateau = self._mean(self.amps, self.meas_start + min(tail_s, measured_s / 2), self.meas_end)
        if plateau is None:
            plateau = self._mean(self.amps, self.meas_start, self.meas_end)
        # Gauge noise: the spread of the idle readings; the mean of n independent values
        # (n = refresh periods in a window) is uncertain by σ/√n.
        sigma = ga.spread(base_parts)
        n_base = max(1.0, (self.base_end - self.base_start) / period)
        window_s = self.tail_end - self.meas_start
        resolution = (gauge.resolution_raw or 0.0) * self.i_scale
        # The load response: the mean excess over the whole window (a slow or late gauge
        # shows the load only after the run) must stand out of the noise and the step size.
        response = self._mean(self.amps, self.meas_start, self.tail_end) - b0
        visible = 3 * sigma * (1 / math.sqrt(n_base) + math.sqrt(period / window_s)) + resolution
        if abs(response) <= visible:
            reason = (
                f"the load did not visibly move the battery reading (mean change "
                f"{abs(response) * 1000:.2f} mA ≤ noise/resolution {visible * 1000:.2f} mA)"
            )
            return self._none(
                reason + ". Unplug USB and measure over Wi-Fi ADB (`adb tcpip 5555`), or run "
                "a heavier or longer benchmark",
            )
        sign = 1 if response > 0 else -1
        self.response = ga.response(
            self.times, self.amps, start=self.meas_start, end=self.meas_end, idle=b0,
            plateau=plateau, visible=3 * sigma + resolution, period=period,
        )
        self.detection["sign"] = (
            f"the reading moved {'up' if sign > 0 else 'down'} under load (idle "
            f"{b0 * 1000:.1f} mA, mean change {response * 1000:+.2f} mA): "
            f"{'positive' if sign > 0 else 'negative'} = discharging"
        )
        # Discharging: the idle reading itself has the discharge sign (net current > 0).
        if abs(b0) > visible and (1 if b0 > 0 else -1) != sign:
            return self._none(
                f"sign ambiguous: the status says {log.status_start or 'not charging'} and "
                f"idle reads {'positive' if b0 > 0 else 'negative'}, but the load moved the "
                "reading the other way. Check that nothing else ran during the benchmark",
            )
        needs: dict[str, float] = {}
        if measured_s < MIN_PERIODS * period:
            needs["min_secs"] = round(1.2 * MIN_PERIODS * period, 1)
        if b1 is None or tail_s < 0.9 * settle_s:
            needs["tail_s"] = round(max(3 * tail_s, 2 * settle_s), 1)
            return self._none(
                f"the tail after the run ({tail_s:.1f} s) is shorter than the gauge's settling "
                f"time (~{settle_s:.1f} s)", discharge_sign=sign, needs=needs,
            )
        step = max(abs(a - b0) for t, a in zip(self.times, self.amps)
                   if self.meas_start <= t <= self.tail_end)
        drift = abs(b1 - b0)
        if drift > 0.05 * step + 3 * sigma / math.sqrt(max(1.0, settle_s / period)):
            return self._none(
                f"the reading had not returned to idle {tail_s:.1f} s after the run "
                f"({sign * (b1 - b0) * 1000:+.2f} mA from the baseline): the gauge averages over "
                "a long window, or something else ran. A longer tail is needed",
                discharge_sign=sign, needs={**needs, "tail_s": round(3 * tail_s, 1)},
            )
        idle = (b0 + b1) / 2
        v_idle = self._mean(self.volts, self.base_start, self.base_end)
        v_load, load_s, v_spread = self._loaded_voltage(v_idle)
        parts = ga.pieces(self.times, self.amps, self.meas_start, self.tail_end)
        charge = sign * sum((t1 - t0) * (a - idle) for t0, t1, a in parts)  # coulombs
        covered = sum(t1 - t0 for t0, t1, _ in parts)
        if covered < 0.95 * window_s:
            self.warnings.append(
                f"power samples cover only {covered:.2f} s of the {window_s:.2f} s window (the "
                "sampler stopped early?); energy is underestimated"
            )
        # The excess charge left at the loaded voltage; the idle draw itself costs less
        # while the battery sags (V·I at idle falls with V): both terms of Δ(V·I).
        idle_amps = sign * idle
        excess = v_load * charge + idle_amps * (v_load - v_idle) * load_s
        inside = [i for i, t in enumerate(self.times) if self.meas_start < t <= self.tail_end]
        sampler = sum(
            (self.times[i] - self.times[i - 1]) / 2 * abs(self.amps[i] - self.amps[i - 1])
            for i in inside
        )
        terms = {
            "time_quantisation": period * step * v_load,
            "sampler_gaps": sampler * v_load,
            "resolution": resolution * window_s * v_load,
            "noise": 3 * sigma * (math.sqrt(period * window_s) + window_s / math.sqrt(n_base)) * v_load,
            "baseline_drift": drift / 2 * window_s * v_load,
            "voltage": 3 * v_spread * abs(charge)
            + abs(idle_amps * (v_load - v_idle)) * (period + gauge.max_sample_gap_s),
        }
        bound = sum(terms.values())
        known = dict(
            excess_energy_j=excess, baseline_power_w=sign * b0 * v_idle,
            idle_after_power_w=sign * b1 * v_idle, measured_power_w=sign * plateau * v_load,
            discharge_sign=sign, bound_terms_j=terms,
        )
        if needs:
            return self._none(
                f"the run lasted {measured_s:.1f} s, under {MIN_PERIODS} gauge periods "
                f"({period:.2f} s each): too short for this gauge. A longer run is needed",
                needs=needs, **known,
            )
        if excess <= 0 or bound > MAX_BOUND * abs(excess):
            return self._none(
                f"the gauge cannot support a figure for this load: excess {excess:.4g} J, "
                f"uncertain by ±{bound:.2g} J (refresh {period:.2f} s, noise "
                f"{sigma * 1000:.2f} mA). Run longer (--min-secs) or a heavier benchmark",
                needs={"min_secs": round(max(2 * measured_s, 1.2 * MIN_PERIODS * period), 1)},
                **known,
            )
        if bound > 0.02 * excess:
            self.warnings.append(
                f"energy is uncertain by ±{bound / excess * 100:.1f}% (gauge refresh "
                f"{period:.2f} s over a {measured_s:.1f} s run); a longer run narrows it"
            )
        # The refresh period's share shrinks as the run grows: ask for a run long enough
        # to bring it under 2 % (a figure is still given for this one).
        share = terms["time_quantisation"] / excess
        if share > TARGET:
            longer = min(MAX_MIN_SECS, round(1.2 * measured_s * share / TARGET, 1))
            if longer > measured_s:
                needs["min_secs"] = longer
        return EnergyResult(
            needs=needs,
            energy_per_inference_j=excess / self.inferences,
            energy_per_inference_bound_j=bound / self.inferences,
            **{**self._base(**known), "warnings": tuple(self.warnings)},
            samples=len(self.times),
            battery_dir=log.battery_dir,
            files_read=log.files_read,
            status_start=log.status_start,
            status_end=log.status_end,
            temp_start_c=log.temp_start_c,
            temp_end_c=log.temp_end_c,
        )
