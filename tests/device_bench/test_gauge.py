"""The fuel-gauge model: pure, exact values computed by hand from the trace."""

from __future__ import annotations

import random
import statistics

import pytest

from device_bench.testing.gauge import CURRENT_FILES, GaugeModel, PowerTrace, random_gauge
from mobile_opt.errors import InputError

# Idle 100 mA; 400 mA during [1.0, 1.5); idle again.
TRACE = PowerTrace.step(idle_ua=100_000, load_ua=400_000, t_on=1.0, t_off=1.5)


def test_trace_values_and_exact_integrals():
    assert [TRACE.current_ua(t) for t in (0.0, 0.999, 1.0, 1.2, 1.5, 9.0)] == [1e5, 1e5, 4e5, 4e5, 1e5, 1e5]
    assert TRACE.charge_uc(0.0, 2.0) == pytest.approx(1.5 * 100_000 + 0.5 * 400_000)
    assert TRACE.mean_current_ua(0.25, 1.25) == pytest.approx(175_000)
    # 0.3 A over idle for 0.5 s at 3.9 V.
    assert TRACE.excess_energy_j(-5.0, 5.0) == pytest.approx(3.9 * 0.3 * 0.5)
    assert TRACE.excess_energy_j(1.25, 5.0) == pytest.approx(3.9 * 0.3 * 0.25)
    assert TRACE.excess_energy_j(2.0, 3.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="t0 <= t1"):
        TRACE.excess_energy_j(1.0, 0.0)


def test_voltage_sags_under_load_and_power_follows():
    trace = PowerTrace.step(idle_ua=100_000, load_ua=500_000, t_on=0.0, t_off=1.0, voltage_uv=4_000_000, resistance_mohm=100)
    assert trace.voltage_at_uv(0.5) == pytest.approx(3_950_000)
    assert trace.voltage_at_uv(2.0) == pytest.approx(3_990_000)
    assert trace.idle_power_w == pytest.approx(3.99 * 0.1)
    assert trace.excess_energy_j(-1.0, 2.0) == pytest.approx(3.95 * 0.5 - 3.99 * 0.1)


def test_from_steps_and_trace_validation():
    trace = PowerTrace.from_steps(50_000, [(0.0, 200_000), (2.0, 300_000)])
    assert trace.charge_uc(-1.0, 3.0) == pytest.approx(50_000 + 2 * 200_000 + 300_000)
    with pytest.raises(InputError, match="strictly increasing"):
        PowerTrace(1, (1.0, 1.0), (1, 2))
    with pytest.raises(InputError, match="one current per step"):
        PowerTrace(1, (1.0,), ())
    with pytest.raises(InputError, match="currents >= 0"):
        PowerTrace(-1)
    with pytest.raises(InputError, match="t_on < t_off"):
        PowerTrace.step(idle_ua=1, load_ua=2, t_on=1.0, t_off=1.0)


def test_value_holds_between_refreshes_and_changes_at_refresh_plus_lag():
    # Binary-exact times, so the boundaries are exact in floating point too.
    gauge = GaugeModel(refresh_period_s=0.25, lag_s=0.125, phase_s=0.0625)
    # r_4 = 1.0625: the first refresh inside the load, readable from 1.1875.
    assert gauge.refresh_index(1.1875) == 4 and gauge.refresh_instant(4) == 1.0625
    assert gauge.reading_at(TRACE, 1.1875 - 1e-9) == -100_000
    assert gauge.reading_at(TRACE, 1.1875) == -400_000
    assert {gauge.reading_at(TRACE, 1.1875 + i * 0.01) for i in range(25)} == {-400_000}
    # Load ended at 1.5; r_6 = 1.5625 is the first idle sample, readable from 1.6875.
    assert gauge.reading_at(TRACE, 1.6875 - 1e-9) == -400_000
    assert gauge.reading_at(TRACE, 1.6875) == -100_000


def test_averaging_is_the_exact_mean_of_the_window_ending_at_refresh():
    gauge = GaugeModel(refresh_period_s=0.25, averaging_window_s=1.0)
    # r_5 = 1.25: mean over [0.25, 1.25] = 0.75 * 100 mA + 0.25 * 400 mA.
    assert gauge.reading_at(TRACE, 1.3) == -175_000
    previous_period = GaugeModel(refresh_period_s=0.25, averaging_window_s=0.25)
    assert previous_period.reading_at(TRACE, 1.0) == -100_000  # r_4 = 1.0 averages [0.75, 1.0]
    assert previous_period.reading_at(TRACE, 1.25) == -400_000
    assert previous_period.reading_at(TRACE, 1.75) == -100_000


def test_current_avg_has_its_own_window():
    gauge = GaugeModel(refresh_period_s=0.5, files=("current_avg",), avg_window_s=2.0)
    # r = 2.0: mean over [0, 2] = (1.5 * 100 + 0.5 * 400) / 2 mA.
    assert gauge.reading_at(TRACE, 2.2, "current_avg") == -175_000
    assert gauge.reading_at(TRACE, 2.2, "current_now") == -100_000
    with pytest.raises(InputError, match="file must be one of"):
        gauge.reading_at(TRACE, 2.2, "current_max")


def test_quantisation():
    # mA is the µA value divided in C: truncated toward zero, whatever the sign.
    assert GaugeModel(unit="mA").reading_at(PowerTrace(123_999), 0.0) == -123
    assert GaugeModel(unit="mA", discharge_sign=+1).reading_at(PowerTrace(123_999), 0.0) == 123
    trace = PowerTrace(123_456)
    assert GaugeModel(resolution_ua=1000).reading_at(trace, 0.0) == -123_000
    assert GaugeModel(resolution_ua=156).reading_at(trace, 0.0) == -156 * 791
    assert GaugeModel(resolution_ua=1).reading_at(trace, 0.0) == -123_456


@pytest.mark.parametrize(
    ("unit", "sign", "text"),
    [("uA", -1, "-123456\n"), ("uA", 1, "123456\n"), ("mA", -1, "-123\n"), ("mA", 1, "123\n")],
)
def test_the_four_conventions(unit, sign, text):
    assert GaugeModel(unit=unit, discharge_sign=sign).text_at(PowerTrace(123_456), 7.0) == text


def test_charger_reverses_the_net_current_and_sets_status():
    gauge = GaugeModel(charger_ua=500_000)
    assert gauge.status == "Charging" and GaugeModel().status == "Discharging"
    # ABI: positive = into the battery. Net = 500 mA in − 300 mA consumed.
    assert gauge.reading_at(PowerTrace(300_000), 0.0) == 200_000
    assert GaugeModel(charger_ua=500_000, discharge_sign=+1).reading_at(PowerTrace(300_000), 0.0) == -200_000


def test_noise_is_gaussian_and_deterministic_by_seed():
    trace = PowerTrace(300_000)
    gauge = GaugeModel(refresh_period_s=0.01, noise_ua=2000.0, seed=7)
    values = [gauge.reading_at(trace, k * 0.01 + 0.005) for k in range(2000)]
    assert values == [gauge.reading_at(trace, k * 0.01 + 0.005) for k in range(2000)]
    assert values != [GaugeModel(refresh_period_s=0.01, noise_ua=2000.0, seed=8).reading_at(trace, k * 0.01 + 0.005) for k in range(2000)]
    # 2000 draws: the sample mean is within 5 standard errors, the sd within 10 %.
    assert abs(statistics.fmean(values) + 300_000) < 5 * 2000 / 2000**0.5
    assert statistics.stdev(values) == pytest.approx(2000, rel=0.1)
    # Independent per file.
    both = GaugeModel(noise_ua=2000.0, files=CURRENT_FILES, avg_window_s=0.02)
    assert both.reading_at(trace, 1.0) != both.reading_at(trace, 1.0, "current_avg")


def test_voltage_and_charge_counter_readings():
    trace = PowerTrace.step(idle_ua=100_000, load_ua=500_000, t_on=0.0, t_off=36.0, resistance_mohm=100)
    gauge = GaugeModel(refresh_period_s=1.0, charge_counter_start_uah=3_000_000, charge_counter_step_uah=1)
    assert gauge.voltage_reading_uv(trace, 10.5) == 3_850_000
    # 500 mA for 36 s = 5000 µAh.
    assert gauge.charge_counter_uah(trace, 36.0) == 2_995_000
    charging = GaugeModel(refresh_period_s=1.0, charger_ua=800_000, charge_counter_step_uah=1)
    assert charging.charge_counter_uah(trace, 36.0) == 3_003_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"refresh_period_s": 0.001}, "refresh_period_s"),
        ({"refresh_period_s": 6.0}, "refresh_period_s"),
        ({"averaging_window_s": 0.0}, "averaging_window_s"),
        ({"lag_s": -0.1}, "lag_s"),
        ({"resolution_ua": 0}, "resolution_ua"),
        ({"resolution_ua": 2000}, "resolution_ua"),
        ({"phase_s": 0.02}, "phase_s"),
        ({"unit": "A"}, "unit"),
        ({"discharge_sign": 0}, "discharge_sign"),
        ({"charger_ua": -1}, "charger_ua"),
        ({"files": ()}, "files"),
        ({"files": ("current_max",)}, "files"),
    ],
)
def test_gauge_validation(kwargs, match):
    with pytest.raises(InputError, match=f"Received: {match}="):
        GaugeModel(**kwargs)


def test_random_gauges_are_valid_and_cover_the_conventions():
    rng = random.Random(1)
    gauges = [random_gauge(rng) for _ in range(300)]
    assert {(g.unit, g.discharge_sign) for g in gauges} == {("uA", -1), ("uA", 1), ("mA", -1), ("mA", 1)}
    assert {g.averaging_window_s is None for g in gauges} == {True, False}
    assert any(g.charger_ua for g in gauges) and any(not g.charger_ua for g in gauges)
    assert any("current_now" not in g.files for g in gauges)
    assert all(0.01 <= g.refresh_period_s <= 2.0 and 0 <= g.lag_s <= g.refresh_period_s for g in gauges)
    assert random_gauge(random.Random(5)) == random_gauge(random.Random(5))
    assert random_gauge(random.Random(5), charging=False).charger_ua == 0
