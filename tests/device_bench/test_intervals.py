"""The latency figures' 95 % intervals are honest: they cover the true value as often as they claim.

Ground truth comes from a known distribution (log-normal, skewed like latency), not from our
code: its quantiles and mean are closed-form. Each check repeats a simulated run many times
with a fixed seed and counts how often the interval held the truth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import lognorm

from device_bench.benchmark_output import TimingStats
from device_bench.intervals import (format_ms, mean_interval, ms, plus_minus, quantile_interval, runs_to_bound,
                                    unbounded_note)
from device_bench.results import LatencyStats

TRIALS = 500
SIGMA, SCALE_US = 0.5, 400.0  # log-normal latency around 0.4 ms with a long right tail
TRUTH = lognorm(s=SIGMA, scale=SCALE_US)
# Below this a nominal 95 % interval is refused: 3 binomial standard deviations under 0.95.
FLOOR = 0.95 - 3 * math.sqrt(0.95 * 0.05 / TRIALS)


def _runs(n: int, seed: int) -> np.ndarray:
    return np.sort(TRUTH.rvs(size=(TRIALS, n), random_state=np.random.default_rng(seed)), axis=1)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_percentile_intervals_cover_the_true_percentile(q):
    runs = _runs(400, seed=int(q * 100))
    truth = TRUTH.ppf(q)
    held = [low <= truth <= high for low, high in (quantile_interval(r, q) for r in runs)]
    # Order statistics are conservative, but not vacuous: not the whole range every time.
    assert FLOOR <= np.mean(held) <= 0.99


def test_the_mean_interval_covers_the_true_mean_of_skewed_latency():
    runs = _runs(200, seed=7)
    truth = TRUTH.mean()
    held = [low <= truth <= high for low, high in
            (mean_interval(r.mean(), r.std(ddof=1), r.size) for r in runs)]
    assert FLOOR <= np.mean(held) <= 0.99


def test_too_few_runs_leave_the_p99_unbounded_and_say_how_many_would_do():
    need = runs_to_bound(0.99)
    assert 0.99 ** need <= 0.025 < 0.99 ** (need - 1)
    short = LatencyStats.from_samples(list(TRUTH.rvs(size=need - 1, random_state=1)))
    assert short.intervals_us["p99"][1] is None and short.intervals_us["p50"][1] is not None
    assert format_ms(short.p99_us, short.intervals_us["p99"]).endswith("±?")
    assert f"≥ {need} runs" in unbounded_note(short)
    enough = LatencyStats.from_samples(list(TRUTH.rvs(size=need, random_state=1)))
    assert None not in enough.intervals_us["p99"] and unbounded_note(enough) is None


def test_stats_carry_intervals_around_their_figures():
    stats = LatencyStats.from_samples(list(TRUTH.rvs(size=500, random_state=3)))
    for name in ("p50", "p90", "p99", "mean"):
        low, high = stats.intervals_us[name]
        assert low <= getattr(stats, f"{name}_us") <= high
    text = format_ms(stats.p50_us, stats.intervals_us["p50"])
    half = max(stats.p50_us - stats.intervals_us["p50"][0], stats.intervals_us["p50"][1] - stats.p50_us)
    assert text == f"{stats.p50_us / 1000:.3f} ±{half / 1000:.3f}" and half >= 0.5
    assert format_ms(400.0, [399.8, 400.1]) == "0.400 ±<0.001"  # never ±0.000, which reads as exact
    # A phone's tool keeps no per-run times: the mean gets Student's t, the percentiles none.
    tool = LatencyStats.from_tool(TimingStats(100, avg_us=500.0, std_us=50.0, min_us=400.0, max_us=700.0,
                                              p5_us=420.0, median_us=490.0, p95_us=600.0), source="result_proto")
    assert set(tool.intervals_us) == {"mean"} and "median's interval" in tool.unavailable
    assert format_ms(tool.p50_us, tool.intervals_us.get("p50")).endswith("±?")


def test_ms_writes_every_time_to_the_microsecond():
    assert (ms(340.4), ms(0.4), ms(1_234_567.8), ms(None)) == ("0.340", "0.000", "1,234.568", "-")
    assert ms(2.5, from_ms=True) == ms(2500) == "2.500"
    assert format_ms(340.4, (339.0, 342.0)) == f"{ms(340.4)} {plus_minus(340.4, (339.0, 342.0))}"
