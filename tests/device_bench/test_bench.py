"""benchmark() end to end on the loopback device (direct adb-shell link) and the host.

The loopback device runs `device_bench.testing.fake_benchmark_model` as its benchmark_model
(the host benchmark with the simulated battery load on while inferring), so energy per
inference is checked against the battery's ground-truth ledger.
"""

from __future__ import annotations

import dataclasses

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from device_bench import EnergySettings, RunSettings, ToolSettings, connect
from device_bench.bench import benchmark
from device_bench.binary import _check_elf
from device_bench.results import read_jsonl, write_jsonl
from device_bench.testing import BatteryProfile
from device_bench.testing.gauge import GaugeModel
from device_bench.testing.fake_benchmark_model import configure
from mobile_opt.errors import BenchmarkError, InputError, ModelFormatError

QUICK = dict(run=RunSettings(runs=5, warmup_runs=1, min_secs=0.2, warmup_min_secs=0.1))
# Energy runs need long load windows: the fuel gauge updates at 50 Hz and /proc/uptime
# has 10 ms steps, so edges cost up to ~20 ms each.
ENERGY = dict(run=RunSettings(runs=5, warmup_runs=1, min_secs=2.5, warmup_min_secs=0.5),
              energy=EnergySettings(baseline_s=1.0, tail_s=1.5))
# Real gauges are never noiseless: the noise is what shows their refresh period.
NOISY = dict(refresh_period_s=0.02, noise_ua=2000.0, seed=3)



def energy_truth(loopback, result):
    """The truth of the invocation the figure is about (not the probe run before it, nor a
    first attempt the client lengthened by itself)."""
    ledger = loopback.battery_truth()
    offset = ledger.transitions[0].t_monotonic - ledger.transitions[0].t_wall
    start = datetime.fromisoformat(result.measurement.started_at).timestamp() + offset
    end = datetime.fromisoformat(result.measurement.finished_at).timestamp() + offset
    return ledger.excess_energy_j(start, end) / result.energy.inferences


@pytest.mark.parametrize(
    "loopback",
    [{"battery": BatteryProfile(gauge=GaugeModel(**NOISY))},
     {"battery": BatteryProfile(gauge=GaugeModel(unit="mA", discharge_sign=1, **NOISY))}],
    indirect=True,
    ids=["abi-uA-negative", "vendor-mA-positive"],
)
def test_direct_link_cpu_measured_delegates_unsupported_energy_matches_truth(
    loopback, direct, tiny_model, cache, tmp_path
):
    jsonl = tmp_path / "results.jsonl"
    seen = []
    results = benchmark(direct, [tiny_model], backends=("cpu", "gpu", "nnapi"), threads=(1,),
                        tool=ToolSettings(cache_dir=cache), energy=ENERGY["energy"],
                        run=dataclasses.replace(ENERGY["run"], keep_samples=True),
                        progress=lambda done, total: seen.append((done, total)))
    cpu, gpu, nnapi = results
    assert seen == [(1, 3), (2, 3), (3, 3)]

    assert cpu.status == "ok" and cpu.reason is None
    # LiteRT's binary result proto: mean, std, min, max, p5, median, p95; no per-run times.
    lat = cpu.latency
    assert lat.source == "result_proto" and lat.count >= 5 and cpu.samples_us == ()
    assert lat.min_us <= lat.p5_us <= lat.p50_us <= lat.p95_us <= lat.max_us
    assert lat.p90_us is None and lat.p99_us is None and "p90/p99" in lat.unavailable
    assert lat.histogram is None
    assert cpu.device["serial"] == direct.serial and cpu.device["abi"] == "arm64-v8a"
    assert cpu.measurement.warmup_runs_done >= 1 and cpu.init_ms > 0
    assert cpu.model_sha256 and cpu.delegation.coverage == "cpu"

    for result, name in ((gpu, "GPU"), (nnapi, "NNAPI")):
        assert result.status == "unsupported"
        assert result.reason == f"{name} acceleration is unsupported on this platform."
        assert result.latency is None and result.samples_us == () and result.energy is None

    energy = cpu.energy
    assert energy.reason is None, energy.reason
    truth = energy_truth(loopback, cpu)
    assert energy.inferences == cpu.measurement.warmup_runs_done + cpu.latency.count
    # The truth lies inside the bound the result states.
    error = abs(energy.energy_per_inference_j - truth)
    assert error <= energy.energy_per_inference_bound_j, (error / truth, energy)
    profile = loopback._battery_profile
    gauge = profile.gauge_model
    assert energy.current_unit == gauge.unit and energy.discharge_sign == gauge.discharge_sign
    assert energy.files_read == ("/sys/class/power_supply/battery/current_now",
                                 "/sys/class/power_supply/battery/voltage_now")
    assert set(cpu.thermal) == {"before", "after"} and "battery" in cpu.thermal["before"]
    assert energy.baseline_power_w == pytest.approx(profile.idle_power_w, rel=0.01)

    write_jsonl(jsonl, results)
    assert read_jsonl(jsonl) == results
    # Models are cleaned up; the binary stays for next time.
    assert not list(loopback.device_path("/data/local/tmp/mobile_opt").glob("[0-9a-f]" * 16))
    assert loopback.device_path("/data/local/tmp/mobile_opt/bin/benchmark_model").is_file()


def test_binary_pushed_once_then_reused(loopback, direct, tiny_model, cache):
    benchmark(direct, [tiny_model], tool=ToolSettings(cache_dir=cache), **QUICK)
    binary = loopback.device_path("/data/local/tmp/mobile_opt/bin/benchmark_model")
    os.utime(binary, ns=(10**9, 10**9))  # any rewrite would move it off this mark
    (result,) = benchmark(direct, [tiny_model], threads=(2,), tool=ToolSettings(cache_dir=cache), **QUICK)
    assert result.status == "ok" and result.threads == 2
    assert binary.stat().st_mtime_ns == 10**9
    assert result.measurement.binary_sha256 and "--num_threads=2" in result.measurement.command


def test_gpu_delegate_that_rejects_the_model(loopback, direct, tiny_model, cache):
    configure(loopback.root, gpu="reject")
    cpu, gpu = benchmark(direct, [tiny_model], backends=("cpu", "gpu"), tool=ToolSettings(cache_dir=cache), **QUICK)
    assert cpu.status == "ok"
    assert gpu.status == "unsupported" and gpu.latency is None
    assert gpu.reason.startswith("GPU delegate failed to apply")
    assert "failed to prepare" in gpu.reason
    assert gpu.delegation.unsupported_ops == (("CUSTOM MobileOptFakeOp", "Operation is not supported."),)
    assert (gpu.delegation.ops_on_delegate, gpu.delegation.ops_on_cpu) == (0, 7)


@pytest.mark.parametrize("loopback", [{"battery": None}], indirect=True)
def test_battery_absent_energy_unavailable_latency_measured(loopback, direct, tiny_model, cache):
    (result,) = benchmark(direct, [tiny_model], energy=EnergySettings(), tool=ToolSettings(cache_dir=cache), **QUICK)
    assert result.status == "ok" and result.latency.count >= 5
    assert result.energy.energy_per_inference_j is None
    assert "battery not readable" in result.energy.reason


def test_device_lost_mid_run_keeps_completed_results(loopback, direct, tiny_model, cache, tmp_path):
    def progress(done, total):
        if done == 1:  # the second run has just started: pull the plug during it
            threading.Timer(1.0, loopback.disconnect_all).start()

    start = time.monotonic()
    results = benchmark(direct, [tiny_model], threads=(1, 2, 3), tool=ToolSettings(cache_dir=cache),
                        progress=progress,
                        run=RunSettings(runs=5, min_secs=3.0, warmup_min_secs=0.1, run_timeout_s=30))
    assert time.monotonic() - start < 30
    first, broken, skipped = results
    assert first.status == "ok" and first.latency is not None
    assert broken.status == "failed" and direct.serial in broken.reason
    assert "run 2/3" in broken.reason
    assert skipped.status == "failed" and skipped.reason.startswith(f"skipped: {direct.serial}")
    assert "run 2/3" in skipped.reason


def test_benchmark_crash_is_a_failed_run(loopback, direct, tiny_model, tmp_path):
    crasher = tmp_path / "crasher"
    crasher.write_text("#!/bin/sh\necho 'INFO: STARTING!'\necho 'INFO: Loaded model x'\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    first, second = benchmark(direct, [tiny_model], threads=(1, 2), tool=ToolSettings(binary=crasher), **QUICK)
    for result in (first, second):
        assert result.status == "failed" and result.latency is None
        assert result.reason.startswith("benchmark exited 139")
        assert "Loaded model x" in result.reason


def test_run_timeout_fails_that_run_only(loopback, direct, tiny_model, cache):
    start = time.monotonic()
    slow, = benchmark(direct, [tiny_model], tool=ToolSettings(cache_dir=cache),
                      run=RunSettings(runs=5, min_secs=30, warmup_min_secs=0.1, run_timeout_s=2))
    assert time.monotonic() - start < 30  # min_secs=30: the run was cut by its 2 s timeout
    assert slow.status == "failed" and "timed out after 2 s" in slow.reason
    (again,) = benchmark(direct, [tiny_model], tool=ToolSettings(cache_dir=cache), **QUICK)
    assert again.status == "ok"


@pytest.mark.parametrize("loopback", [{"free_space_bytes": 1_000}], indirect=True)
def test_no_space_for_the_model(loopback, direct, tiny_model, cache):
    results = benchmark(direct, [tiny_model], threads=(1, 2), tool=ToolSettings(cache_dir=cache), **QUICK)
    assert [r.status for r in results] == ["failed", "failed"]
    assert all("No space left" in r.reason or "no space left" in r.reason for r in results)
    assert not list(loopback.device_path("/data/local/tmp/mobile_opt").glob("[0-9a-f]" * 16))


def test_binary_missing_and_unreachable(loopback, direct, tiny_model, tmp_path):
    # conftest points $MOBILE_OPT_TOOLS_URL at a closed port: the fetch fails with the fix.
    with pytest.raises(BenchmarkError, match=r"android_aarch64_benchmark_model failed.*tools install --abi arm64-v8a --from FILE.*empty"):
        benchmark(direct, [tiny_model], tool=ToolSettings(cache_dir=tmp_path / "empty"), **QUICK)


def test_binary_for_the_wrong_abi(loopback, direct, tiny_model):
    with pytest.raises(BenchmarkError, match=r"built for x86-64 \(64-bit\), but the device ABI is arm64-v8a"):
        benchmark(direct, [tiny_model], tool=ToolSettings(binary=Path("/bin/true")), **QUICK)
    assert not loopback.device_path("/data/local/tmp/mobile_opt/bin/benchmark_model").exists()


def _elf(tmp_path, machine: int, little: bool = True, bits: int = 64) -> Path:
    order = "little" if little else "big"
    head = b"\x7fELF" + bytes([bits // 32]) + (b"\x01" if little else b"\x02") + b"\x01" + b"\x00" * 9
    head += (2).to_bytes(2, order) + machine.to_bytes(2, order)
    path = tmp_path / f"elf-{machine}-{order}"
    path.write_bytes(head + b"\x00" * 40)
    return path


def test_elf_machine_check(tmp_path):
    _check_elf(_elf(tmp_path, 183), "arm64-v8a")
    _check_elf(_elf(tmp_path, 40, little=False, bits=32), "armeabi-v7a")
    with pytest.raises(BenchmarkError, match=r"AArch64 \(64-bit\), but the device ABI is armeabi-v7a"):
        _check_elf(_elf(tmp_path, 183), "armeabi-v7a")
    text = tmp_path / "text"
    text.write_text("hello")
    with pytest.raises(BenchmarkError, match="no ELF header"):
        _check_elf(text, "arm64-v8a")


def test_host_backend(tiny_model, tmp_path):
    with connect("host") as host:
        cpu, gpu = benchmark(host, [tiny_model], backends=("cpu", "gpu"),
                             energy=EnergySettings(baseline_s=0.1), **QUICK)
    assert cpu.status == "ok" and cpu.device["transport"] == "host"
    assert cpu.measurement.binary == "python -m device_bench.host_benchmark"
    assert cpu.energy is not None and cpu.energy.energy_per_inference_j is None
    assert cpu.energy.reason
    assert gpu.status == "unsupported" and "GPU" in gpu.reason


def test_cooldown_between_runs_and_op_profiling_request(tiny_model):
    with connect("host") as host:
        first, second = benchmark(host, [tiny_model], threads=(1, 2), run=RunSettings(
            runs=5, min_secs=0.2, warmup_min_secs=0.1, cooldown_s=0.6, op_profiling=True))
    gap = (datetime.fromisoformat(second.measurement.started_at)
           - datetime.fromisoformat(first.measurement.finished_at)).total_seconds()
    assert gap >= 0.6
    assert "--enable_op_profiling=true" in first.measurement.command
    # LiteRT's profiler answers on the host: one Run Order row per op, none warned missing.
    run_rows = [r for r in first.op_profile if r.table == "Run Order"]
    assert run_rows and not any("no per-op table" in w for w in first.warnings)


def test_public_names():
    import device_bench

    for name in ("benchmark", "BenchmarkResult", "LatencyStats", "compare", "read_jsonl",
                 "write_jsonl", "EnergyResult", "compute_energy", "plot_latency", "BACKENDS",
                 "RunSettings", "EnergySettings"):
        assert name in device_bench.__all__ and getattr(device_bench, name) is not None


def test_argument_validation(tiny_model, tmp_path):
    with connect("host") as host:
        with pytest.raises(InputError, match="Received: backends=\\('tpu',\\)"):
            benchmark(host, [tiny_model], backends=("tpu",))
        with pytest.raises(InputError, match="threads"):
            benchmark(host, [tiny_model], threads=(0,))
        with pytest.raises(InputError, match="Received: runs=0"):
            RunSettings(runs=0)
        with pytest.raises(InputError, match="Received: battery='a/b'"):
            EnergySettings(battery="a/b")
        with pytest.raises(InputError, match="EnergySettings"):
            benchmark(host, [tiny_model], energy=True)
        with pytest.raises(InputError, match="not found"):
            benchmark(host, [tmp_path / "missing.tflite"])
        with pytest.raises(InputError, match="Received: cache_dir=3"):
            ToolSettings(cache_dir=3)
        with pytest.raises(InputError, match="ToolSettings"):
            benchmark(host, [tiny_model], tool=Path("benchmark_model"))
        with pytest.raises(InputError, match="non-empty list"):
            benchmark(host, tiny_model)
        bogus = tmp_path / "bogus.tflite"
        bogus.write_bytes(b"\x00" * 64)
        with pytest.raises(ModelFormatError, match="TFL3"):
            benchmark(host, [bogus])


def test_old_tool_without_result_file_falls_back_to_the_stats_line(loopback, direct, tiny_model, cache):
    configure(loopback.root, result_file="unsupported")
    (result,) = benchmark(direct, [tiny_model], tool=ToolSettings(cache_dir=cache), **QUICK)
    lat = result.latency
    assert result.status == "ok" and lat.source == "summary" and lat.count >= 5
    assert lat.p5_us <= lat.p50_us <= lat.p95_us and lat.p90_us is None and lat.p99_us is None
    assert "stats line" in lat.unavailable
    assert any("no readable result file" in w for w in result.warnings)
