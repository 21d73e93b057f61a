"""Energy maths on synthetic fuel-gauge samples: units, signs, windows, charging, failures."""

from __future__ import annotations

import random

import pytest

from device_bench.energy import EnergyResult, compute_energy, parse_samples

VOLT_UV = 3_900_000


def make_log(
    *,
    idle_ua: float = 150_000,
    load_ua: float = 600_000,
    unit: str = "uA",
    sign: int = -1,
    rate_hz: float = 100.0,
    baseline_s: float = 2.0,
    pre_s: float = 0.5,
    load_s: float = 3.0,
    post_s: float = 0.5,
    noise_ua: float = 0.0,
    status: str = "Discharging",
    voltage_scale: float = 1.0,
    seed: int = 0,
) -> tuple[str, float]:
    """Sample-file text and the true excess energy (J) of the load interval."""
    rng = random.Random(seed)
    lines = [f"start 100.00 {status} 310", "mark 100.00 baseline_start"]
    t0 = 100.0
    base_end = t0 + baseline_s
    load_on = base_end + pre_s
    load_off = load_on + load_s
    meas_end = load_off + post_s
    n = int(round((meas_end + 0.2 - t0) * rate_hz))
    for i in range(n + 1):
        t = t0 + i / rate_hz
        magnitude = load_ua if load_on <= t < load_off else idle_ua
        magnitude += rng.gauss(0, noise_ua) if noise_ua else 0
        value = sign * magnitude / (1000 if unit == "mA" else 1)
        lines.append(f"{t:.4f} {value:.3f} {VOLT_UV * voltage_scale:.6g}")
    lines += [
        f"mark {base_end:.4f} baseline_end",
        f"mark {base_end:.4f} measured_start",
        f"mark {meas_end:.4f} measured_end",
        f"end {meas_end + 0.2:.4f} {status} 325",
    ]
    truth = (load_ua - idle_ua) * 1e-6 * VOLT_UV * 1e-6 * load_s
    return "\n".join(lines) + "\n", truth


@pytest.mark.parametrize("unit", ["uA", "mA"])
@pytest.mark.parametrize("sign", [-1, 1])
def test_units_and_signs_are_detected_and_energy_matches(unit, sign):
    text, truth = make_log(unit=unit, sign=sign)
    result = compute_energy(parse_samples(text), inferences=1000)
    assert result.current_unit == unit and result.discharge_sign == sign
    assert result.voltage_unit == "uV"
    assert result.excess_energy_j == pytest.approx(truth, rel=0.01)
    assert result.energy_per_inference_j == pytest.approx(truth / 1000, rel=0.01)
    assert result.baseline_power_w == pytest.approx(0.15 * 3.9, rel=1e-6)
    assert "under load" in result.detection["sign"]
    assert result.reason is None and not result.charging
    assert (result.temp_start_c, result.temp_end_c) == (31.0, 32.5)


@pytest.mark.parametrize("scale, unit", [(1e-3, "mV"), (1e-6, "V")])
def test_voltage_units(scale, unit):
    text, truth = make_log(voltage_scale=scale)
    result = compute_energy(parse_samples(text), inferences=10)
    assert result.voltage_unit == unit
    assert result.excess_energy_j == pytest.approx(truth, rel=0.01)


def test_noisy_gauge_gives_spread_and_close_estimate():
    text, truth = make_log(noise_ua=20_000, load_s=6.0, seed=3)
    result = compute_energy(parse_samples(text), inferences=500)
    assert result.energy_per_inference_j == pytest.approx(truth / 500, rel=0.03)
    assert result.energy_per_inference_spread_j is not None
    assert 0 < result.energy_per_inference_spread_j < result.energy_per_inference_j


def test_short_window_has_no_spread():
    text, _ = make_log(pre_s=0.1, load_s=0.5, post_s=0.1)
    result = compute_energy(parse_samples(text), inferences=10)
    assert result.energy_per_inference_spread_j is None
    assert result.energy_per_inference_j is not None


def test_charging_is_flagged_but_measured():
    # Net current into the battery (positive in ABI convention) falls under load.
    text, truth = make_log(idle_ua=-300_000, load_ua=150_000, status="Charging")
    result = compute_energy(parse_samples(text), inferences=100)
    assert result.charging
    assert any("charging" in w for w in result.warnings)
    assert result.excess_energy_j == pytest.approx(truth, rel=0.01)


def test_load_that_does_not_move_the_current_falls_back_to_value_sign():
    text, _ = make_log(idle_ua=200_000, load_ua=200_000, sign=1)
    result = compute_energy(parse_samples(text), inferences=10)
    assert result.discharge_sign == 1
    assert "too little" in result.detection["sign"]
    assert any("did not measurably change" in w for w in result.warnings)


def test_slow_sampling_warns():
    text, _ = make_log(rate_hz=2.0)
    result = compute_energy(parse_samples(text), inferences=10)
    assert any("Hz" in w for w in result.warnings)


def test_error_bound_is_small_when_sampling_is_regular():
    text, truth = make_log(rate_hz=100.0)
    result = compute_energy(parse_samples(text), inferences=1)
    # Two edges, 10 ms apart readings: at most 5 ms × 1.755 W each.
    assert result.energy_per_inference_bound_j == pytest.approx(2 * 0.005 * 0.45 * 3.9, rel=0.05)
    assert abs(result.excess_energy_j - truth) <= result.energy_per_inference_bound_j
    assert result.max_sample_gap_s == pytest.approx(0.01, abs=1e-6)
    assert result.warnings == ()


def test_stalled_sampler_near_an_edge_widens_the_bound_and_warns():
    text, truth = make_log(rate_hz=100.0)
    # Drop 0.6 s of readings around the load-off edge (t = 105.5).
    kept = [l for l in text.splitlines()
            if not (l[0].isdigit() and 105.1 < float(l.split()[0]) < 105.7)]
    result = compute_energy(parse_samples("\n".join(kept)), inferences=1)
    assert result.max_sample_gap_s == pytest.approx(0.6, abs=0.02)
    assert any("sparse around the load's edges" in w for w in result.warnings)
    assert abs(result.excess_energy_j - truth) <= result.energy_per_inference_bound_j
    assert result.energy_per_inference_bound_j > 0.25 * 0.45 * 3.9


def test_samples_ending_early_are_flagged():
    text, _ = make_log()
    lines = text.splitlines()
    cut = [l for l in lines if l.startswith(("mark", "start")) or (
        l[0].isdigit() and float(l.split()[0]) < 104.0)]
    result = compute_energy(parse_samples("\n".join(cut)), inferences=10)
    assert any("cover only" in w for w in result.warnings)


def test_battery_absent():
    log = parse_samples("error no-battery /sys/class/power_supply/battery\n")
    result = compute_energy(log, inferences=10)
    assert result.energy_per_inference_j is None
    assert result.reason == "battery not readable: no-battery /sys/class/power_supply/battery"


def test_missing_markers_and_samples():
    text, _ = make_log()
    no_end = "\n".join(l for l in text.splitlines() if "measured_end" not in l)
    assert "measured_end" in compute_energy(parse_samples(no_end), 10).reason
    only_marks = "\n".join(l for l in text.splitlines() if l.startswith("mark"))
    assert "too few power samples" in compute_energy(parse_samples(only_marks), 10).reason
    assert "inference count" in compute_energy(parse_samples(text), 0).reason


def test_parse_tolerates_truncated_and_unknown_lines():
    text, _ = make_log()
    log = parse_samples(text + "123.4 -15\ngarbage here now and then\n")
    assert log.malformed_lines == 2
    assert log.status_start == "Discharging" and log.status_end == "Discharging"
    assert set(log.marks) == {"baseline_start", "baseline_end", "measured_start", "measured_end"}


def test_round_trip_and_validation():
    text, _ = make_log()
    result = compute_energy(parse_samples(text), inferences=10)
    assert EnergyResult.from_dict(result.to_dict()) == result
    with pytest.raises(ValueError, match="bin_s"):
        compute_energy(parse_samples(text), 10, bin_s=0)


def test_real_sampler_output_parses(tmp_path):
    """The sh harness's own output (run under sh against fake sysfs files) is understood."""
    import subprocess

    from android_harness import script_path

    bat = tmp_path / "battery"
    bat.mkdir()
    for name, value in (("current_now", "-150000"), ("voltage_now", "3900000"),
                        ("status", "Discharging"), ("temp", "301")):
        (bat / name).write_text(value + "\n")
    samples = tmp_path / "power.txt"
    proc = subprocess.run(
        ["sh", str(script_path("run_benchmark.sh")), str(samples), str(bat), "0.01", "0.3",
         "sh", "-c", f"set_current() {{ echo $1 > {bat}/new; mv {bat}/new {bat}/current_now; }}; "
         "set_current -600000; sleep 0.5; set_current -150000"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    log = parse_samples(samples.read_text())
    assert log.temp_start_c == 30.1 and log.malformed_lines == 0
    result = compute_energy(log, inferences=5)
    assert result.current_unit == "uA" and result.discharge_sign == -1
    # 0.45 A × 3.9 V × ~0.5 s; loose: /proc/uptime has 10 ms steps and sh has jitter.
    assert result.excess_energy_j == pytest.approx(0.45 * 3.9 * 0.5, rel=0.25)
