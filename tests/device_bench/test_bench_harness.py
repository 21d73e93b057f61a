"""android_harness scripts under every POSIX shell we have (sh, mksh like Android, busybox)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from android_harness import script_path
from device_bench.energy import parse_samples
from device_bench.testing._shell import _default_hang_up as as_adbd_starts_it

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


def wait_for(predicate, timeout_s=20.0):
    """Polls until `predicate()` is true (the event itself, not a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def samples_in(path):
    return len(parse_samples(path.read_text()).samples) if path.exists() else 0


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone as far as sampling goes.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def sampler_pids():
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"sample_power" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return [p for p in pids if alive(p)]


@pytest.mark.parametrize("shell", SHELLS)
def test_markers_wrap_the_benchmark_and_exit_code_passes_through(shell, battery, tmp_path):
    samples = tmp_path / "power.txt"
    proc = run_benchmark(shell, samples, battery, "current_now", "0.01", "0.2", "0.1",
                         "sh", "-c", "echo benchmark-output; sleep 0.2; exit 3")
    assert proc.returncode == 3
    assert proc.stdout == "benchmark-output\n"
    lines = samples.read_text().splitlines()
    marks = [l.split()[2] for l in lines if l.startswith("mark ")]
    assert marks == ["baseline_start", "baseline_end", "measured_start", "measured_end", "tail_end"]
    assert f"battery {battery} current_now voltage_now" in lines
    assert lines[-1].startswith("end ") and lines[-1].endswith("Discharging 305")
    log = parse_samples(samples.read_text())
    assert log.malformed_lines == 0 and len(log.samples) >= 10
    assert log.files_read == (f"{battery}/current_now", f"{battery}/voltage_now")
    assert log.marks["baseline_end"] - log.marks["baseline_start"] >= 0.19
    assert log.marks["measured_end"] - log.marks["measured_start"] >= 0.19
    assert log.marks["tail_end"] - log.marks["measured_end"] >= 0.09
    assert not (tmp_path / "power.txt.stop").exists()
    assert list((tmp_path.parent / "samplers").glob("*.pid")) == [] or all(
        not alive(int(p.stem)) for p in (tmp_path.parent / "samplers").glob("*.pid"))


@pytest.mark.parametrize("shell", SHELLS)
def test_current_avg_only_battery_is_sampled(shell, battery, tmp_path):
    (battery / "current_now").rename(battery / "current_avg")
    samples = tmp_path / "power.txt"
    proc = run_benchmark(shell, samples, battery, "current_avg", "0.01", "0.05", "0.05", "true")
    assert proc.returncode == 0
    log = parse_samples(samples.read_text())
    assert log.error is None and log.samples[0].current_raw == -150000
    assert log.files_read[0] == f"{battery}/current_avg"


@pytest.mark.parametrize("shell", SHELLS)
def test_hangup_stops_benchmark_and_sampler(shell, battery, tmp_path):
    """adbd SIGHUPs only the shell on a cable pull: nothing may keep running."""
    samples, started = tmp_path / "power.txt", tmp_path / "started"
    proc = subprocess.Popen(
        [*shell, str(script_path("run_benchmark.sh")), str(samples), str(battery), "current_now",
         "0.01", "0", "0", "sh", "-c", f"echo $$ > {started}; exec sleep 600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=as_adbd_starts_it)  # even under `nohup`
    try:
        wait_for(lambda: started.exists() and started.read_text().strip() and samples_in(samples) > 2)
        bench = int(started.read_text())
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=20) == 129
        wait_for(lambda: not alive(bench))
        before = samples_in(samples)
        assert "mark" in samples.read_text() and "aborted" in samples.read_text()
        # The sampler is gone: the file stops growing (checked against the sampler's own end line).
        wait_for(lambda: samples.read_text().rstrip().splitlines()[-1].startswith(("end ", "mark ")))
        assert samples_in(samples) <= before + 1
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("shell", SHELLS)
def test_sampler_exits_when_its_parent_is_killed(shell, battery, tmp_path):
    out = tmp_path / "s.txt"
    parent = subprocess.Popen(["sleep", "600"])
    proc = subprocess.Popen([*shell, str(script_path("sample_power.sh")), str(out), str(battery),
                             "current_now", "0.01", str(tmp_path / "stop"), str(parent.pid)])
    try:
        wait_for(lambda: samples_in(out) > 2)
        parent.kill()
        parent.wait()
        assert proc.wait(timeout=20) == 0
        assert out.read_text().splitlines()[-1].startswith("end ")
    finally:
        for p in (proc, parent):
            if p.poll() is None:
                p.kill()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_new_run_stops_a_stale_sampler_first(shell, battery, tmp_path):
    pids = tmp_path.parent / "samplers"
    pids.mkdir(exist_ok=True)
    stale_out = tmp_path / "stale.txt"
    stale = subprocess.Popen([*shell, str(script_path("sample_power.sh")), str(stale_out),
                              str(battery), "current_now", "0.01", str(tmp_path / "never")])
    try:
        (pids / f"{stale.pid}.pid").write_text(f"{stale.pid}\n")
        wait_for(lambda: samples_in(stale_out) > 2)
        proc = run_benchmark(shell, tmp_path / "power.txt", battery, "current_now", "0.01", "0",
                             "0", "true")
        assert proc.returncode == 0
        assert stale.wait(timeout=20) != 0 or stale_out.read_text().splitlines()[-1].startswith("end ")
        assert not (pids / f"{stale.pid}.pid").exists()
    finally:
        if stale.poll() is None:
            stale.kill()


@pytest.mark.parametrize("shell", SHELLS)
def test_without_sampling_it_just_runs_the_command(shell, tmp_path):
    proc = run_benchmark(shell, "-", "-", "-", "-", "-", "-", "sh", "-c", "echo 'a b'; exit 4")
    assert proc.returncode == 4 and proc.stdout == "a b\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_missing_battery_is_reported_and_the_benchmark_still_runs(shell, tmp_path):
    samples = tmp_path / "power.txt"
    proc = run_benchmark(shell, samples, tmp_path / "no-battery", "current_now", "0.01", "0.1",
                         "0", "echo", "ran")
    assert proc.returncode == 0 and proc.stdout == "ran\n"
    log = parse_samples(samples.read_text())
    assert log.error == f"no-battery {tmp_path / 'no-battery'}"


@pytest.mark.parametrize("shell", SHELLS)
def test_usage_errors(shell, tmp_path):
    assert run_benchmark(shell, "x").returncode == 2
    assert run_benchmark(shell, tmp_path / "p", "b", "current_now", "0.1", "0", "0").returncode == 2
    proc = subprocess.run([*shell, str(script_path("sample_power.sh"))], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_sampler_stops_on_stop_file_and_follows_the_gauge(shell, battery, tmp_path):
    out, stop = tmp_path / "s.txt", tmp_path / "stop"
    proc = subprocess.Popen([*shell, str(script_path("sample_power.sh")), str(out), str(battery),
                             "current_now", "0.01", str(stop)])
    try:
        wait_for(lambda: samples_in(out) > 2)
        (battery / "tmp").write_text("-700000\n")
        (battery / "tmp").replace(battery / "current_now")
        wait_for(lambda: -700000.0 in {s.current_raw for s in parse_samples(out.read_text()).samples})
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
