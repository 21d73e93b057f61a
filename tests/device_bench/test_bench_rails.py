"""`benchmark(energy=...)` on the loopback phone with ODPM rails (issue 24): per-rail figures
against the fake's truth, charging or not; no rails → the gauge alone and why; faults → why."""

from __future__ import annotations

import threading
import time

import pytest

from device_bench import EnergySettings, RunSettings, ToolSettings, benchmark, write_jsonl
from device_bench.testing import BatteryProfile, GaugeModel, RailsProfile, configure_rails, rails_truth
from mobile_opt.report import load_input, render_report

RUN = RunSettings(runs=5, warmup_runs=1, min_secs=2.5, warmup_min_secs=0.5)
ENERGY = EnergySettings(baseline_s=1.0, tail_s=2.0)
GAUGE = GaugeModel(refresh_period_s=0.05, noise_ua=2000.0, seed=11)
CHARGING = GaugeModel(refresh_period_s=0.05, noise_ua=2000.0, seed=11, charger_ua=900_000)


def true_excess_j(truth, rail, times_s):
    """The fake's true counters over the client's own windows: run minus idle, in J."""
    a, b, c = (truth.monotonic_from_boot_ms(t * 1000) for t in times_s)
    idle_uw = truth.energy_between_uws(rail, a, b) / (b - a)
    return (truth.energy_between_uws(rail, b, c) - idle_uw * (c - b)) * 1e-6


def assert_rails_hold_the_truth(loopback, result):
    rails = result.energy.rails
    assert rails.reason is None, rails.reason
    truth = rails_truth(loopback.root)
    assert len(rails.per_rail) == len(truth.profile.rails) == 16
    for key, figure in rails.per_rail.items():
        expected = true_excess_j(truth, figure.rail, rails.counter_times_s[figure.source]) / rails.inferences
        assert abs(figure.energy_per_inference_j - expected) <= figure.energy_per_inference_bound_j, (key, figure)
    return rails


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=GAUGE), "rails": RailsProfile()},
                                      {"battery": BatteryProfile(gauge=CHARGING), "rails": RailsProfile()}],
                         indirect=True, ids=["discharging", "charging"])
def test_rails_give_per_rail_energy_on_battery_and_on_usb(loopback, direct, tiny_model, cache, tmp_path):
    jsonl = tmp_path / "r.jsonl"
    (result,) = benchmark(direct, [tiny_model], run=RUN, energy=ENERGY, tool=ToolSettings(cache_dir=cache))
    write_jsonl(jsonl, [result])
    rails = assert_rails_hold_the_truth(loopback, result)
    cpu = sum(r.energy_per_inference_j for r in rails.per_rail.values() if "CPUCL" in r.rail)
    assert cpu > 0.5 * rails.energy_per_inference_j  # the fake benchmark on the CPU loads its clusters
    assert rails.sampling_rate_hz and set(rails.sources) == {f"/sys/bus/iio/devices/iio:device{i}" for i in (0, 1)}
    if result.energy.charging:
        assert result.energy.energy_per_inference_j is None and "charger" in result.energy.reason
    else:
        # Both figures exist: the battery sees the whole phone, the rails what the backend drew.
        assert result.energy.energy_per_inference_j is not None
    # The HTML report shows every rail and the stacked bar (a PNG inline), from the JSONL as written.
    html = render_report([load_input(jsonl)])
    assert all(name in html for name in rails.per_rail) and "energy per inference per rail" in html
    assert html.count("data:image/png;base64,") >= 1


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=GAUGE),
                                       "rails": RailsProfile(access="denied")}], indirect=True)
def test_unreadable_sysfs_falls_back_to_the_power_stats_dump(loopback, direct, tiny_model, cache):
    # The dump has no sampling rate: the tail must outlast the driver's slowest refresh (2.6 s).
    energy = EnergySettings(baseline_s=1.0, tail_s=3.0)
    (result,) = benchmark(direct, [tiny_model], run=RUN, energy=energy, tool=ToolSettings(cache_dir=cache))
    rails = result.energy.rails
    assert rails.reason is None and rails.sources == ("dumpsys",)
    assert {r.rail.split(":")[0] for r in rails.per_rail.values()} == {
        r.schematic for r in rails_truth(loopback.root).profile.rails}


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=GAUGE)}], indirect=True)
def test_a_phone_without_rails_says_so_and_keeps_the_gauge(loopback, direct, tiny_model, cache):
    (result,) = benchmark(direct, [tiny_model], run=RUN, energy=ENERGY, tool=ToolSettings(cache_dir=cache))
    assert result.energy.energy_per_inference_j is not None
    assert result.energy.rails.energy_per_inference_j is None
    assert "no power rails" in result.energy.rails.reason and "battery's figure" in result.energy.rails.reason


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=GAUGE), "rails": RailsProfile()}],
                         indirect=True)
def fault_after_the_baseline(loopback, fault, timeout_s=120.0):
    """Applies `fault` once the harness has taken its baseline_end snapshot (the event, not a sleep)."""
    def apply():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for path in loopback.root.glob("data/local/tmp/mobile_opt/*/power-*.txt.rails"):
                if "rails baseline_end" in path.read_text(errors="replace"):
                    configure_rails(loopback.root, fault=fault)
                    return
            time.sleep(0.01)
    thread = threading.Thread(target=apply, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("loopback", [{"battery": BatteryProfile(gauge=GAUGE), "rails": RailsProfile()}],
                         indirect=True)
@pytest.mark.parametrize("fault, words", [("missing_channel", "a channel is missing"),
                                          ("backwards", "went backwards"),
                                          ("unknown_unit", "unknown unit"),
                                          ("unparsable", "does not parse")])
def test_bad_rail_files_give_why_never_a_number(loopback, direct, tiny_model, cache, fault, words):
    applier = fault_after_the_baseline(loopback, fault)
    (result,) = benchmark(direct, [tiny_model], run=RUN, energy=ENERGY, tool=ToolSettings(cache_dir=cache))
    applier.join(timeout=5)
    rails = result.energy.rails
    assert not applier.is_alive() and rails.energy_per_inference_j is None and rails.per_rail == {}
    assert words in rails.reason, rails.reason
