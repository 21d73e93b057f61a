"""The host benchmark program: official flags and output format, real LiteRT runs."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time

import numpy as np
import pytest

from device_bench import host_benchmark, result_proto
from device_bench.benchmark_output import parse



def run(*flags: str, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = host_benchmark.run(list(flags), out=out, **kwargs)
    return code, out.getvalue()


def test_timed_runs_samples_and_stats_agree(tiny_model, tmp_path):
    result_file, per_run = tmp_path / "result.pb", tmp_path / "samples.txt"
    code, text = run(f"--graph={tiny_model}", "--num_runs=25", "--min_secs=0",
                     "--warmup_runs=3", "--warmup_min_secs=0", "--num_threads=1",
                     f"--result_file_path={result_file}", f"--per_run_file_path={per_run}")
    assert code == 0, text
    samples = [float(v) for v in per_run.read_text().split()]
    proto = result_proto.decode(result_file.read_bytes())
    assert proto.num_runs == 25 and proto.num_warmup_runs == 3
    assert proto.min_ms == pytest.approx(min(samples) / 1000, rel=1e-6)
    assert proto.avg_ms == pytest.approx(sum(samples) / 25 / 1000, rel=1e-5)
    assert proto.p5_ms <= proto.median_ms <= proto.p95_ms <= proto.max_ms
    out = parse(text)
    assert len(samples) == out.inference.count == 25
    assert out.warmup.count == 3
    assert all(s > 0 for s in samples)
    # What the tool's rounding guarantees: the file holds each run to 3 decimals; min/max/curr
    # are whole µs; avg has 6 significant digits, or is `curr` when every run rounds to it.
    file_slack = 0.0005
    assert abs(out.inference.min_us - min(samples)) <= 0.5 + file_slack
    assert abs(out.inference.max_us - max(samples)) <= 0.5 + file_slack
    mean = sum(samples) / 25
    if out.inference.all_same:
        assert all(abs(s - out.inference.curr_us) <= 0.5 + file_slack for s in samples)
    else:
        assert abs(out.inference.avg_us - mean) <= 5e-6 * mean + file_slack
    assert out.inference_avg_us == pytest.approx(mean, rel=5e-6, abs=0.5 + file_slack)
    assert "INFO: Memory footprint delta from the start of the tool (MB): init=" in text


def test_min_secs_extends_and_max_secs_caps(tiny_model):
    start = time.monotonic()
    code, text = run(f"--graph={tiny_model}", "--num_runs=1", "--min_secs=0.3",
                     "--warmup_runs=1", "--warmup_min_secs=0")
    assert code == 0 and time.monotonic() - start >= 0.3
    assert parse(text).inference.count > 1

    code, text = run(f"--graph={tiny_model}", "--num_runs=100000000", "--max_secs=0.3",
                     "--warmup_runs=1", "--warmup_min_secs=0")
    assert code == 0  # stopped by max_secs: the count says so, not the wall clock
    assert 1 < parse(text).inference.count < 100000000


def test_run_delay_spaces_runs(tiny_model):
    start = time.monotonic()
    code, text = run(f"--graph={tiny_model}", "--num_runs=5", "--min_secs=0", "--warmup_runs=1",
                     "--warmup_min_secs=0", "--run_delay=0.05")
    assert code == 0 and time.monotonic() - start >= 6 * 0.05
    assert parse(text).inference.count == 5


@pytest.mark.parametrize(
    "flag, line",
    [("--use_gpu", "WARN: GPU acceleration is unsupported on this platform."),
     ("--use_nnapi=true", "WARN: NNAPI acceleration is unsupported on this platform.")],
)
def test_delegates_the_host_lacks_fail_with_the_tools_words(tiny_model, flag, line):
    code, text = run(f"--graph={tiny_model}", flag)
    assert code == 1
    assert line in text.splitlines()
    out = parse(text)
    assert out.benchmark_failed and out.inference is None
    assert list(out.unsupported_delegates) == [line.split()[1]]


def test_missing_model(tmp_path):
    code, text = run(f"--graph={tmp_path / 'nope.tflite'}")
    assert code == 1 and f"ERROR: Failed to mmap model {tmp_path / 'nope.tflite'}" in text


def test_not_a_model(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    code, text = run(f"--graph={bad}")
    assert code == 1 and "Failed to initialize the interpreter" in text


def test_require_full_delegation_refuses_cpu(tiny_model):
    code, text = run(f"--graph={tiny_model}", "--require_full_delegation=true")
    assert code == 1 and parse(text).cpu_fallback_disallowed


def test_xnnpack_off_op_profiling_and_unknown_flags(tiny_model):
    code, text = run(f"--graph={tiny_model}", "--use_xnnpack=false", "--enable_op_profiling",
                     "--num_runs=3", "--min_secs=0", "--warmup_min_secs=0", "--bogus_flag=1")
    assert code == 0, text
    assert "WARN: Unconsumed cmdline flags: --bogus_flag=1" in text
    assert "INFO: Use xnnpack: [0]" in text
    parsed = parse(text)
    assert parsed.inference.count == 3
    # Builtin kernels: one row per .tflite operator, named `[outputs]:index` as the tool names them.
    rows = [r for r in parsed.op_profile if r.table == "Run Order"]
    assert [r.node_type for r in rows] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert [r.name.rsplit(":", 1)[1] for r in rows] == ["0", "1", "2"]
    assert all(r.times_called == 1 and r.avg_ms >= 0 for r in rows)
    assert "Op profiling: LiteRT's CompiledModel profiler, 3 runs" in text


def test_run_context_wraps_warmup_and_timed_runs_only(tiny_model):
    events = []

    @contextlib.contextmanager
    def load():
        events.append("on")
        yield
        events.append("off")

    code, text = run(f"--graph={tiny_model}", "--num_runs=2", "--min_secs=0",
                     "--warmup_min_secs=0", run_context=load)
    assert code == 0 and events == ["on", "off"]


@pytest.mark.parametrize(
    "dtype, low, high",
    [(np.float32, -0.5, 0.5), (np.int8, -127, 127), (np.uint8, 0, 254), (np.int32, 0, 99),
     (np.int64, 0, 99), (np.bool_, 0, 1)],
)
def test_random_inputs_use_the_tools_ranges(dtype, low, high):
    data = host_benchmark._random_input({"dtype": dtype, "shape": [2000]}, np.random.default_rng(1))
    assert data.dtype == dtype and data.shape == (2000,)
    assert data.astype(np.float64).min() >= low and data.astype(np.float64).max() <= high


def test_module_entry_point(tiny_model):
    proc = subprocess.run(
        [sys.executable, "-m", "device_bench.host_benchmark", f"--graph={tiny_model}",
         "--num_runs=2", "--min_secs=0", "--warmup_min_secs=0"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("INFO: STARTING!")
    assert parse(proc.stdout).inference.count == 2
