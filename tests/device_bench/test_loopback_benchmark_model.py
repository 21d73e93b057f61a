"""The loopback `benchmark_model`: LiteRT's binary BenchmarkResult, the old tool, the load.

The result file is checked with a decoder written here from
`tflite/tools/benchmark/proto/benchmark_result.proto` (field numbers and wire types), not with
the protobuf runtime the fake encodes with.
"""

from __future__ import annotations

import re
import shutil
import struct

import pytest
from adb_shell.adb_device import AdbDeviceTcp

from device_bench.testing import LoopbackDevice, RailsProfile, rails_truth
from device_bench.testing.fake_benchmark_model import configure, install
from mobile_opt.errors import InputError

TOOL = "/data/local/tmp/benchmark_model"
MODEL = "/data/local/tmp/m.tflite"
RESULT = "/data/local/tmp/result.pb"

# benchmark_result.proto, as (field number -> name, wire kind); "msg:<Name>" nests.
SCHEMA = {
    "BenchmarkResult": {1: ("name", "str"), 2: ("latency_metrics", "msg:LatencyMetrics"),
                        3: ("memory_metrics", "msg:MemoryMetrics"), 4: ("misc_metrics", "msg:MiscMetrics")},
    "LatencyMetrics": {i + 1: (n, "float") for i, n in enumerate((
        "avg_ms", "min_ms", "max_ms", "stddev_ms", "median_ms", "p5_ms", "p95_ms", "init_ms",
        "first_inference_ms", "average_warm_up_ms"))},
    "MemoryMetrics": {1: ("init_footprint_kb", "int"), 2: ("overall_footprint_kb", "int"), 3: ("peak_mem_mb", "float")},
    "MiscMetrics": {1: ("model_size_mb", "float"), 2: ("num_runs", "int"), 3: ("num_warmup_runs", "int"),
                    4: ("model_throughput_in_mb_per_sec", "float")},
}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def decode(buf: bytes, message: str = "BenchmarkResult") -> dict:
    """A proto2 wire-format decoder for the schema above; unknown fields fail the test."""
    fields, out, i = SCHEMA[message], {}, 0
    while i < len(buf):
        key, i = _varint(buf, i)
        name, kind = fields[key >> 3]
        wire = key & 7
        if kind == "float":
            assert wire == 5, (name, wire)
            out[name] = struct.unpack_from("<f", buf, i)[0]
            i += 4
        elif kind == "int":
            assert wire == 0, (name, wire)
            out[name], i = _varint(buf, i)
        else:
            assert wire == 2, (name, wire)
            size, i = _varint(buf, i)
            chunk = buf[i : i + size]
            i += size
            out[name] = chunk.decode() if kind == "str" else decode(chunk, kind.split(":", 1)[1])
    return out


@pytest.fixture
def device(loopback: LoopbackDevice, tiny_model, tmp_path) -> LoopbackDevice:
    shutil.copy(install(tmp_path / "cache"), loopback.device_path(TOOL))
    shutil.copy(tiny_model, loopback.device_path(MODEL))
    return loopback


def _run(device: LoopbackDevice, *flags: str) -> str:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    try:
        command = " ".join([TOOL, f"--graph={MODEL}", "--warmup_min_secs=0", "--min_secs=0", *flags])
        return client.shell(f"{command}; echo exit=$?", read_timeout_s=120)
    finally:
        client.close()


def _stats(out: str) -> list[dict[str, int]]:
    return [
        {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)(?:\s|$)", line)}
        for line in re.findall(r"^INFO: (count=.*)$", out, re.MULTILINE)
    ]


def test_result_file_is_litert_benchmark_result_proto(device):
    out = _run(device, "--num_runs=30", "--warmup_runs=2", f"--result_file_path={RESULT}")
    assert out.rstrip().endswith("exit=0"), out
    assert re.search(r"INFO: Saving benchmark result to: \S+/data/local/tmp/result\.pb", out)
    assert re.search(r"INFO: Saved benchmark result to: \S+/data/local/tmp/result\.pb", out)
    result = decode(device.device_path(RESULT).read_bytes())
    assert "name" not in result  # the tool leaves it unset
    latency, misc, memory = result["latency_metrics"], result["misc_metrics"], result["memory_metrics"]
    warmup, timed = _stats(out)
    assert misc["num_runs"] == timed["count"] >= 30
    assert misc["num_warmup_runs"] == warmup["count"] >= 2
    # The summary agrees with the tool's own stats line (µs there, float32 ms here).
    if "p95" in timed:
        for field, key in (("min_ms", "min"), ("max_ms", "max"), ("stddev_ms", "std"), ("median_ms", "median"),
                           ("p5_ms", "p5"), ("p95_ms", "p95")):
            assert latency[field] == pytest.approx(timed[key] / 1000, rel=1e-6), field
    else:  # all runs took the same whole number of µs
        assert latency["min_ms"] == latency["max_ms"] == pytest.approx(timed["curr"] / 1000, rel=1e-6)
    assert latency["min_ms"] <= latency["p5_ms"] <= latency["median_ms"] <= latency["p95_ms"] <= latency["max_ms"]
    assert latency["min_ms"] <= latency["avg_ms"] <= latency["max_ms"]
    timings = re.search(r"Init: (\d+), First inference: (\d+), Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)", out)
    assert latency["init_ms"] == pytest.approx(int(timings.group(1)) / 1000, rel=1e-6)
    assert latency["first_inference_ms"] == pytest.approx(int(timings.group(2)) / 1000, rel=1e-6)
    assert latency["average_warm_up_ms"] == pytest.approx(float(timings.group(3)) / 1000, rel=1e-5)
    # The tool's Stat holds whole µs per run; the printed average is over the unrounded runs.
    assert abs(latency["avg_ms"] * 1000 - float(timings.group(4))) <= 0.5 + 1e-3
    assert misc["model_size_mb"] == pytest.approx(device.device_path(MODEL).stat().st_size / 1e6, rel=1e-6)
    assert misc["model_throughput_in_mb_per_sec"] > 0
    assert memory["overall_footprint_kb"] >= 0 and "init_footprint_kb" in memory
    # No per-run samples in the file: the proto has no such field.
    assert set(latency) == {name for name, _ in SCHEMA["LatencyMetrics"].values()}


def test_failed_run_writes_no_result(device):
    out = _run(device, "--graph=/data/local/tmp/missing.tflite", f"--result_file_path={RESULT}")
    assert "ERROR: Benchmarking failed." in out and out.rstrip().endswith("exit=1")
    assert not device.device_path(RESULT).exists()


def test_old_tool_leaves_the_flag_unconsumed_and_writes_nothing(device):
    configure(device.root, result_file="unsupported")
    out = _run(device, "--num_runs=5", f"--result_file_path={RESULT}")
    assert out.rstrip().endswith("exit=0"), out
    lines = out.splitlines()
    warn = next(i for i, line in enumerate(lines) if "Unconsumed cmdline flags" in line)
    assert re.fullmatch(r"WARN: Unconsumed cmdline flags: --result_file_path=\S+/data/local/tmp/result\.pb", lines[warn])
    assert lines[warn - 1] == "INFO: STARTING!"
    assert _stats(out)[-1]["count"] >= 5 and "Saving benchmark result" not in out
    assert not device.device_path(RESULT).exists()


def test_the_run_loads_the_battery(device):
    _run(device, "--num_runs=10", "--min_secs=0.3", f"--result_file_path={RESULT}")
    transitions = device.battery_truth().transitions
    assert [t.load for t in transitions] == [True, False]
    assert transitions[1].t_monotonic > transitions[0].t_monotonic


@pytest.mark.parametrize("loopback", [{"rails": RailsProfile()}], indirect=True)
@pytest.mark.parametrize(("gpu", "flags", "kind", "rail"), [
    ("unsupported", (), "cpu", "S2M_VDD_CPUCL2"),
    ("fp16", ("--use_gpu=true",), "gpu", "S2S_VDD_G3D"),
])
def test_the_run_loads_the_rails_of_its_backend(device, gpu, flags, kind, rail):
    configure(device.root, gpu=gpu)
    out = _run(device, "--num_runs=10", "--min_secs=0.3", *flags)
    assert out.rstrip().endswith("exit=0"), out
    steps = rails_truth(device.root).steps
    assert [s.loads for s in steps] == [(), (kind,), ()]
    assert steps[1].power_uw[rail] > steps[0].power_uw[rail]


def test_configure_validates(tmp_path):
    with pytest.raises(InputError, match="result_file"):
        configure(tmp_path, result_file="text")
    with pytest.raises(InputError, match="gpu"):
        configure(tmp_path, gpu="maybe")
