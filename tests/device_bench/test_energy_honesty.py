"""The energy bound is honest against an independent fuel-gauge model, over many random phones.

Gauges come from `device_bench.testing.gauge.random_gauge` (written apart from the client):
refresh 10 ms–2 s, averaging none / previous period / 1 s / 5 s, lag, resolution 1 µA–1 mA,
noise, the four unit/sign conventions, charging. `bench/energy_truth.py` records the sample
file our harness would write and measures it as the client does (with its reruns); this is
its short version (the long one is in BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "energy_truth", Path(__file__).resolve().parents[2] / "bench" / "energy_truth.py"
)
energy_truth = sys.modules.setdefault("energy_truth", importlib.util.module_from_spec(_SPEC))
if not hasattr(energy_truth, "run_one"):
    _SPEC.loader.exec_module(energy_truth)

RUNS = 160


@pytest.fixture(scope="module")
def outcomes():
    return [energy_truth.run_one(seed) for seed in range(RUNS)]


@pytest.mark.slow
def test_truth_inside_the_bound_in_95_percent_of_figures(outcomes):
    figures = [o for o in outcomes if o.result.energy_per_inference_j is not None]
    covered = sum(o.covered for o in figures)
    assert covered >= 0.95 * len(figures), [
        (energy_truth.gauge_class(o), o.error) for o in figures if not o.covered
    ]


@pytest.mark.slow
def test_fast_gauges_on_long_runs_are_within_two_percent(outcomes):
    fast = [o for o in outcomes if o.gauge.refresh_period_s <= 0.2 and o.measured_s >= 10
            and not o.gauge.charger_ua and o.error is not None]
    assert len(fast) >= 10
    worst = max(fast, key=lambda o: abs(o.error))
    assert abs(worst.error) <= 0.02, (energy_truth.gauge_class(worst), worst.gauge, worst.result)


@pytest.mark.slow
def test_runs_without_a_figure_say_why_and_are_a_minority_of_fast_gauges(outcomes):
    none = [o for o in outcomes if o.result.energy_per_inference_j is None]
    assert all(o.result.reason and o.result.energy_per_inference_bound_j is None for o in none)
    fast = [o for o in outcomes if o.gauge.refresh_period_s <= 0.2]
    fast_none = [o for o in fast if o.result.energy_per_inference_j is None]
    assert len(fast_none) < len(fast) / 2
    # Every figure is positive: no unit/sign convention flips it.
    assert all(o.result.energy_per_inference_j > 0 for o in outcomes if o.error is not None)
    # A charging phone never gets a figure: the charger's share of the load is invisible.
    charging = [o for o in outcomes if o.gauge.charger_ua]
    assert charging and all(o.result.energy_per_inference_j is None and "Wi-Fi ADB" in o.result.reason
                            for o in charging)
