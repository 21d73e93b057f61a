"""The loopback device's `benchmark_model`: the host benchmark with the simulated load on.

On a `LoopbackDevice` the benchmark binary is a tiny sh wrapper (written by `install`) that
execs `python -m device_bench.testing.fake_benchmark_model "$@"`. It runs
`device_bench.host_benchmark` with the loopback battery's load switched on during the warm-up
and timed runs (`battery_load()`), so energy measurement can be checked against the
battery's ground truth.

`--result_file_path` behaves like current LiteRT's tool (`tflite/tools/benchmark/
benchmark_tflite_model.cc` `ProtoBenchmarkReporter`, `litert/tools/benchmark_litert_model.h`):
after a successful run it writes a binary `tflite.tools.benchmark.BenchmarkResult`
(`tflite/tools/benchmark/proto/benchmark_result.proto`) holding summary latencies in ms
(avg, min, max, stddev, median, p5, p95, init, first inference, warm-up average), memory and
misc metrics — no per-run samples — and logs "Saving/Saved benchmark result to: <path>".
`configure(root, result_file="unsupported")` plays an old TFLite build that does not know the
flag: it warns `Unconsumed cmdline flags: --result_file_path=…` and writes nothing.

A test can make the device's GPU delegate *reject* the model the way the real Android tool
reports it (`configure(root, gpu="reject")`); by default GPU and NNAPI are unsupported, as
on the host.

Example:
    binary = install(tmp_path / "cache", abi="arm64-v8a")
    benchmark(device, [model], cache_dir=tmp_path / "cache")
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from device_bench import host_benchmark
from device_bench.testing._battery import battery_load
from mobile_opt.errors import InputError

__all__ = ["configure", "install", "main"]

_CONFIG = Path("proc/loopback/fake_benchmark_model.json")
_GPU_MODES = ("unsupported", "reject")
_RESULT_FILE_MODES = ("proto", "unsupported")
_RESULT_FLAG = "--result_file_path="
_PROTO_PACKAGE = "tflite.tools.benchmark"

# What the Android tool prints when the GPU delegate is created but cannot take the graph.
_GPU_REJECT = """\
INFO: Created TensorFlow Lite delegate for GPU.
ERROR: Following operations are not supported by GPU delegate:
CUSTOM MobileOptFakeOp: Operation is not supported.
0 operations will run on the GPU, and the remaining 7 operations will run on the CPU.
ERROR: TfLiteGpuDelegate Init: No EGL error, but eglChooseConfig failed.
ERROR: TfLiteGpuDelegate Prepare: delegate is not initialized
ERROR: Node number 7 (TfLiteGpuDelegateV2) failed to prepare.
ERROR: Restored original execution plan after delegate application failure.
ERROR: Failed to apply GPU delegate.
ERROR: Benchmarking failed.
"""


def install(cache_dir: Path, abi: str = "arm64-v8a") -> Path:
    """Writes the wrapper executable as `<cache_dir>/<abi>/benchmark_model`.

    Args:
        cache_dir: a benchmark-binary cache directory (as `benchmark(cache_dir=…)` takes).
        abi: the loopback device's `ro.product.cpu.abi` (default "arm64-v8a").

    Returns:
        The wrapper's path.
    """
    target = Path(cache_dir) / abi / "benchmark_model"
    target.parent.mkdir(parents=True, exist_ok=True)
    # The device runs it from its sandbox: make this checkout importable there too.
    package_root = str(Path(__file__).resolve().parents[2])
    target.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(package_root)}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.quote(sys.executable)} -m device_bench.testing.fake_benchmark_model "$@"\n',
        encoding="utf-8",
    )
    target.chmod(0o755)
    return target


def configure(root: Path, *, gpu: str = "unsupported", result_file: str = "proto") -> None:
    """Sets how the fake tool on the loopback device whose sandbox is `root` behaves.

    Args:
        root: the `LoopbackDevice.root`.
        gpu: "unsupported" (default: creation fails, as on a host) or "reject" (created, but
            applying it to the graph fails, as on a phone whose GPU refuses the model).
        result_file: "proto" (default: current LiteRT, a binary BenchmarkResult at
            `--result_file_path`) or "unsupported" (an old TFLite build: the flag is left
            unconsumed, a WARN line names it, no file is written).

    Raises:
        InputError: unknown mode.
    """
    if gpu not in _GPU_MODES:
        raise InputError(f"gpu must be one of {_GPU_MODES}. Received: gpu={gpu!r}")
    if result_file not in _RESULT_FILE_MODES:
        raise InputError(f"result_file must be one of {_RESULT_FILE_MODES}. Received: result_file={result_file!r}")
    path = Path(root) / _CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"gpu": gpu, "result_file": result_file}), encoding="utf-8")


def _config() -> dict:
    root = os.environ.get("LOOPBACK_ROOT")
    if not root:
        return {}
    try:
        return json.loads((Path(root) / _CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class _Tee(io.TextIOBase):
    """Passes the tool's lines through to stdout as they come, keeps a copy, and can add a
    line right after the first one (where the C++ tool warns about unconsumed flags)."""

    def __init__(self, out, after_first_line: str = "") -> None:
        self._out = out
        self._pending = after_first_line
        self.text = io.StringIO()

    def write(self, data: str) -> int:
        if self._pending and "\n" in data:
            head, _, rest = data.partition("\n")
            data = f"{head}\n{self._pending}{rest}"
            self._pending = ""
        self._out.write(data)
        self.text.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the wrapper: `benchmark_model` flags in, the tool's output out."""
    args = list(sys.argv[1:] if argv is None else argv)
    config = _config()
    gpu_requested = any(a in ("--use_gpu", "--use_gpu=true", "--use_gpu=1") for a in args)
    if gpu_requested and config.get("gpu") == "reject":
        sys.stdout.write("INFO: STARTING!\nINFO: Use gpu: [1]\n" + _GPU_REJECT)
        sys.stdout.flush()
        sys.exit(1)
    result_flags = [a for a in args if a.startswith(_RESULT_FLAG)]
    others = [a for a in args if not a.startswith(_RESULT_FLAG)]
    if config.get("result_file") == "unsupported":
        warning = f"WARN: Unconsumed cmdline flags: {' '.join(result_flags)}\n" if result_flags else ""
        tee = _Tee(sys.stdout, after_first_line=warning)
        sys.exit(host_benchmark.run(others, out=tee, run_context=battery_load))
    result_path = result_flags[-1][len(_RESULT_FLAG):] if result_flags else ""
    sys.exit(_run_with_proto(others, result_path))


def _run_with_proto(args: list[str], result_path: str) -> int:
    # host_benchmark writes one µs per line to its `--per_run_file_path` (not a LiteRT flag): a
    # private path here, outside the directories a client on the device sees.
    root = os.environ.get("LOOPBACK_ROOT")
    private = Path(root) / "proc/loopback" if root else None
    fd, samples_path = tempfile.mkstemp(prefix="benchmark_samples.", suffix=".txt", dir=private)
    os.close(fd)
    tee = _Tee(sys.stdout)
    try:
        code = host_benchmark.run([*args, f"--per_run_file_path={samples_path}"], out=tee,
                                  run_context=battery_load)
        if code != 0 or not result_path:
            return code
        samples = [int(round(float(line))) for line in Path(samples_path).read_text().split()]
    finally:
        os.unlink(samples_path)
    graph = next((a.split("=", 1)[1] for a in reversed(args) if a.startswith("--graph=")), "")
    payload = _benchmark_result(samples, tee.text.getvalue(), Path(graph)).SerializeToString()
    log = sys.stdout
    log.write(f"INFO: Saving benchmark result to: {result_path}\n")
    try:
        Path(result_path).write_bytes(payload)
    except OSError:
        # The C++ listener only logs the failure: the run itself succeeded.
        log.write(f"ERROR: Failed to save benchmark result to: {result_path}\n")
    else:
        log.write(f"INFO: Saved benchmark result to: {result_path}\n")
    log.flush()
    return 0


@lru_cache(maxsize=1)
def _result_class():
    """`tflite.tools.benchmark.BenchmarkResult`, built from the .proto's fields at run time
    (a private descriptor pool: no generated code vendored, no clash with other users)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    messages = {
        "LatencyMetrics": [(name, field.TYPE_FLOAT) for name in (
            "avg_ms", "min_ms", "max_ms", "stddev_ms", "median_ms", "p5_ms", "p95_ms", "init_ms",
            "first_inference_ms", "average_warm_up_ms")],
        "MemoryMetrics": [("init_footprint_kb", field.TYPE_INT64), ("overall_footprint_kb", field.TYPE_INT64),
                          ("peak_mem_mb", field.TYPE_FLOAT)],
        "MiscMetrics": [("model_size_mb", field.TYPE_FLOAT), ("num_runs", field.TYPE_INT32),
                        ("num_warmup_runs", field.TYPE_INT32), ("model_throughput_in_mb_per_sec", field.TYPE_FLOAT)],
        "BenchmarkResult": [("name", field.TYPE_STRING), ("latency_metrics", "LatencyMetrics"),
                            ("memory_metrics", "MemoryMetrics"), ("misc_metrics", "MiscMetrics")],
    }
    proto = descriptor_pb2.FileDescriptorProto(
        name="tflite/tools/benchmark/proto/benchmark_result.proto", package=_PROTO_PACKAGE, syntax="proto2"
    )
    for name, fields in messages.items():
        message = proto.message_type.add(name=name)
        for number, (field_name, kind) in enumerate(fields, start=1):
            entry = message.field.add(name=field_name, number=number, label=field.LABEL_OPTIONAL)
            if isinstance(kind, str):
                entry.type, entry.type_name = field.TYPE_MESSAGE, f".{_PROTO_PACKAGE}.{kind}"
            else:
                entry.type = kind
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PROTO_PACKAGE}.BenchmarkResult"))


def _percentile_us(ordered: list[int], p: int) -> int:
    # The rule host_benchmark's stats line uses, so the file and the log agree.
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


def _benchmark_result(samples_us: list[int], log: str, graph: Path):
    """The BenchmarkResult the C++ listener fills in from the run's statistics."""
    result = _result_class()()
    latency = result.latency_metrics
    timings = re.search(r"Init: (\d+), First inference: (-?\d+), Warmup \(avg\): ([^,]+),", log)
    if timings:
        latency.init_ms = int(timings.group(1)) / 1000.0
        latency.first_inference_ms = int(timings.group(2)) / 1000.0
        latency.average_warm_up_ms = float(timings.group(3)) / 1000.0
    if samples_us:
        count = len(samples_us)
        avg = sum(samples_us) / count
        ordered = sorted(samples_us)
        # The C++ tool fills the file and its timed stats line from one Stat, so the std is the
        # line's (whole µs; absent, i.e. 0, when all runs are the same): recomputing it from the
        # per-run file's 3-decimal values could truncate to the other side of a whole µs.
        stats_lines = re.findall(r"^INFO: count=.*$", log, re.MULTILINE)
        std_match = re.search(r" std=(\d+)", stats_lines[-1]) if stats_lines else None
        std = int(std_match.group(1)) if std_match else 0
        latency.avg_ms = avg / 1000.0
        latency.min_ms = ordered[0] / 1000.0
        latency.max_ms = ordered[-1] / 1000.0
        latency.stddev_ms = std / 1000.0
        latency.median_ms = _percentile_us(ordered, 50) / 1000.0
        latency.p5_ms = _percentile_us(ordered, 5) / 1000.0
        latency.p95_ms = _percentile_us(ordered, 95) / 1000.0
    init_mb = _number(r"Memory footprint delta from the start of the tool \(MB\): init=(\S+)", log)
    overall_mb = _number(r"Memory footprint delta from the start of the tool \(MB\): init=\S+ overall=(\S+)", log)
    if init_mb is not None and overall_mb is not None:
        result.memory_metrics.init_footprint_kb = round(init_mb * 1024)
        result.memory_metrics.overall_footprint_kb = round(overall_mb * 1024)
        peak = _number(r"Overall peak memory footprint \(MB\) via periodic monitoring: (\S+)", log)
        if peak is not None and peak > 0:
            result.memory_metrics.peak_mem_mb = peak
    misc = result.misc_metrics
    size_mb = graph.stat().st_size / 1e6 if graph.is_file() else 0.0
    misc.model_size_mb = size_mb
    misc.num_runs = len(samples_us)
    warmup_count = re.search(r"^INFO: count=(\d+)", log, re.MULTILINE)
    misc.num_warmup_runs = int(warmup_count.group(1)) if warmup_count else 0
    # BenchmarkResults::throughput_MB_per_second: input bytes per second of inference, MiB/s.
    if samples_us and sum(samples_us) > 0:
        misc.model_throughput_in_mb_per_sec = _input_bytes(graph) * len(samples_us) * 1e6 / sum(samples_us) / 2**20
    return result


def _input_bytes(graph: Path) -> int:
    from ai_edge_litert.interpreter import Interpreter

    import numpy as np

    details = Interpreter(model_path=str(graph)).get_input_details()
    return sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for d in details)


if __name__ == "__main__":
    main()
