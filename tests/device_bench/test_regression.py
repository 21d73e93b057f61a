"""device_bench.regression: the statistics of the latency/energy gate, and that they are honest.

Synthetic latencies are lognormal (right-skewed like real timings) from fixed seeds, so every
assertion is deterministic; the calibration tests count false failures over many seeds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from device_bench.benchmark_output import TimingStats
from device_bench.energy import EnergyResult
from device_bench.rails import RailEnergy, RailsEnergy
from device_bench.regression import (
    check_regressions,
    compare_latency,
    latency_values,
    median_interval,
    parse_threshold,
)
from device_bench.results import BenchmarkResult, LatencyStats
from mobile_opt.errors import InputError


def timings(seed, n=200, scale=1000.0, sigma=0.1):
    return np.random.default_rng(seed).lognormal(np.log(scale), sigma, n)


def result(samples=(), *, model="m.tflite", device_model="Pixel", status="ok", energy=None, histogram=None):
    samples = [float(s) for s in samples]
    latency = LatencyStats.from_samples(samples) if samples else None
    if histogram is not None:
        # The histogram-only shape of results written without --samples.
        latency = dataclasses.replace(LatencyStats.from_samples([1.0]), histogram=histogram)
        samples = ()
    return BenchmarkResult(model_path=f"/x/{model}", model_sha256="0", model_size_bytes=1,
                           device={"serial": "s", "model": device_model}, backend="cpu", threads=1,
                           status=status, latency=latency, samples_us=tuple(samples), energy=energy)


@pytest.mark.parametrize("text, expected", [("5%", 0.05), ("5", 0.05), (" 12.5 % ", 0.125), (0.2, 0.2)])
def test_parse_threshold(text, expected):
    assert parse_threshold(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["five", "-5%", "0%", "", "5%%"])
def test_parse_threshold_rejects(text):
    with pytest.raises(InputError, match="Received"):
        parse_threshold(text)


def test_clear_slowdown_regresses_and_ratio_interval_covers_truth():
    test = compare_latency(timings(0), timings(1) * 1.5, threshold=0.05)
    assert test.regressed and test.testable and test.p_value < 1e-6
    assert test.ratio_low < 1.5 < test.ratio_high


def test_small_real_change_below_threshold_never_fails():
    # 3 % slower, 20,000 runs each: hugely significant against "no change", not against +5 %.
    test = compare_latency(timings(0, 20_000), timings(1, 20_000) * 1.03, threshold=0.05)
    assert not test.regressed and test.p_value > 0.5
    assert test.ratio_low < 1.03 < test.ratio_high


def test_false_failure_rate_at_the_threshold_is_at_most_alpha():
    """The true slowdown equals the threshold: the gate may fail only ~alpha of the time."""
    trials, alpha = 300, 0.01
    fails = sum(compare_latency(timings(2 * s, 80), timings(2 * s + 1, 80) * 1.05,
                                threshold=0.05, alpha=alpha).regressed for s in range(trials))
    assert fails <= 9  # Binomial(300, 0.01): P(X > 9) < 0.001


def test_ratio_interval_coverage():
    trials = 200
    covered = 0
    for s in range(trials):
        test = compare_latency(timings(2 * s, 100), timings(2 * s + 1, 100) * 1.2, threshold=0.05)
        covered += test.ratio_low <= 1.2 <= test.ratio_high
    assert covered >= 0.88 * trials  # nominal 95 %; the percentile bootstrap runs a bit short


def test_too_few_runs_is_not_testable():
    test = compare_latency([1000.0, 1001.0], [5000.0, 5001.0], threshold=0.05)
    assert not test.testable and not test.regressed and "too few runs" in test.reason


def test_median_interval_is_order_statistics():
    assert median_interval([5.0]) == (5.0, 5.0)
    assert median_interval(list(range(1, 101))) == (40.0, 61.0)  # binomial(100, 1/2) 2.5 % quantile
    low, high = median_interval(timings(3, 400))
    assert low < np.median(timings(3, 400)) < high


def test_pairs_by_device_model_and_pools_devices():
    old = [result(timings(0, 100)), result(timings(1, 100), device_model="Other")]
    new = [result(timings(2, 50) * 2), result(timings(3, 50) * 2), result(timings(4, 100), device_model="Other")]
    report = check_regressions(old, new, threshold=0.05)
    by_where = {r.pattern: r for r in report.results}
    assert by_where["Pixel cpu×1"].status == "regressed" and "n=100/100" in by_where["Pixel cpu×1"].note
    assert by_where["Other cpu×1"].status == "ok"
    assert not report.ok and report.failures == (by_where["Pixel cpu×1"],)


def test_histogram_only_results_are_tested_on_bins():
    edges = list(np.geomspace(100, 100_000, 61))

    def hist(samples):
        return {"edges_us": edges, "counts": np.histogram(samples, edges)[0].tolist()}

    slow = check_regressions([result(histogram=hist(timings(0)))], [result(histogram=hist(timings(1) * 2))],
                             threshold=0.05)
    noise = check_regressions([result(histogram=hist(timings(0)))], [result(histogram=hist(timings(1)))],
                              threshold=0.05)
    assert slow.results[0].status == "regressed" and slow.results[0].source == "histogram"
    assert "binned" in slow.results[0].note
    assert noise.ok and noise.results[0].status == "ok"
    assert latency_values(result(histogram=hist(timings(0))))[1] == "histogram"


def tool_result(samples):
    """What the real LiteRT tool leaves: its own statistics, no per-run times, no histogram."""
    values = np.asarray(samples)
    stats = LatencyStats.from_tool(TimingStats(values.size, avg_us=float(values.mean()), std_us=float(values.std()),
                                               min_us=float(values.min()), max_us=float(values.max()),
                                               p5_us=float(np.percentile(values, 5)),
                                               median_us=float(np.median(values)),
                                               p95_us=float(np.percentile(values, 95))), source="result_proto")
    return dataclasses.replace(result(samples), samples_us=(), latency=stats)


def test_tool_statistics_only_are_gated_by_welch_on_mean_and_std():
    slow = check_regressions([tool_result(timings(0))], [tool_result(timings(1) * 2)], threshold=0.05)
    noise = check_regressions([tool_result(timings(0))], [tool_result(timings(1))], threshold=0.05)
    assert slow.results[0].status == "regressed" and slow.results[0].source == "summary"
    assert "Welch" in slow.results[0].note and slow.results[0].p_value < 0.01
    assert noise.results[0].status == "ok" and noise.ok


def test_no_samples_no_histogram_is_not_testable_never_a_pass():
    measured = result(timings(0, 10))
    no_stats = dataclasses.replace(measured.latency, histogram=None, mean_us=None, std_us=None)
    summary_only = dataclasses.replace(measured, samples_us=(), latency=no_stats)
    report = check_regressions([result(timings(0))], [summary_only], threshold=0.05)
    (row,) = report.results
    assert row.status == "not testable" and "neither raw samples nor a latency histogram" in row.note
    assert "not testable" in row.describe()
    missing = check_regressions([], [result(timings(0))], threshold=0.05).results[0]
    assert missing.status == "not testable" and "no baseline" in missing.note
    failed = check_regressions([result(timings(0))], [result(status="failed")], threshold=0.05).results[0]
    assert failed.status == "not testable" and "no successful run" in failed.note


def energy(j, bound):
    base = EnergyResult.unavailable("x")
    return dataclasses.replace(base, energy_per_inference_j=j, energy_per_inference_bound_j=bound, reason=None)


def test_energy_gate_regresses_only_beyond_both_stated_bounds():
    old = [result(timings(0), energy=energy(1e-3, 1e-5))]
    worse = check_regressions(old, [result(timings(1), energy=energy(1.5e-3, 1e-5))], threshold=0.05)
    noisy = check_regressions(old, [result(timings(1), energy=energy(1.5e-3, 5e-4))], threshold=0.05)
    no_spread = check_regressions(old, [result(timings(1), energy=energy(1.5e-3, None))], threshold=0.05)
    assert [r.metric for r in worse.results] == ["p50_latency", "energy"]
    assert worse.results[1].status == "regressed" and not worse.ok
    assert noisy.results[1].status == "ok" and noisy.ok  # +50 %, but 1.5e-3 - 5e-4 is within 1.05 × (1e-3 + 1e-5)
    assert no_spread.results[1].status == "not testable"


def rails_energy(cpu, tpu, bound, *, charging=True):
    """A charging phone: no battery figure, but rails (issue 24)."""
    per_rail = {name: RailEnergy(name, "/iio0", f"CH{i}", j, bound, j * 100, 0.1, 1.0)
                for i, (name, j) in enumerate((("VDD_CPU", cpu), ("VDD_TPU", tpu)))}
    rails = RailsEnergy(per_rail=per_rail, energy_per_inference_j=cpu + tpu, energy_per_inference_bound_j=2 * bound,
                        sources=("/iio0",))
    return dataclasses.replace(EnergyResult.unavailable("charging", charging=charging), rails=rails)


def test_rails_are_gated_like_the_battery_figure_sum_and_each_rail():
    old = [result(timings(0), energy=rails_energy(1e-3, 2e-3, 1e-5))]
    new = [result(timings(1), energy=rails_energy(1e-3, 3e-3, 1e-5))]
    report = check_regressions(old, new, threshold=0.05)
    by_metric = {r.metric: r for r in report.results}
    assert by_metric["energy"].status == "not testable"  # the battery gave no figure on USB
    assert by_metric["energy_rails"].status == "regressed"
    assert by_metric["energy_rail:VDD_TPU"].status == "regressed"
    assert by_metric["energy_rail:VDD_CPU"].status == "ok"
    assert "VDD_TPU rail" in by_metric["energy_rail:VDD_TPU"].describe() and not report.ok


def test_a_phone_without_rails_gets_no_rail_gate():
    # Its results say why there are no rails; a "not testable" row per run would only be noise.
    none = dataclasses.replace(EnergyResult.unavailable("charging", charging=True),
                               rails=RailsEnergy(reason="no ODPM rails; the battery's figure is the only one"))
    report = check_regressions([result(timings(0), energy=none)], [result(timings(1), energy=none)], threshold=0.05)
    assert [r.metric for r in report.results if r.metric.startswith("energy")] == ["energy"]
