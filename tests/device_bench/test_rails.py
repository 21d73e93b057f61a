"""Rail counters (ODPM) → energy per inference per rail: formats from the public sources, faults."""

from __future__ import annotations

import random
import re
import subprocess

import pytest

from android_harness import script_path
from device_bench.rails import (
    QUANTISATION,
    RailsEnergy,
    RailsFormatError,
    compute_rails,
    parse_dumpsys,
    parse_energy_value,
    parse_rails,
)

# energy_value as `energy_value_show` prints it in Google's ODPM driver
# (drivers/iio/power/odpm.c, Pixel kernels: "t=%ld\n" then "CH%d(T=%ld)[%s], %ld\n" per channel).
ENERGY_VALUE = """t=4468950
CH0(T=4468950)[S10M_VDD_TPU], 2516159234
CH1(T=4468950)[VSYS_PWR_MODEM], 9614296103
CH2(T=4468950)[VSYS_PWR_RFFE], 50291478
CH3(T=4468950)[S2M_VDD_CPUCL2], 3953004356
"""

# The PowerStats HAL's dump (hardware/google/pixel/powerstats/PowerStatsAidl.cpp, dumpEnergyMeter:
# "  %32s   %14.2f mWs\n" of "[name]:subsystem"), after the state residency section.
DUMPSYS = """
============= PowerStats HAL 2.0 state residencies ==============
            Entity                State         Total time
           AOC          AWAKE          1200 ms
========== End of PowerStats HAL 2.0 state residencies ==========

============= PowerStats HAL 2.0 energy meter ==============
                           Channel    Cumulative Energy
              [S10M_VDD_TPU]:TPU         2516159.25 mWs
            [S2M_VDD_CPUCL2]:CPU(BIG)    3953004.25 mWs
========== End of PowerStats HAL 2.0 energy meter ==========
"""


def test_energy_value_parses_as_the_driver_prints_it():
    t, channels = parse_energy_value(ENERGY_VALUE)
    assert t == 4468.95
    assert [c.rail for c in channels] == ["S10M_VDD_TPU", "VSYS_PWR_MODEM", "VSYS_PWR_RFFE", "S2M_VDD_CPUCL2"]
    assert channels[0].energy_j == pytest.approx(2516.159234)
    assert channels[0].duration_s == 4468.95 and channels[0].resolution_j == 1e-6


def test_dumpsys_energy_meter_section_parses_and_skips_the_rest():
    channels = parse_dumpsys(DUMPSYS)
    assert [c.rail for c in channels] == ["S10M_VDD_TPU:TPU", "S2M_VDD_CPUCL2:CPU(BIG)"]
    assert channels[1].energy_j == pytest.approx(3953.00425)
    # A float32 of ~4e6 mWs steps by 0.25 mWs: the resolution says so.
    assert channels[1].resolution_j == pytest.approx((0.005 + 0.125) * 1e-3)


@pytest.mark.parametrize("text, words", [
    ("CH0(T=1)[X], 5\n", "t=<ms>"),
    ("t=10\nCH0(T=1)[X], 5 mWs\n", "unknown unit"),
    ("t=10\nCH0(T=1)[X], 5.5\n", "unknown unit"),
    ("t=10\nCH0 X 5\n", "does not parse"),
    ("t=10\nCH0(T=1)[X], 5\nCH0(T=1)[Y], 6\n", "listed twice"),
    ("t=10\nCH0(T=1)[X], 5\nCH2(T=1)[Y], 6\n", "lacks channel CH1"),
])
def test_bad_energy_value_is_refused(text, words):
    with pytest.raises(RailsFormatError, match=words):
        parse_energy_value(text)


@pytest.mark.parametrize("text, words", [
    ("nothing here", "no 'PowerStats HAL 2.0 energy meter'"),
    (DUMPSYS.replace("mWs\n            [S2M", "mJ\n            [S2M"), "unknown unit"),
    (DUMPSYS.split("========== End of PowerStats HAL 2.0 energy meter")[0], "no end banner"),
])
def test_bad_dumpsys_is_refused(text, words):
    with pytest.raises(RailsFormatError, match=words):
        parse_dumpsys(text)


class Phone:
    """Per-rail counters of a known draw; each refresh's increment off by up to the driver's
    quantisation (±2.5 %), as `odpm_refresh_registers` adds them up."""

    def __init__(self, idle_w, load_w, seed=0):
        self.idle_w, self.load_w = idle_w, load_w
        self.energy = {rail: 0.0 for rail in idle_w}
        self.t_ms = 1000
        self.rng = random.Random(seed)

    def run(self, seconds, loaded):
        for rail in self.energy:
            joules = (self.load_w[rail] if loaded else self.idle_w[rail]) * seconds
            self.energy[rail] += joules * (1 + self.rng.uniform(-QUANTISATION, QUANTISATION))
        self.t_ms += round(seconds * 1000)

    def snapshot(self, mark, source="/sys/bus/iio/devices/iio:device0", rate="1000.000000", skip=()):
        lines = [f"rails {mark} {self.t_ms / 1000:.2f} {source}", f"sampling_rate {rate}", f"t={self.t_ms}"]
        for i, (rail, joules) in enumerate(self.energy.items()):
            if rail in skip:
                continue
            lines.append(f"CH{i}(T={self.t_ms})[{rail}], {int(joules * 1e6)}")
        return "\n".join(lines) + "\n"


def bench(phone, base_s=5.0, run_s=4.0, tail_s=1.0, **faults):
    text = phone.snapshot("baseline_start")
    phone.run(base_s, False)
    text += phone.snapshot("baseline_end")
    phone.run(run_s, True)
    phone.run(tail_s, False)
    text += phone.snapshot("tail_end", **faults)
    return text


RAILS_IDLE = {"VDD_CPU": 0.2, "VDD_TPU": 0.05, "VDD_DISP": 0.3}
RAILS_LOAD = {"VDD_CPU": 1.4, "VDD_TPU": 2.0, "VDD_DISP": 0.3}


def test_per_rail_energy_holds_the_truth_inside_its_bound():
    for seed in range(50):
        phone = Phone(RAILS_IDLE, RAILS_LOAD, seed)
        result = compute_rails(parse_rails(bench(phone)), inferences=200, tail_s=1.0)
        assert result.reason is None and set(result.per_rail) == set(RAILS_IDLE)
        for rail, figure in result.per_rail.items():
            truth = (RAILS_LOAD[rail] - RAILS_IDLE[rail]) * 4.0 / 200
            assert abs(figure.energy_per_inference_j - truth) <= figure.energy_per_inference_bound_j
            assert figure.bound_terms_j["quantisation"] > figure.bound_terms_j["timing"] > 0
        total = sum((RAILS_LOAD[r] - RAILS_IDLE[r]) * 4.0 / 200 for r in RAILS_IDLE)
        assert abs(result.energy_per_inference_j - total) <= result.energy_per_inference_bound_j
    assert RailsEnergy.from_dict(result.to_dict()) == result


def mutate(text, mark, old, new):
    head, _, rest = text.partition(f"rails {mark} ")
    return head + f"rails {mark} " + rest.replace(old, new, 1)


def set_value(text, mark, rail, value):
    head, _, rest = text.partition(f"rails {mark} ")
    return head + f"rails {mark} " + re.sub(rf"(\[{rail}\], )\d+", rf"\g<1>{value}", rest, count=1)


@pytest.mark.parametrize("fault, words", [
    (lambda t: bench(Phone(RAILS_IDLE, RAILS_LOAD), skip=("VDD_TPU",)), "a channel is missing"),
    (lambda t: mutate(t, "tail_end", "[VDD_CPU], ", "[VDD_CPU], 1"), None),  # larger: fine
    (lambda t: mutate(t, "tail_end", "[VDD_DISP]", "[VDD_GPU]"), "rail was swapped"),
    (lambda t: set_value(t, "tail_end", "VDD_CPU", 1), "went backwards"),
    (lambda t: mutate(t, "tail_end", "CH1(T=11000)", "CH1(T=5)"), "restarted its measurement"),
    (lambda t: mutate(t, "tail_end", "t=11000", "t=6000"), "did not advance"),
    (lambda t: set_value(t, "baseline_end", "VDD_TPU", "253224 mJ"), "unknown unit"),
    (lambda t: mutate(t, "baseline_end", "sampling_rate 1000.000000", "sampling_rate fast"), "sampling_rate"),
    (lambda t: t.replace("CH2(T=1000)", "CH2(T=1000"), "does not parse"),
    (lambda t: t.split("rails tail_end")[0], "missing at tail_end"),
    (lambda t: t.replace("sampling_rate 1000.000000\nt=11000", "error /x/energy_value not readable", 1),
     "not readable"),
])
def test_bad_or_partial_counters_give_a_reason_never_a_number(fault, words):
    text = fault(bench(Phone(RAILS_IDLE, RAILS_LOAD)))
    result = compute_rails(parse_rails(text), inferences=200, tail_s=1.0)
    if words is None:
        assert result.reason is None
        return
    assert result.reason is not None and words in result.reason
    assert result.energy_per_inference_j is None and result.per_rail == {}


def test_tail_shorter_than_the_refresh_interval_gives_no_number():
    # 20 counts at 7.628125 Hz: the driver refreshes at most every ~2.6 s.
    text = bench(Phone(RAILS_IDLE, RAILS_LOAD)).replace("sampling_rate 1000.000000", "sampling_rate 7.628125")
    result = compute_rails(parse_rails(text), inferences=200, tail_s=1.0)
    assert "shorter than the driver's refresh interval" in result.reason


def test_dumpsys_snapshots_give_per_rail_energy_with_a_wider_bound():
    def dump(mark, uptime, cpu_mws):
        return (f"rails {mark} {uptime} dumpsys\n" + DUMPSYS.replace("3953004.25", f"{cpu_mws:.2f}"))
    text = dump("baseline_start", 10.0, 1000.0) + dump("baseline_end", 15.0, 2000.0)
    text += dump("tail_end", 20.0, 6000.0)
    result = compute_rails(parse_rails(text), inferences=100, tail_s=3.0)
    cpu = result.per_rail["S2M_VDD_CPUCL2:CPU(BIG)"]
    assert cpu.idle_power_w == pytest.approx(0.2) and cpu.excess_energy_j == pytest.approx(3.0)
    # No counter timestamp and no sampling rate: the slowest refresh's staleness is in the bound.
    assert cpu.bound_terms_j["timing"] > 0.2 * 2 * 2.6
    assert result.per_rail["S10M_VDD_TPU:TPU"].excess_energy_j == 0


def test_the_harness_snapshots_every_rail_directory(tmp_path):
    iio = tmp_path / "iio:device0"
    iio.mkdir()
    (iio / "sampling_rate").write_text("1000.000000\n")
    (iio / "energy_value").write_text(ENERGY_VALUE)
    samples = tmp_path / "power.txt"
    proc = subprocess.run(
        ["sh", str(script_path("run_benchmark.sh")), str(samples), str(tmp_path / "none"), "current_now",
         "0.01", "0", "0", "true"],
        env={"PATH": "/usr/bin:/bin", "MOBILE_OPT_RAILS": f"{iio} {tmp_path / 'gone'}"},
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    log = parse_rails((tmp_path / "power.txt.rails").read_text())
    assert set(log.snapshots) == {"baseline_start", "baseline_end", "tail_end"}
    snap = log.snapshots["tail_end"][str(iio)]
    assert snap.error is None and snap.sampling_rate_hz == 1000.0 and len(snap.counters) == 4
    assert "not readable" in log.snapshots["baseline_start"][str(tmp_path / "gone")].error
