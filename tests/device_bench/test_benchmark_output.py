"""benchmark_output.parse: every output variant of TFLite's benchmark_model, written by hand
from the tool's format strings, plus the real output of our host benchmark."""

from __future__ import annotations

import subprocess
import sys

import pytest

from device_bench.benchmark_output import parse


# A current Android build, CPU run (p5/median/p95 present, C++ stream formatting of doubles).
CURRENT_CPU = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/mobilenet.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Loaded model /data/local/tmp/mobilenet.tflite
INFO: The input model file size (MB): 16.9008
INFO: Initialized session in 41.214ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=22 first=30215 curr=22019 min=21877 max=30215 avg=22794.1 std=1711 p5=21890 median=22394 p95=24106
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=22158 curr=22420 min=21803 max=1.23457e+06 avg=46512.3 std=171220 p5=21850 median=22301 p95=23770
INFO: Inference timings in us: Init: 41214, First inference: 30215, Warmup (avg): 22794.1, Inference (avg): 46512.3
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=33.6367 overall=41.0508
INFO: Overall peak memory footprint (MB) via periodic monitoring: 48.8633
"""

# An old build: no percentiles, "Average inference timings", no memory lines.
OLD_CPU = """\
STARTING!
Min num runs: [50]
Graph: [model.tflite]
Loaded model model.tflite
Initialized session in 2.05ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=5012

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=210 first=4977 curr=4690 min=4601 max=5321 avg=4755.23 std=119

Average inference timings in us: Warmup: 5012, Init: 2050, First inference: 5012, Warmup (avg): 5012, Inference (avg): 4755.23
"""

ALL_SAME = """\
INFO: Running benchmark for at least 3 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=3 curr=900(all same)
INFO: Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=0
"""

GPU_PARTIAL = """\
INFO: Use gpu: [1]
INFO: Created TensorFlow Lite delegate for GPU.
INFO: GPU delegate created.
ERROR: Following operations are not supported by GPU delegate:
CUSTOM TFLite_Detection_PostProcess: Operation is not supported.
SQUEEZE: Operation is not supported.
97 operations will run on the GPU, and the remaining 200 operations will run on the CPU.
INFO: Initialized OpenCL-based API.
INFO: Created 1 GPU delegate kernels.
INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=80 first=15000 curr=6000 min=5900 max=15000 avg=6200 std=1000
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=170 first=6010 curr=5990 min=5880 max=6400 avg=6012.5 std=80
"""

GPU_FULL = """\
INFO: Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate.
"""

GPU_NONE = """\
INFO: Though GPU delegate is explicitly applied, the model graph will not be executed by the delegate.
"""

GPU_REJECTED = """\
INFO: Created TensorFlow Lite delegate for GPU.
ERROR: TfLiteGpuDelegate Init: MUL: Expected a 3D tensor of shape HxWxC or a 4D tensor of shape 1xHxWxC but got 2
ERROR: TfLiteGpuDelegate Prepare: delegate is not initialized
ERROR: Node number 12 (TfLiteGpuDelegateV2) failed to prepare.
ERROR: Restored original execution plan after delegate application failure.
ERROR: Failed to apply GPU delegate.
ERROR: Benchmarking failed.
"""

GPU_UNSUPPORTED_PLATFORM = """\
INFO: Use gpu: [1]
WARN: The GPU delegate compile options are only supported on Android or iOS platforms.
WARN: GPU acceleration is unsupported on this platform.
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=100 curr=100 min=90 max=120 avg=101 std=5
"""

NNAPI = """\
INFO: Use nnapi: [1]
INFO: nnapi accelerator name: [google-edgetpu] (Available: google-edgetpu,nnapi-reference)
INFO: NNAPI accelerators available: [google-edgetpu,nnapi-reference]
INFO: Explicitly applied NNAPI delegate, and the model graph will be completely executed by the delegate.
"""

FULL_DELEGATION_REFUSED = """\
INFO: Explicitly applied NNAPI delegate, and the model graph will be partially executed by the delegate w/ 2 delegate kernels.
ERROR: Disallowed CPU fallback detected.
ERROR: Benchmarking failed.
"""

OP_PROFILE_STDOUT = (
    "INFO: Profiling Info for Benchmark Initialization:\n"
    "============================== Run Order ==============================\n"
    "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
    "\t ModifyGraphWithDelegate\t            0.000\t    1.250\t    1.250\t 89.286%\t 89.286%\t   812.000\t        1\tModifyGraphWithDelegate/0\n"
    "\t         AllocateTensors\t            1.251\t    0.150\t    0.150\t 10.714%\t100.000%\t     4.000\t        1\tAllocateTensors/0\n"
    "\n"
    "Timings (microseconds): count=1 curr=1400\n"
    "Memory (bytes): count=0\n"
    "2 nodes observed\n"
    "\n"
    "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
    "============================== Run Order ==============================\n"
    "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
    "\t                 CONV_2D\t            0.000\t    0.412\t    0.398\t 66.333%\t 66.333%\t     0.000\t        1\t[sequential/conv2d/Relu]:0\n"
    "\t       FULLY_CONNECTED\t            0.399\t    0.205\t    0.202\t 33.667%\t100.000%\t     0.000\t        1\t[sequential/dense/BiasAdd]:1\n"
    "\n"
    "============================== Top by Computation Time ==============================\n"
    "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
    "\t                 CONV_2D\t            0.000\t    0.412\t    0.398\t 66.333%\t 66.333%\t     0.000\t        1\t[sequential/conv2d/Relu]:0\n"
    "\n"
    "Number of nodes executed: 2\n"
    "============================== Summary by node type ==============================\n"
    "\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]\n"
    "\t                 CONV_2D\t        1\t     0.398\t    66.333%\t    66.333%\t     0.000\t        1\n"
    "\t         FULLY_CONNECTED\t        1\t     0.202\t    33.667%\t   100.000%\t     0.000\t        1\n"
    "\n"
    "Timings (microseconds): count=50 first=620 curr=598 min=590 max=640 avg=600.2 std=9\n"
    "Memory (bytes): count=0\n"
    "2 nodes observed\n"
)

# CSV mode, older layout without the [start] column; a name containing a comma.
OP_PROFILE_CSV = """\
Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
node type, first, avg_ms, %, cdf%, mem KB, times called, name
TfLiteXNNPackDelegate, 0.55, 0.51, 85%, 85%, 0, 1, [model/conv, dense]:7
SOFTMAX, 0.09, 0.09, 15%, 100%, 0, 1, [model/softmax]:8

"""


def test_current_build_cpu_run():
    out = parse(CURRENT_CPU)
    assert out.model_size_mb == pytest.approx(16.9008)
    assert out.init_ms == pytest.approx(41.214)
    assert out.warmup.count == 22 and out.warmup.first_us == 30215
    inf = out.inference
    assert (inf.count, inf.min_us, inf.max_us) == (50, 21803, 1.23457e06)
    assert (inf.p5_us, inf.median_us, inf.p95_us) == (21850, 22301, 23770)
    assert inf.avg_us == pytest.approx(46512.3) and inf.std_us == 171220
    assert out.init_us == 41214 and out.first_inference_us == 30215
    assert out.warmup_avg_us == pytest.approx(22794.1)
    assert out.inference_avg_us == pytest.approx(46512.3)
    assert (out.memory_init_mb, out.memory_overall_mb) == (pytest.approx(33.6367), pytest.approx(41.0508))
    assert out.memory_peak_mb == pytest.approx(48.8633)
    assert out.requested_runs == 50 and out.requested_min_secs == 1
    assert not out.benchmark_failed and out.errors == ()


def test_old_build_without_prefix_or_percentiles():
    out = parse(OLD_CPU)
    assert out.warmup.all_same and out.warmup.count == 1 and out.warmup.avg_us == 5012
    assert out.inference.count == 210 and out.inference.avg_us == pytest.approx(4755.23)
    assert out.inference.p5_us is None and out.inference.median_us is None
    assert out.inference_avg_us == pytest.approx(4755.23) and out.init_us == 2050
    # Absent fields are None, never 0.
    assert out.memory_init_mb is None and out.memory_peak_mb is None and out.model_size_mb is None


def test_all_same_and_count_zero():
    out = parse(ALL_SAME)
    assert out.warmup.all_same and out.warmup.count == 3
    assert out.warmup.min_us == out.warmup.max_us == out.warmup.median_us == 900
    assert out.warmup.std_us == 0
    assert out.inference.count == 0 and out.inference.avg_us is None and out.inference.min_us is None


def test_stats_line_without_running_lines_is_taken_in_order():
    out = parse("count=5 first=1 curr=2 min=1 max=3 avg=2 std=1\n")
    assert out.warmup is None and out.inference.count == 5


def test_windows_line_ends():
    out = parse(CURRENT_CPU.replace("\n", "\r\n"))
    assert out.inference.count == 50 and out.memory_peak_mb == pytest.approx(48.8633)


def test_gpu_partial_delegation_and_unsupported_ops():
    out = parse(GPU_PARTIAL)
    (gpu,) = out.delegates
    assert (gpu.name, gpu.coverage, gpu.kernels) == ("GPU", "partial", 3)
    assert out.gpu_unsupported_ops == (
        ("CUSTOM TFLite_Detection_PostProcess", "Operation is not supported."),
        ("SQUEEZE", "Operation is not supported."),
    )
    assert (out.gpu_ops_on_gpu, out.gpu_ops_on_cpu) == (97, 200)
    assert out.inference.count == 170
    assert out.errors == ("Following operations are not supported by GPU delegate:",)


@pytest.mark.parametrize(
    "text, coverage, kernels",
    [(GPU_FULL, "full", 1), (GPU_NONE, "none", 0)],
)
def test_gpu_full_and_not_executed(text, coverage, kernels):
    (gpu,) = parse(text).delegates
    assert (gpu.name, gpu.coverage, gpu.kernels) == ("GPU", coverage, kernels)


def test_gpu_rejected_by_delegate():
    out = parse(GPU_REJECTED)
    assert out.delegate_failures == ("GPU",)
    assert out.benchmark_failed and out.delegates == ()
    assert "Node number 12 (TfLiteGpuDelegateV2) failed to prepare." in out.errors
    assert out.inference is None


def test_gpu_unsupported_on_platform_even_when_cpu_numbers_follow():
    out = parse(GPU_UNSUPPORTED_PLATFORM)
    assert out.unsupported_delegates == {"GPU": "GPU acceleration is unsupported on this platform."}
    assert out.delegates == ()
    assert out.inference.count == 50  # the real tool goes on with the CPU: the caller must not


def test_nnapi_accelerators_and_full_delegation():
    out = parse(NNAPI)
    assert out.nnapi_accelerators == ("google-edgetpu", "nnapi-reference")
    assert out.delegates[0].name == "NNAPI" and out.delegates[0].coverage == "full"


def test_nnapi_accelerators_from_parameter_line_only():
    out = parse("INFO: nnapi accelerator name: [] (Available: qti-dsp,qti-gpu)\n")
    assert out.nnapi_accelerators == ("qti-dsp", "qti-gpu")


def test_require_full_delegation_refused():
    out = parse(FULL_DELEGATION_REFUSED)
    assert out.cpu_fallback_disallowed and out.benchmark_failed
    assert out.delegates[0].kernels == 2


def test_op_profiling_tab_separated():
    out = parse(OP_PROFILE_STDOUT)
    init_rows = [r for r in out.op_profile if r.section == "init"]
    run_rows = [r for r in out.op_profile if r.section == "run" and r.table == "Run Order"]
    assert [r.node_type for r in init_rows] == ["ModifyGraphWithDelegate", "AllocateTensors"]
    assert init_rows[0].mem_kb == 812 and init_rows[0].first_ms == pytest.approx(1.25)
    conv, dense = run_rows
    assert conv.name == "[sequential/conv2d/Relu]:0" and conv.avg_ms == pytest.approx(0.398)
    assert conv.percent == pytest.approx(66.333) and dense.cdf_percent == pytest.approx(100)
    assert dense.start_ms == pytest.approx(0.399) and dense.times_called == 1
    top = [r for r in out.op_profile if r.table == "Top by Computation Time"]
    assert len(top) == 1
    summary = {r.node_type: r for r in out.op_type_summary}
    assert summary["CONV_2D"].count == 1 and summary["FULLY_CONNECTED"].percent == pytest.approx(33.667)
    # The summary's "Timings (microseconds): count=…" lines are not benchmark stats.
    assert out.inference is None and out.warmup is None


def test_op_profiling_csv_without_start_column():
    rows = parse(OP_PROFILE_CSV).op_profile
    assert [r.node_type for r in rows] == ["TfLiteXNNPackDelegate", "SOFTMAX"]
    assert rows[0].name == "[model/conv, dense]:7"
    assert rows[0].start_ms is None and rows[0].avg_ms == pytest.approx(0.51)
    assert rows[0].percent == 85 and rows[1].cdf_percent == 100


def test_empty_and_unrelated_text():
    out = parse("")
    assert out.inference is None and out.init_ms is None and out.delegates == ()
    assert parse("random noise\nmore = noise\n").to_dict()["inference"] is None


def test_rejects_bytes():
    with pytest.raises(TypeError, match="Received"):
        parse(b"count=1")  # type: ignore[arg-type]


def test_parses_real_host_benchmark_output(tiny_model):
    proc = subprocess.run(
        [sys.executable, "-m", "device_bench.host_benchmark", f"--graph={tiny_model}",
         "--num_runs=7", "--min_secs=0", "--warmup_runs=2", "--warmup_min_secs=0",
         "--report_peak_memory_footprint=true"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = parse(proc.stdout)
    assert out.inference.count == 7 and out.warmup.count == 2
    assert out.inference.min_us <= out.inference.median_us <= out.inference.max_us
    assert out.init_ms is not None and out.init_ms > 0
    assert out.memory_peak_mb is not None and out.memory_overall_mb is not None
    assert out.model_size_mb == pytest.approx(tiny_model.stat().st_size / 1e6, rel=1e-4)
