"""95 % intervals for the latency figures we print: percentiles and the mean of one run's samples.

A percentile's interval comes from order statistics: the number of runs faster than the true
q-quantile is Binomial(n, q) whatever the latency distribution, so `[x_(l), x_(u)]` covers it
with at least the stated confidence (for continuous latencies). With too few runs one end
cannot be bounded (a p99 needs 368 runs for an upper end at 95 %): that end is None, never a
guess. The mean's interval is Student's t on the sample mean (approximate for skewed latency
with few runs; `tests/device_bench/test_intervals.py` checks its coverage on skewed data).

The runs of one invocation are treated as exchangeable, as every figure of one run is; drift
between invocations is not in these intervals (compare invocations with `bench --compare`).
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["CONFIDENCE", "format_ms", "latency_cells", "mean_interval", "ms", "plus_minus", "quantile_interval",
           "runs_to_bound", "unbounded_note"]

CONFIDENCE = 0.95


def quantile_interval(ordered: Sequence[float], q: float,
                      confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Distribution-free interval for the q-quantile of sorted samples; an unbounded end is None.

    Example:
        >>> quantile_interval([float(i) for i in range(1, 101)], 0.5)
        (40.0, 61.0)
    """
    from scipy.stats import binom

    n = len(ordered)
    if n == 0:
        raise ValueError("quantile_interval needs at least one sample")
    tail = (1 - confidence) / 2
    # Largest k with P(B <= k) <= tail, B ~ Bin(n, q) runs below the quantile: lower end x_(k+1).
    k = int(binom.ppf(tail, n, q))
    if binom.cdf(k, n, q) > tail:
        k -= 1
    # Smallest u with P(B >= u) <= tail: upper end x_(u).
    u = int(binom.ppf(1 - tail, n, q)) + 1
    low = float(ordered[k]) if k >= 0 else None
    high = float(ordered[u - 1]) if u <= n else None
    return low, high


def mean_interval(mean: float, std: float, count: int,
                  confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Student's t interval for a mean from its sample std and count; unbounded for one run."""
    from scipy.stats import t

    if count < 2:
        return None, None
    half = float(t.ppf(1 - (1 - confidence) / 2, count - 1)) * std / math.sqrt(count)
    return mean - half, mean + half


def ms(value: float | None, *, from_ms: bool = False) -> str:
    """A time in microseconds (milliseconds with `from_ms`) written as milliseconds to 3 decimals,
    i.e. to the microsecond; `-` for None.

    The one way a time is written, in tables, reports and figures alike, so a figure reads the
    same everywhere and at the precision of its `plus_minus`.

    Example:
        >>> ms(340.4), ms(1234567.8), ms(2.5, from_ms=True), ms(None)
        ('0.340', '1,234.568', '2.500', '-')
    """
    if value is None:
        return "-"
    return f"{value if from_ms else value / 1000:,.3f}"


def plus_minus(value_us: float, interval_us: Sequence[float | None] | None) -> str:
    """`±0.003` (ms): the larger side of the interval, so it contains the interval; `±<0.001`
    under the printed precision (never ±0.000, which reads as exact); `±?` when an end is
    unbounded or none was measured."""
    if interval_us is None or None in interval_us:
        return "±?"
    low, high = interval_us
    half_ms = max(value_us - low, high - value_us) / 1000
    return f"±{half_ms:.3f}" if half_ms >= 0.0005 else "±<0.001"


def format_ms(value_us: float | None, interval_us: Sequence[float | None] | None) -> str:
    """`0.340 ±0.003`: the figure in ms and its `plus_minus`; `-` when there is no figure."""
    return "-" if value_us is None else f"{ms(value_us)} {plus_minus(value_us, interval_us)}"


def runs_to_bound(q: float, confidence: float = CONFIDENCE) -> int:
    """The fewest runs whose largest one bounds the q-quantile from above (q^n <= tail)."""
    return math.ceil(math.log((1 - confidence) / 2) / math.log(q))


def latency_cells(latency, names: Sequence[str] = ("p50", "p90", "p99", "mean")) -> dict[str, str]:
    """Each named figure of a `LatencyStats` (or None) as `format_ms` text."""
    if latency is None:
        return {name: "-" for name in names}
    intervals = latency.intervals_us or {}
    return {name: format_ms(getattr(latency, f"{name}_us"), intervals.get(name)) for name in names}


def unbounded_note(latency) -> str | None:
    """Why a figure shows ±?: too few runs for its interval, or no per-run times at all."""
    if latency is None or latency.count == 0:
        return None
    if not latency.intervals_us:
        return "±?: no per-run times, so no interval"
    loose = [name for name, (low, high) in latency.intervals_us.items() if low is None or high is None]
    if not loose:
        return None
    # A mean needs 2 runs; a percentile needs enough runs for its largest to bound it.
    need = max(runs_to_bound(int(name[1:]) / 100) if name.startswith("p") else 2 for name in loose)
    return (f"±?: {latency.count} runs cannot bound {'/'.join(loose)} at {CONFIDENCE:.0%} "
            f"(≥ {need} runs can; --runs)")
