"""android_harness scripts under every POSIX shell we have (sh, mksh like Android, busybox)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from android_harness import script_path
from device_bench.energy import parse_samples

SHELLS = [
    pytest.param(["sh"], id="sh"),
    pytest.param(
        ["mksh"], id="mksh",
        marks=pytest.mark.skipif(shutil.which("mksh") is None, reason="mksh not installed (apt-get install mksh)"),
    ),
    pytest.param(
        ["busybox", "sh"], id="busybox",
        marks=pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed"),
    ),
]


@pytest.fixture
def battery(tmp_path):
    bat = tmp_path / "battery"
    bat.mkdir()
    for name, value in (("current_now", "-150000"), ("voltage_now", "3900000"),
                        ("status", "Discharging"), ("temp", "305")):
        (bat / name).write_text(value + "\n")
    return bat


def run_benchmark(shell, *args, timeout_s=30):
    return subprocess.run([*shell, str(script_path("run_benchmark.sh")), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.parametrize("shell", SHELLS)
def test_markers_wrap_the_benchmark_and_exit_code_passes_through(shell, battery, tmp_path):
    samples = tmp_path / "power.txt"
    proc = run_benchmark(shell, samples, battery, "0.01", "0.2",
                         "sh", "-c", "echo benchmark-output; sleep 0.2; exit 3")
    assert proc.returncode == 3
    assert proc.stdout == "benchmark-output\n"
    lines = samples.read_text().splitlines()
    marks = [l.split()[2] for l in lines if l.startswith("mark ")]
    assert marks == ["baseline_start", "baseline_end", "measured_start", "measured_end"]
    assert lines[-1].startswith("end ") and lines[-1].endswith("Discharging 305")
    log = parse_samples(samples.read_text())
    assert log.malformed_lines == 0 and len(log.samples) >= 10
    assert log.marks["baseline_end"] - log.marks["baseline_start"] >= 0.19
    assert log.marks["measured_end"] - log.marks["measured_start"] >= 0.19
    assert not (tmp_path / "power.txt.stop").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_without_sampling_it_just_runs_the_command(shell, tmp_path):
    proc = run_benchmark(shell, "-", "-", "-", "-", "sh", "-c", "echo 'a b'; exit 4")
    assert proc.returncode == 4 and proc.stdout == "a b\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_missing_battery_is_reported_and_the_benchmark_still_runs(shell, tmp_path):
    samples = tmp_path / "power.txt"
    proc = run_benchmark(shell, samples, tmp_path / "no-battery", "0.01", "0.1", "echo", "ran")
    assert proc.returncode == 0 and proc.stdout == "ran\n"
    log = parse_samples(samples.read_text())
    assert log.error == f"no-battery {tmp_path / 'no-battery'}"


@pytest.mark.parametrize("shell", SHELLS)
def test_usage_errors(shell, tmp_path):
    assert run_benchmark(shell, "x").returncode == 2
    assert run_benchmark(shell, tmp_path / "p", "b", "0.1", "0").returncode == 2
    proc = subprocess.run([*shell, str(script_path("sample_power.sh"))], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_sampler_stops_on_stop_file_and_follows_the_gauge(shell, battery, tmp_path):
    out, stop = tmp_path / "s.txt", tmp_path / "stop"
    proc = subprocess.Popen([*shell, str(script_path("sample_power.sh")), str(out), str(battery),
                             "0.01", str(stop)])
    try:
        time.sleep(0.3)
        (battery / "tmp").write_text("-700000\n")
        (battery / "tmp").replace(battery / "current_now")
        time.sleep(0.3)
        stop.touch()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = parse_samples(out.read_text())
    currents = {s.current_raw for s in log.samples}
    assert currents == {-150000.0, -700000.0}
    assert log.status_start == log.status_end == "Discharging" and log.temp_end_c == 30.5


def test_scripts_avoid_bashisms():
    for name in ("sample_power.sh", "run_benchmark.sh"):
        text = script_path(name).read_text()
        assert "[[" not in text and "local " not in text and "function " not in text
        assert "$((" not in text and "<<<" not in text and "${!" not in text
        assert text.startswith("#!/system/bin/sh\n")
