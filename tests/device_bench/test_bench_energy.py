"""Energy end to end on loopback phones whose gauges were not written with the client.

Each device's battery publishes through `device_bench.testing.gauge` (refresh, averaging,
lag, noise, charger, battery names, `current_avg`-only); the client's figure is checked
against the loopback's ground-truth ledger *and the bound it states itself*.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from device_bench import EnergySettings, RunSettings, ToolSettings, benchmark
from device_bench.testing import BatteryProfile
from device_bench.testing.fake_benchmark_model import configure
from device_bench.testing.gauge import GaugeModel

RUN = RunSettings(runs=5, warmup_runs=1, min_secs=2.5, warmup_min_secs=0.5)
ENERGY = EnergySettings(baseline_s=1.0, tail_s=2.0)


def noisy(**kwargs) -> GaugeModel:
    return GaugeModel(**{"refresh_period_s": 0.05, "noise_ua": 2000.0, "seed": 11, **kwargs})


def measured(loopback, direct, model, cache, *, run=RUN, energy=ENERGY, backends=("cpu",)):
    t0 = time.monotonic()
    results = benchmark(direct, [model], backends=backends, run=run, energy=energy, tool=ToolSettings(cache_dir=cache))
    t1 = time.monotonic()
    return results, t0, t1


def assert_truth_inside_bound(loopback, result, t0, t1):
    """The truth of the run the figure is about: the last invocation (a probe run before it,
    or a first attempt the client lengthened, are not in its figure)."""
    energy = result.energy
    assert energy.reason is None, energy.reason
    ledger = loopback.battery_truth()
    offset = ledger.transitions[0].t_monotonic - ledger.transitions[0].t_wall
    start = datetime.fromisoformat(result.measurement.started_at).timestamp() + offset
    end = datetime.fromisoformat(result.measurement.finished_at).timestamp() + offset
    assert t0 <= start < end <= t1 + 1.0
    truth = ledger.excess_energy_j(start, end) / energy.inferences
    assert abs(energy.energy_per_inference_j - truth) <= energy.energy_per_inference_bound_j, (
        (energy.energy_per_inference_j - truth) / truth, energy)
    assert energy.energy_per_inference_j > 0


@pytest.mark.slow
@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=noisy(refresh_period_s=1.0))}],
                         indirect=True)
def test_slow_gauge_lengthens_the_run_by_itself_and_says_so(loopback, direct, tiny_model, cache):
    short = RunSettings(runs=5, warmup_runs=1, min_secs=1.0, warmup_min_secs=0.2)
    (result,), t0, t1 = measured(loopback, direct, tiny_model, cache, run=short)
    assert result.status == "ok"
    assert result.energy.extended and "--min_secs 1" in result.energy.extended
    assert result.measurement.min_secs >= 10.0
    assert result.energy.gauge["refresh_period_s"] == pytest.approx(1.0, abs=0.2)
    assert_truth_inside_bound(loopback, result, t0, t1)


@pytest.mark.parametrize(
    "loopback", [{"battery": BatteryProfile(gauge=noisy(refresh_period_s=0.2, averaging_window_s=1.0,
                                                        lag_s=0.1))}],
    indirect=True)
def test_averaging_late_gauge(loopback, direct, tiny_model, cache):
    (result,), t0, t1 = measured(loopback, direct, tiny_model, cache)
    assert_truth_inside_bound(loopback, result, t0, t1)


@pytest.mark.parametrize(
    "loopback, current_file",
    [({"battery": BatteryProfile(name="bms", gauge=noisy())}, "current_now"),
     ({"battery": BatteryProfile(name="max170xx_battery",
                                 gauge=noisy(files=("current_avg",), avg_window_s=1.0))}, "current_avg")],
    indirect=["loopback"], ids=["bms", "current_avg-only"])
def test_any_battery_by_its_type(loopback, direct, tiny_model, cache, current_file):
    (result,), t0, t1 = measured(loopback, direct, tiny_model, cache)
    name = loopback._battery_profile.name
    assert result.energy.battery_dir == f"/sys/class/power_supply/{name}"
    assert result.energy.files_read == (f"/sys/class/power_supply/{name}/{current_file}",
                                        f"/sys/class/power_supply/{name}/voltage_now")
    assert_truth_inside_bound(loopback, result, t0, t1)


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(name="bms", gauge=noisy())}],
                         indirect=True)
def test_battery_named_explicitly_and_a_wrong_name(loopback, direct, tiny_model, cache):
    (result,), _, _ = measured(loopback, direct, tiny_model, cache,
                               energy=EnergySettings(baseline_s=1.0, tail_s=2.0, battery="bms"))
    assert result.energy.battery_dir == "/sys/class/power_supply/bms"
    (wrong,), _, _ = measured(loopback, direct, tiny_model, cache,
                              run=RunSettings(runs=3, min_secs=0.1, warmup_min_secs=0.1),
                              energy=EnergySettings(battery="nosuch"))
    assert wrong.status == "ok" and wrong.energy.energy_per_inference_j is None
    assert "nosuch" in wrong.energy.reason


@pytest.mark.parametrize(
    "loopback", [{"battery": BatteryProfile(gauge=noisy(charger_ua=400_000, discharge_sign=+1))}],
    indirect=True)
def test_a_charging_phone_is_benchmarked_but_its_energy_not_measured(loopback, direct, tiny_model, cache):
    # The case: µA-positive convention while charging once gave a negative figure.
    (result,), _, _ = measured(loopback, direct, tiny_model, cache)
    assert result.status == "ok" and result.latency is not None
    assert result.energy.charging and result.energy.energy_per_inference_j is None
    assert "Charging" in result.energy.reason and "Wi-Fi ADB" in result.energy.reason


@pytest.mark.parametrize(
    "loopback", [{"battery": BatteryProfile(load_current_ua=150_300, gauge=noisy(charger_ua=900_000))}],
    indirect=True)
def test_charger_covering_the_load_is_not_measured(loopback, direct, tiny_model, cache):
    (result,), _, _ = measured(loopback, direct, tiny_model, cache)
    assert result.status == "ok" and result.latency is not None
    assert result.energy.energy_per_inference_j is None
    assert "charger" in result.energy.reason and "Wi-Fi ADB" in result.energy.reason


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=noisy())}], indirect=True)
def test_delegate_failing_at_init_is_found_before_the_baseline(loopback, direct, tiny_model, cache):
    configure(loopback.root, gpu="reject")
    (gpu,), t0, t1 = measured(loopback, direct, tiny_model, cache, backends=("gpu",),
                              energy=EnergySettings(baseline_s=60.0))
    assert gpu.status == "unsupported" and gpu.energy is None
    assert gpu.reason.startswith("GPU delegate failed to apply")
    # No power session was started for it: the 60 s baseline was never spent.
    assert t1 - t0 < 60.0


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=noisy())}], indirect=True)
def test_thermal_state_and_cooldown_to(loopback, direct, tiny_model, cache):
    quick = RunSettings(runs=3, min_secs=0.1, warmup_min_secs=0.1, cooldown_to_c=-40.0,
                        cooldown_timeout_s=0.0)
    (result,) = benchmark(direct, [tiny_model], run=quick, tool=ToolSettings(cache_dir=cache))
    assert result.status == "ok"
    before, after = result.thermal["before"], result.thermal["after"]
    assert "battery" in before and any(k.startswith("thermal/") for k in after)
    assert any("above --cooldown-to -40" in w for w in result.warnings)
    warm = RunSettings(runs=3, min_secs=0.1, warmup_min_secs=0.1, cooldown_to_c=90.0)
    (again,) = benchmark(direct, [tiny_model], run=warm, tool=ToolSettings(cache_dir=cache))
    assert not any("cooldown" in w for w in again.warnings)


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(temp_decidegc=452, gauge=noisy())}],
                         indirect=True)
def test_a_hot_phone_is_warned(loopback, direct, tiny_model, cache):
    quick = RunSettings(runs=3, min_secs=0.1, warmup_min_secs=0.1)
    (result,) = benchmark(direct, [tiny_model], run=quick, tool=ToolSettings(cache_dir=cache))
    assert result.status == "ok" and result.thermal["after"]["battery"] >= 45.2
    assert any("device was hot (battery 45" in w and "--cooldown-to" in w for w in result.warnings)
