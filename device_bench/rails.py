"""Energy per inference per power rail from on-device power monitor (ODPM) counters (pure: no I/O).

Pixel 6 and later phones have ODPM: per-rail *cumulative* energy counters in the PMICs,
published by Google's `odpm` IIO driver (`drivers/iio/power/odpm.c` in the Pixel kernels) as
`/sys/bus/iio/devices/iio:deviceN/energy_value`:

    t=<measurement timestamp, ms>                                   (boot time)
    CH<N>(T=<duration since that channel's start, ms>)[<schematic rail name>], <energy, µWs>

and `sampling_rate` ("%d.%06d", Hz). Where sysfs is not readable the PowerStats HAL gives the
same counters in `dumpsys android.hardware.power.stats.IPowerStats/default` (Pixel's
`PowerStatsAidl.cpp`, `dumpEnergyMeter`): between the banners "PowerStats HAL 2.0 energy meter"
and "End of PowerStats HAL 2.0 energy meter", one `[<rail>]:<subsystem>   <energy> mWs` line per
channel (`%14.2f` of a float), with no timestamp.

`run_benchmark.sh` snapshots every source at `baseline_start`, `baseline_end` and `tail_end` into
a rails file (`parse_rails`): a `rails MARK UPTIME SOURCE` header, then `sampling_rate X` and
the `energy_value` text (sysfs), or the dump (source `dumpsys`), or `error WHY`.

Per rail: idle power from the baseline pair, the run's excess = (counter at tail end − counter at
baseline end) − idle power × the counters' own elapsed time, divided by the inferences run. No
gauge is integrated, and a charger does not disturb the rails (they sit after it), so the figure
holds on USB too. The bound adds up, linearly (`bound_terms_j`):

- quantisation: the driver estimates the ADC rate from the sample count of each refresh, "at 20
  counts the quantization error may be ±(1/20)/2 = ±2.5 %" and it refreshes at 20 counts at
  the most often (`ODPM_MIN_INTERVAL_ACC_COUNT`): ±2.5 % of each counter difference, worst case;
- resolution: one counter unit per reading (1 µWs in sysfs; the dump's 0.01 mWs and float);
- timing: the idle subtraction's timestamps (1 ms for `t=`; for the dump, the uptime read
  around it plus the counters' staleness, one minimum refresh interval).

A snapshot that cannot be trusted — a channel missing from one snapshot, a counter or time that
goes backwards, a rail swapped on a channel, an unknown unit, a line that does not parse, a
tail shorter than the driver's refresh interval — gives `reason` ("why") and never a number.

Example:
    >>> snap = lambda mark, up, t, e: (f"rails {mark} {up} /iio0\\nsampling_rate 1000.000000\\n"
    ...                                f"t={t}\\nCH0(T={t})[VDD_CPU], {e}\\n")
    >>> text = snap("baseline_start", 1, 1000, 0) + snap("baseline_end", 2, 2000, 100_000)
    >>> text += snap("tail_end", 4, 4000, 1_400_000)
    >>> r = compute_rails(parse_rails(text), inferences=100)
    >>> round(r.per_rail["VDD_CPU"].energy_per_inference_j, 6)
    0.011
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mobile_opt.errors import InputError

__all__ = ["RailEnergy", "RailsEnergy", "RailsFormatError", "RailsLog", "compute_rails", "parse_dumpsys",
           "parse_energy_value", "parse_rails"]

MARKS = ("baseline_start", "baseline_end", "tail_end")
MIN_INTERVAL_COUNTS = 20  # the driver's ODPM_MIN_INTERVAL_ACC_COUNT
QUANTISATION = 1 / (2 * MIN_INTERVAL_COUNTS)  # ±2.5 % per counter difference, the driver's words
SLOWEST_RATE_HZ = 7.628125  # the driver's lowest sampling rate: the staleness when the rate is unknown
DUMPSYS_SOURCE = "dumpsys"

_HEADER = re.compile(r"^rails (\S+) ([0-9.]+) (\S+)$")
_T_LINE = re.compile(r"^t=(\d+)$")
_CHANNEL = re.compile(r"^CH(\d+)\(T=(\d+)\)\[([^\]]*)\], *(\S+)(?: +(\S+))?$")
_DUMP_START = "PowerStats HAL 2.0 energy meter"
_DUMP_END = "End of PowerStats HAL 2.0 energy meter"
_DUMP_LINE = re.compile(r"^\s*(\S.*?)\s+(-?[0-9.]+)\s+(\S+)(?:\s+\(.*\))?\s*$")


class RailsFormatError(InputError):
    """A counter text that does not follow the driver's or the HAL's format."""


@dataclass(frozen=True)
class Counter:
    """One channel's reading: cumulative energy (J), its resolution (J), duration (s) if given."""

    channel: str
    rail: str
    energy_j: float
    resolution_j: float
    duration_s: float | None = None


@dataclass(frozen=True)
class Snapshot:
    """Every channel of one source at one mark; `time_s` is the counters' own time when known."""

    source: str
    uptime_s: float
    time_s: float | None
    counters: tuple[Counter, ...]
    sampling_rate_hz: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class RailsLog:
    """A parsed rails file: mark → source → snapshot."""

    snapshots: dict[str, dict[str, Snapshot]]


def parse_energy_value(text: str) -> tuple[float, tuple[Counter, ...]]:
    """(counter time in s, channels) of an ODPM `energy_value` text.

    Raises:
        RailsFormatError: no `t=` line first, a line that does not parse, an unknown unit, or
            a channel listed twice.

    Example:
        >>> t, (ch,) = parse_energy_value("t=5000\\nCH0(T=4000)[S2M_VDD_CPUCL2], 1500000\\n")
        >>> t, ch.rail, ch.energy_j, ch.duration_s
        (5.0, 'S2M_VDD_CPUCL2', 1.5, 4.0)
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = _T_LINE.match(lines[0]) if lines else None
    if head is None:
        raise RailsFormatError(f"energy_value does not start with 't=<ms>'. Received: {lines[:1]!r}")
    counters: list[Counter] = []
    for line in lines[1:]:
        m = _CHANNEL.match(line)
        if m is None:
            raise RailsFormatError(f"energy_value line does not parse as 'CH<n>(T=<ms>)[RAIL], <µWs>'. "
                                   f"Received: {line!r}")
        index, duration, rail, value, unit = m.groups()
        # The driver prints a bare integer in µWs; any unit word or fraction is another format.
        if unit is not None or not value.isdigit():
            raise RailsFormatError(f"energy_value of CH{index} is not an integer in µWs (unknown unit). "
                                   f"Received: {line!r}")
        counters.append(Counter(f"CH{index}", rail, int(value) * 1e-6, 1e-6, int(duration) / 1000))
    counters = list(_unique(counters))
    # The driver lists every channel, CH0 upwards: a gap is a channel missing from the file.
    gaps = sorted(set(range(len(counters))) - {int(c.channel[2:]) for c in counters})
    if gaps:
        raise RailsFormatError(f"energy_value lacks channel CH{gaps[0]} (the driver lists CH0 upwards): "
                               "a channel is missing")
    return int(head.group(1)) / 1000, tuple(counters)


def parse_dumpsys(text: str) -> tuple[Counter, ...]:
    """The channels of the PowerStats HAL's energy meter section in its `dumpsys` text.

    Raises:
        RailsFormatError: no energy meter section, a line that does not parse, a unit other
            than mWs, or a channel listed twice.

    Example:
        >>> dump = ("============= PowerStats HAL 2.0 energy meter ==============\\n"
        ...         "                           Channel    Cumulative Energy\\n"
        ...         "                  [VDD_CPU]:CPU         1234.50 mWs\\n"
        ...         "========== End of PowerStats HAL 2.0 energy meter ==========\\n")
        >>> (ch,) = parse_dumpsys(dump); ch.rail, round(ch.energy_j, 5)
        ('VDD_CPU:CPU', 1.2345)
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _DUMP_START in line and _DUMP_END not in line), None)
    if start is None:
        raise RailsFormatError("the dump has no 'PowerStats HAL 2.0 energy meter' section")
    counters: list[Counter] = []
    for line in lines[start + 1:]:
        if _DUMP_END in line:
            return _unique(counters)
        if not line.strip() or line.lstrip().startswith(("Channel", "Elapsed time")):
            continue
        m = _DUMP_LINE.match(line)
        if m is None:
            raise RailsFormatError(f"energy meter line does not parse as '[RAIL]:SUBSYSTEM <mWs> mWs'. "
                                   f"Received: {line.strip()!r}")
        name, value, unit = m.groups()
        if unit != "mWs":
            raise RailsFormatError(f"energy meter unit {unit!r} is not mWs (unknown unit). "
                                   f"Received: {line.strip()!r}")
        mws = float(value)
        # "%14.2f" of a float: half of 0.01 mWs, plus half a float32 step at this magnitude.
        ulp = 2.0 ** (math.floor(math.log2(abs(mws))) - 23) if mws else 0.0
        counters.append(Counter(name.strip(), name.strip().lstrip("[").replace("]", "", 1),
                                mws * 1e-3, (0.005 + ulp / 2) * 1e-3))
    raise RailsFormatError("the energy meter section has no end banner (the dump was cut)")


def _unique(counters: list[Counter]) -> tuple[Counter, ...]:
    seen = [c.channel for c in counters]
    twice = sorted({c for c in seen if seen.count(c) > 1})
    if twice:
        raise RailsFormatError(f"channel listed twice: {', '.join(twice)}")
    return tuple(counters)


def parse_rails(text: str) -> RailsLog:
    """Parses the rails file written by `run_benchmark.sh` (snapshots per mark and source).

    A source whose text does not follow its format keeps the parser's words in `error`.
    """
    blocks: list[tuple[str, float, str, list[str]]] = []
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if m is not None:
            blocks.append((m.group(1), float(m.group(2)), m.group(3), []))
        elif blocks:
            blocks[-1][3].append(line)
    snapshots: dict[str, dict[str, Snapshot]] = {}
    for mark, uptime, source, body in blocks:
        snapshots.setdefault(mark, {})[source] = _snapshot(source, uptime, body)
    return RailsLog(snapshots)


def _snapshot(source: str, uptime: float, body: list[str]) -> Snapshot:
    if body and body[0].startswith("error"):
        return Snapshot(source, uptime, None, (), error=" ".join(body[0].split()[1:]) or "unreadable")
    try:
        if source == DUMPSYS_SOURCE:
            return Snapshot(source, uptime, None, parse_dumpsys("\n".join(body)))
        rate = None
        if body and body[0].startswith("sampling_rate"):
            words = body.pop(0).split()
            try:
                rate = float(words[1]) if len(words) == 2 else math.nan
            except ValueError:
                rate = math.nan
            if not math.isfinite(rate) or rate <= 0:
                raise RailsFormatError(f"sampling_rate is not a positive number of Hz. Received: {words[1:]!r}")
        t, counters = parse_energy_value("\n".join(body))
        return Snapshot(source, uptime, t, counters, sampling_rate_hz=rate)
    except (RailsFormatError, ValueError) as exc:
        return Snapshot(source, uptime, None, (), error=str(exc))


@dataclass(frozen=True)
class RailEnergy:
    """One rail's energy per inference (J) above idle, its worst-case bound, and the parts."""

    rail: str
    source: str
    channel: str
    energy_per_inference_j: float
    energy_per_inference_bound_j: float
    excess_energy_j: float
    idle_power_w: float
    measured_power_w: float
    bound_terms_j: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RailsEnergy:
    """Per-rail energy per inference; `reason` (and no figure) when the counters cannot support one.

    `energy_per_inference_j` is the sum over rails, its bound the sum of theirs. `sources` (the
    rail counters read) is empty only for a phone without rails.
    """

    per_rail: dict[str, RailEnergy] = field(default_factory=dict)
    energy_per_inference_j: float | None = None
    energy_per_inference_bound_j: float | None = None
    inferences: int | None = None
    sources: tuple[str, ...] = ()
    sampling_rate_hz: dict[str, float] = field(default_factory=dict)
    counter_times_s: dict[str, list[float]] = field(default_factory=dict)  # per source, at MARKS
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RailsEnergy":
        # baseline_s / measured_s: the last source's windows, written before 2026-12-07 14:00;
        # each source's are in counter_times_s.
        values = {k: v for k, v in data.items() if k not in ("baseline_s", "measured_s")}
        values["per_rail"] = {k: RailEnergy(**v) for k, v in values.get("per_rail", {}).items()}
        values["sources"] = tuple(values.get("sources", ()))
        return cls(**values)


def compute_rails(log: RailsLog, inferences: int | None, tail_s: float | None = None) -> RailsEnergy:
    """Baseline-subtracted energy per inference per rail, with its worst-case bound.

    Args:
        log: parsed snapshots at `baseline_start`, `baseline_end` and `tail_end`.
        inferences: inferences run between `baseline_end` and `tail_end` (warm-up + timed).
        tail_s: seconds between the benchmark's end and the last snapshot (default None: not
            checked); must cover one refresh interval of the driver, or the load's end is missed.

    Returns:
        A `RailsEnergy`; `reason` says why when there is no figure.
    """
    missing = [m for m in MARKS if m not in log.snapshots]
    if missing:
        return RailsEnergy(reason=f"rail snapshots missing at {', '.join(missing)}")
    if not inferences or inferences <= 0:
        return RailsEnergy(reason=f"no inference count for the run. Received: inferences={inferences!r}")
    sources = sorted(set().union(*(log.snapshots[m] for m in MARKS)))
    per_rail: dict[str, RailEnergy] = {}
    rates: dict[str, float] = {}
    counter_times: dict[str, list[float]] = {}
    names = [c.rail for s in sources for c in log.snapshots[MARKS[0]].get(s, Snapshot(s, 0, None, ())).counters]
    for source in sources:
        snaps = [log.snapshots[m].get(source) for m in MARKS]
        why = _check(source, snaps, tail_s)
        if isinstance(why, str):
            return RailsEnergy(reason=why, sources=tuple(sources))
        times, stale_s, rate = why
        counter_times[source] = times
        if rate is not None:
            rates[source] = rate
        base_s, run_s = times[1] - times[0], times[2] - times[1]
        # Timestamps: `t=` is whole ms (±1 ms per reading); the dump's time is the uptime read
        # around it (10 ms) plus the counters' staleness.
        dt = 0.001 if source != DUMPSYS_SOURCE else 0.01 + stale_s
        for a, b, c in zip(*(s.counters for s in snaps)):
            idle_w = (b.energy_j - a.energy_j) / base_s
            run_j = c.energy_j - b.energy_j
            excess = run_j - idle_w * run_s
            terms = {
                # ±q of the true difference is at most q / (1 − q) of the one read.
                "quantisation": QUANTISATION / (1 - QUANTISATION) * (abs(run_j) + abs(idle_w) * run_s),
                "resolution": 2 * c.resolution_j * (1 + run_s / base_s),
                "timing": abs(idle_w) * 2 * dt * (1 + run_s / base_s),
            }
            key = c.rail if names.count(c.rail) == 1 else f"{c.rail}@{source.rsplit('/', 1)[-1]}"
            bound = sum(terms.values())
            per_rail[key] = RailEnergy(
                rail=c.rail, source=source, channel=c.channel,
                energy_per_inference_j=excess / inferences,
                energy_per_inference_bound_j=bound / inferences, excess_energy_j=excess,
                idle_power_w=idle_w, measured_power_w=run_j / run_s, bound_terms_j=terms,
            )
    if not per_rail:
        return RailsEnergy(reason="the rail counters list no channels", sources=tuple(sources))
    return RailsEnergy(
        per_rail=per_rail,
        energy_per_inference_j=sum(r.energy_per_inference_j for r in per_rail.values()),
        energy_per_inference_bound_j=sum(r.energy_per_inference_bound_j for r in per_rail.values()),
        inferences=inferences, sources=tuple(sources),
        sampling_rate_hz=rates, counter_times_s=counter_times,
    )


def _check(source: str, snaps: list[Snapshot | None], tail_s: float | None
           ) -> str | tuple[list[float], float, float | None]:
    """Why a source's three snapshots give no figure, else (times, staleness s, rate Hz)."""
    for mark, snap in zip(MARKS, snaps):
        if snap is None:
            return f"{source}: no snapshot at {mark}"
        if snap.error:
            return f"{source} at {mark}: {snap.error}"
    first = [(c.channel, c.rail) for c in snaps[0].counters]
    for mark, snap in zip(MARKS[1:], snaps[1:]):
        now = [(c.channel, c.rail) for c in snap.counters]
        if now != first:
            lost = sorted(set(first) - set(now))
            gained = sorted(set(now) - set(first))
            return (f"{source}: the channels changed between {MARKS[0]} and {mark} (missing "
                    f"{_names(lost)}, new {_names(gained)}): a rail was swapped or a channel is missing")
    rate = snaps[0].sampling_rate_hz
    stale_s = MIN_INTERVAL_COUNTS / (rate or SLOWEST_RATE_HZ)
    times = [s.time_s if s.time_s is not None else s.uptime_s for s in snaps]
    if not times[0] < times[1] < times[2]:
        return (f"{source}: the counters' time did not advance ({', '.join(f'{t:g}' for t in times)} s at "
                f"{', '.join(MARKS)}): a baseline or run shorter than the driver's refresh interval "
                f"(~{stale_s:.2g} s), or a clock that went backwards")
    for prev, snap, mark in zip(snaps, snaps[1:], MARKS[1:]):
        for a, b in zip(prev.counters, snap.counters):
            if b.energy_j < a.energy_j:
                return (f"{source}: {a.rail} ({a.channel}) went backwards at {mark} "
                        f"({a.energy_j:.6g} → {b.energy_j:.6g} J): the counter was reset")
            if a.duration_s is not None and b.duration_s is not None and b.duration_s < a.duration_s:
                return f"{source}: {a.rail} ({a.channel}) restarted its measurement at {mark}"
    if tail_s is not None and tail_s < stale_s:
        return (f"{source}: the tail after the run ({tail_s:.2g} s) is shorter than the driver's "
                f"refresh interval (~{stale_s:.2g} s): the last counters may miss the load's end")
    return times, stale_s, rate


def _names(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{ch}[{rail}]" for ch, rail in pairs) or "none"
