"""Energy maths on sample files recorded from an independent fuel-gauge model.

The files are what our harness writes (`bench/energy_truth.record`: a ~100 Hz sampler with
jitter reading `device_bench.testing.gauge`, /proc/uptime's 10 ms steps, window markers),
so each case checks the client against a gauge it was not written with.
"""

from __future__ import annotations

import importlib.util
import sys
import random
from pathlib import Path

import pytest

from device_bench.energy import EnergyResult, compute_energy, parse_samples
from device_bench.testing.gauge import GaugeModel

_SPEC = importlib.util.spec_from_file_location(
    "energy_truth", Path(__file__).resolve().parents[2] / "bench" / "energy_truth.py"
)
energy_truth = sys.modules.setdefault("energy_truth", importlib.util.module_from_spec(_SPEC))
if not hasattr(energy_truth, "run_one"):
    _SPEC.loader.exec_module(energy_truth)

NOISY = dict(noise_ua=2000.0, seed=5)


def measure(gauge: GaugeModel, *, file: str = "current_now", min_secs: float = 10.0,
            tail_s: float = 3.0, idle_ua: float = 150_000, load_ua: float = 600_000,
            resistance_mohm: float = 0.0, seed: int = 0, edit=None):
    text, truth, inferences, _ = energy_truth.record(
        gauge, file, random.Random(seed), min_secs=min_secs, tail_s=tail_s, idle_ua=idle_ua,
        load_ua=load_ua, voltage_uv=3_900_000, resistance_mohm=resistance_mohm, latency_s=0.005)
    if edit is not None:
        text = edit(text)
    return compute_energy(parse_samples(text), inferences), truth, text


def inside(result, truth):
    return abs(result.energy_per_inference_j - truth) <= result.energy_per_inference_bound_j


@pytest.mark.parametrize("unit", ["uA", "mA"])
@pytest.mark.parametrize("sign", [-1, 1])
def test_units_and_signs_are_detected_and_energy_matches(unit, sign):
    gauge = GaugeModel(refresh_period_s=0.1, unit=unit, discharge_sign=sign, **NOISY)
    result, truth, _ = measure(gauge)
    assert result.reason is None, result.reason
    assert result.current_unit == unit and result.discharge_sign == sign
    assert result.voltage_unit == "uV" and "under load" in result.detection["sign"]
    assert inside(result, truth)
    assert abs(result.energy_per_inference_j - truth) <= 0.02 * truth
    assert result.gauge["refresh_period_s"] == pytest.approx(0.1, abs=0.03)
    assert result.baseline_power_w == pytest.approx(0.15 * 3.9, rel=0.01)
    assert not result.charging and (result.temp_start_c, result.temp_end_c) == (30.1, 30.5)
    assert result.files_read == ("/sys/class/power_supply/battery/current_now",
                                 "/sys/class/power_supply/battery/voltage_now")


@pytest.mark.parametrize("divisor, unit", [(1000, "mV"), (1_000_000, "V")])
def test_voltage_units(divisor, unit):
    def rescale(text):
        rows = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0][0].isdigit():
                parts[2] = f"{int(parts[2]) / divisor:.6g}"
            rows.append(" ".join(parts))
        return "\n".join(rows)

    result, truth, _ = measure(GaugeModel(refresh_period_s=0.05, **NOISY), edit=rescale)
    assert result.voltage_unit == unit and inside(result, truth)


def test_averaging_gauge_publishes_late_and_the_tail_catches_it():
    gauge = GaugeModel(refresh_period_s=0.2, averaging_window_s=1.0, lag_s=0.15, **NOISY)
    result, truth, _ = measure(gauge, tail_s=3.0)
    assert inside(result, truth) and abs(result.energy_per_inference_j - truth) <= 0.02 * truth
    assert result.tail_s >= 2.9


def test_averaging_gauge_with_too_short_a_tail_asks_for_a_longer_one():
    gauge = GaugeModel(refresh_period_s=0.1, files=("current_avg",), avg_window_s=5.0, **NOISY)
    result, _, _ = measure(gauge, file="current_avg", tail_s=3.0)
    assert result.energy_per_inference_j is None
    assert "returned to idle" in result.reason or "tail" in result.reason
    assert result.needs["tail_s"] > 3.0
    again, truth, _ = measure(gauge, file="current_avg", tail_s=result.needs["tail_s"])
    assert again.reason is None and inside(again, truth)


def test_slow_gauge_on_a_short_run_gives_no_figure_and_asks_for_a_longer_run():
    gauge = GaugeModel(refresh_period_s=1.0, **NOISY)
    result, _, _ = measure(gauge, min_secs=1.0)
    assert result.energy_per_inference_j is None and result.reason
    assert result.needs["min_secs"] >= 10
    again, truth, _ = measure(gauge, min_secs=result.needs["min_secs"],
                              tail_s=result.needs.get("tail_s", 3.0))
    assert again.reason is None and inside(again, truth)


@pytest.mark.parametrize("charger_ua", [400_000, 900_000])
def test_a_charging_phone_gives_no_figure_and_says_what_to_do(charger_ua):
    # 400 mA: the charger outweighs the idle draw, not the load (ABI sign: positive = charging);
    # 900 mA: it covers the load too. Either way the charger's share is invisible to the gauge.
    result, _, _ = measure(GaugeModel(refresh_period_s=0.1, charger_ua=charger_ua, **NOISY))
    assert result.charging and result.status_start == "Charging"
    assert result.energy_per_inference_j is None and result.energy_per_inference_bound_j is None
    assert "charger" in result.reason and "Wi-Fi ADB" in result.reason


def test_load_against_the_discharge_sign_is_ambiguous():
    # Discharging, idle reads positive (vendor: positive = discharging), but the reading falls
    # during the run: something else stopped, or the convention is not what it seems.
    gauge = GaugeModel(refresh_period_s=0.05, discharge_sign=1, **NOISY)
    result, _, _ = measure(gauge, idle_ua=600_000, load_ua=150_000)
    assert result.energy_per_inference_j is None and "sign ambiguous" in result.reason


def test_noiseless_gauge_cannot_show_its_period():
    result, _, _ = measure(GaugeModel(refresh_period_s=0.05))
    assert result.energy_per_inference_j is None and "changed only" in result.reason


def test_stalled_sampler_near_an_edge_widens_the_bound():
    gauge = GaugeModel(refresh_period_s=0.02, **NOISY)
    plain, truth, text = measure(gauge)
    t_end = parse_samples(text).marks["measured_end"]
    kept = "\n".join(l for l in text.splitlines()
                     if not (l[0].isdigit() and t_end - 0.5 < float(l.split()[0]) < t_end + 0.1))
    stalled = compute_energy(parse_samples(kept), plain.inferences)
    assert stalled.max_sample_gap_s >= 0.55
    assert stalled.bound_terms_j["sampler_gaps"] > 5 * plain.bound_terms_j["sampler_gaps"]
    assert inside(stalled, truth)


def test_an_older_harness_without_a_tail_warns():
    result, _, text = measure(GaugeModel(refresh_period_s=0.02, **NOISY))
    no_tail = "\n".join(l for l in text.splitlines() if "tail_end" not in l)
    again = compute_energy(parse_samples(no_tail), result.inferences)
    assert any("tail_end" in w for w in again.warnings)


def test_battery_absent():
    log = parse_samples("error no-battery /sys/class/power_supply/battery\n")
    result = compute_energy(log, inferences=10)
    assert result.energy_per_inference_j is None
    assert result.reason == "battery not readable: no-battery /sys/class/power_supply/battery"


def test_missing_markers_and_samples():
    _, _, text = measure(GaugeModel(**NOISY), min_secs=1.0)
    no_end = "\n".join(l for l in text.splitlines() if "measured_end" not in l)
    assert "measured_end" in compute_energy(parse_samples(no_end), 10).reason
    only_marks = "\n".join(l for l in text.splitlines() if l.startswith("mark"))
    assert "too few power samples" in compute_energy(parse_samples(only_marks), 10).reason
    assert "inference count" in compute_energy(parse_samples(text), 0).reason


def test_parse_tolerates_truncated_and_unknown_lines():
    _, _, text = measure(GaugeModel(**NOISY), min_secs=1.0)
    log = parse_samples(text + "123.4 -15\ngarbage here now and then\n")
    assert log.malformed_lines == 2
    assert log.status_start == "Discharging" and log.status_end == "Discharging"
    assert set(log.marks) == {"baseline_start", "baseline_end", "measured_start", "measured_end",
                              "tail_end"}


def test_round_trip():
    result, _, _ = measure(GaugeModel(refresh_period_s=0.05, **NOISY))
    assert EnergyResult.from_dict(result.to_dict()) == result
    none = EnergyResult.unavailable("why", None)
    assert none.energy_per_inference_j is None and none.reason == "why"


def test_real_sampler_output_parses(tmp_path):
    """The sh harness's own output (run under sh against fake sysfs files) is understood."""
    import subprocess

    from android_harness import script_path

    bat = tmp_path / "battery"
    bat.mkdir()
    for name, value in (("current_now", "-150000"), ("voltage_now", "3900000"),
                        ("status", "Discharging"), ("temp", "301")):
        (bat / name).write_text(value + "\n")
    samples = tmp_path / "run" / "power.txt"
    samples.parent.mkdir()
    # The "gauge" refreshes every 50 ms with a little noise, as a real one does.
    load = (f"i=0; while [ $i -lt 20 ]; do echo $((-600000 - (i % 3) * 3000)) > {bat}/n; "
            f"mv {bat}/n {bat}/current_now; sleep 0.05; i=$((i+1)); done; "
            f"echo -150000 > {bat}/n; mv {bat}/n {bat}/current_now")
    proc = subprocess.run(
        ["sh", str(script_path("run_benchmark.sh")), str(samples), str(bat), "current_now",
         "0.01", "1", "1.5", "sh", "-c", load], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    log = parse_samples(samples.read_text())
    assert log.temp_start_c == 30.1 and log.malformed_lines == 0 and "tail_end" in log.marks
    result = compute_energy(log, inferences=5)
    assert result.reason is None, result.reason
    assert result.current_unit == "uA" and result.discharge_sign == -1
    # ~0.45 A over 3.9 V for 20 steps of ≥ 50 ms: at least 1.75 J·s… within the bound.
    assert result.excess_energy_j >= 0.45 * 3.9 * 1.0 - result.energy_per_inference_bound_j * 5


@pytest.mark.parametrize("window", [None, 1.0])
def test_lag_and_averaging_are_learned_and_recorded(window):
    gauge = GaugeModel(refresh_period_s=0.1, averaging_window_s=window, lag_s=0.2, **NOISY)
    result, truth, _ = measure(gauge)
    assert result.reason is None and inside(result, truth)
    response = result.gauge["response"]
    # The first move comes after the lag, within the tool's start-up (≤ 0.3 s here) plus one
    # refresh and a sample gap of it.
    assert 0.2 <= response["first_move_s"] <= 0.2 + 0.3 + 0.1 + 0.05
    assert response["averages"] is (window is not None)
    if window is None:
        assert response["averaging_window_s"] is None
    else:
        assert response["averaging_window_s"] == pytest.approx(window, abs=0.3)
    assert response["half_fall_s"] >= 0.2
