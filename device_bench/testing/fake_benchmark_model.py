"""The loopback device's `benchmark_model`: the host benchmark with the simulated load on.

On a `LoopbackDevice` the benchmark binary is a tiny sh wrapper (written by `install`) that
execs `python -m device_bench.testing.fake_benchmark_model "$@"`. It runs
`device_bench.host_benchmark` with the loopback battery's load switched on during the warm-up
and timed runs (`battery_load()`), so energy measurement can be checked against the
battery's ground truth. The load's kind (`battery_load(kind)`) tells the ODPM rails
(`device_bench.testing.rails`) what runs: "gpu" with `--use_gpu` on a configured working GPU
("fp16"/"partial"), "nnapi" with `--use_nnapi`, else "cpu".

`--result_file_path` behaves like current LiteRT's tool (`tflite/tools/benchmark/
benchmark_tflite_model.cc` `ProtoBenchmarkReporter`, `litert/tools/benchmark_litert_model.h`):
after a successful run it writes a binary `tflite.tools.benchmark.BenchmarkResult`
(`tflite/tools/benchmark/proto/benchmark_result.proto`) holding summary latencies in ms
(avg, min, max, stddev, median, p5, p95, init, first inference, warm-up average), memory and
misc metrics — no per-run samples — and logs "Saving/Saved benchmark result to: <path>".
`configure(root, result_file="unsupported")` plays an old TFLite build that does not know the
flag: it warns `Unconsumed cmdline flags: --result_file_path=…` and writes nothing.

GPU (`configure(root, gpu=…)`; `device_bench.testing._fake_gpu` says how it computes):
- "unsupported" (default, as on the host): `--use_gpu` fails with "GPU acceleration is
  unsupported on this platform.";
- "reject": the delegate is created but cannot be applied, as the Android tool reports it;
- "fp16": a working GPU that takes every float op. With `--gpu_precision_loss_allowed` (default
  true) it really computes in fp16 (outputs differ from the CPU's), with `=false` in fp32;
- "partial": the same GPU taking only the op types in `gpu_ops` (default
  `_fake_gpu.DEFAULT_PARTIAL_OPS`); the rest runs on the CPU, and the tool says "partially
  executed by the delegate w/ N delegate kernels." (only the largest partition is taken unless
  `--max_delegated_partitions` says more). NNAPI stays unsupported.

Without `--use_gpu` the model runs on LiteRT's CPU kernels exactly as `host_benchmark` runs it
(the same Interpreter, XNNPACK unless `--use_xnnpack=false`), so its outputs are bit-identical to
a host Interpreter built with the same kernels; int8 results do not depend on `--num_threads`.

Ground truth: every run appends one JSON line to `<root>/proc/loopback/fake_benchmark_model.runs.jsonl`
(`runs(root)` reads them), with what the tool really did:
`{"argv": [...], "flags": {"use_gpu": "1", ...}, "exit": 0 | 1 | 134, "backend": "cpu" | "gpu",
"precision": "fp32" | "fp16", "ops_total": 4, "ops_delegated": 1, "delegate_kernels": 1,
"inputs": [{"name", "shape", "dtype", "source": "file" | "random", "path", "sha256"}],
"output": {"path", "bytes", "sha256"} | null}`. Paths are device paths (the sandbox root removed);
`sha256` is of the tensor's raw bytes as set (strings: joined by NUL), and of the output file.

Example:
    binary = install(tmp_path / "cache", abi="arm64-v8a")
    benchmark(device, [model], tool=ToolSettings(cache_dir=tmp_path / "cache"))
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import resource
import shlex
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from device_bench import host_benchmark
from device_bench._tool_io import ToolFatal
from device_bench.testing._battery import battery_load
from mobile_opt.errors import InputError

__all__ = ["configure", "install", "main", "runs"]

_CONFIG = Path("proc/loopback/fake_benchmark_model.json")
RUNS_LOG = Path("proc/loopback/fake_benchmark_model.runs.jsonl")
_GPU_MODES = ("unsupported", "reject", "fp16", "partial")
_RESULT_FILE_MODES = ("proto", "unsupported")
_RESULT_FLAG = "--result_file_path="
_ABORT_EXIT = 134  # what sh reports for a SIGABRT
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
        cache_dir: a benchmark-binary cache directory (as `ToolSettings(cache_dir=…)` takes).
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


def configure(root: Path, *, gpu: str = "unsupported", gpu_ops: Sequence[str] | None = None,
              result_file: str = "proto") -> None:
    """Sets how the fake tool on the loopback device whose sandbox is `root` behaves.

    Args:
        root: the `LoopbackDevice.root`.
        gpu: "unsupported" (default: creation fails, as on a host), "reject" (created, but
            applying it to the graph fails, as on a phone whose GPU refuses the model), "fp16"
            (takes every float op; fp16 unless `--gpu_precision_loss_allowed=false`) or
            "partial" (takes only the op types in `gpu_ops`).
        gpu_ops: op type names ("CONV_2D", ...) the "partial" GPU takes (default None:
            `_fake_gpu.DEFAULT_PARTIAL_OPS`).
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
    if gpu_ops is not None and (gpu != "partial" or isinstance(gpu_ops, str)):
        raise InputError(f"gpu_ops is a list of op type names for gpu='partial'. Received: gpu={gpu!r}, "
                         f"gpu_ops={gpu_ops!r}")
    path = Path(root) / _CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    ops = list(gpu_ops) if gpu_ops is not None else None
    path.write_text(json.dumps({"gpu": gpu, "gpu_ops": ops, "result_file": result_file}), encoding="utf-8")


def runs(root: Path) -> list[dict]:
    """The ground-truth log: one dict per run of the fake tool on the device at `root`, oldest first."""
    path = Path(root) / RUNS_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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
    trace: dict = {}
    code = 1
    try:
        code = _main(args, _config(), trace)
    except ToolFatal:
        code = _ABORT_EXIT
    finally:
        _log_run(args, code, trace)
    if code == _ABORT_EXIT:
        # std::abort(), as TFLITE_LOG(FATAL) does (tflite/tools/logging.h); no core file.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.abort()
    sys.exit(code)


def _main(args: list[str], config: dict, trace: dict) -> int:
    gpu_requested = any(a in ("--use_gpu", "--use_gpu=true", "--use_gpu=1") for a in args)
    if gpu_requested and config.get("gpu") == "reject":
        sys.stdout.write("INFO: STARTING!\nINFO: Use gpu: [1]\n" + _GPU_REJECT)
        sys.stdout.flush()
        return 1
    gpu = _gpu(config)
    nnapi_requested = any(a in ("--use_nnapi", "--use_nnapi=true", "--use_nnapi=1") for a in args)
    kind = "gpu" if gpu_requested and gpu is not None else "nnapi" if nnapi_requested else "cpu"
    run_context = functools.partial(battery_load, kind)
    result_flags = [a for a in args if a.startswith(_RESULT_FLAG)]
    others = [a for a in args if not a.startswith(_RESULT_FLAG)]
    if config.get("result_file") == "unsupported":
        warning = f"WARN: Unconsumed cmdline flags: {' '.join(result_flags)}\n" if result_flags else ""
        tee = _Tee(sys.stdout, after_first_line=warning)
        return host_benchmark.run(others, out=tee, err=sys.stderr, run_context=run_context, gpu=gpu, trace=trace)
    result_path = result_flags[-1][len(_RESULT_FLAG):] if result_flags else ""
    return _run_with_proto(others, result_path, gpu, trace, run_context)


def _gpu(config: dict):
    """The GPU delegate the configured device has (None: "unsupported", as on the host)."""
    mode = config.get("gpu")
    if mode not in ("fp16", "partial"):
        return None
    from device_bench.testing import _fake_gpu

    ops = config.get("gpu_ops")
    supported = None if mode == "fp16" else set(ops if ops is not None else _fake_gpu.DEFAULT_PARTIAL_OPS)

    def apply(model: bytes, flags) -> _fake_gpu.Delegation:
        return _fake_gpu.delegate(model, supported=supported, precision_loss_allowed=flags.gpu_precision_loss_allowed,
                                  max_delegated_partitions=flags.max_delegated_partitions)

    return apply


def _device_path(path: str | None) -> str | None:
    root = os.environ.get("LOOPBACK_ROOT")
    if path and root:
        resolved, base = str(Path(path).resolve()), str(Path(root).resolve())
        if resolved.startswith(base + os.sep):
            return resolved[len(base):]
    return path


def _log_run(args: list[str], code: int, trace: dict) -> None:
    """Appends this run's ground truth to the device's runs log (see the module docstring)."""
    root = os.environ.get("LOOPBACK_ROOT")
    if not root:
        return
    flags = {}
    for arg in args:
        name, sep, value = arg.lstrip("-").partition("=")
        flags[name] = value if sep else "true"
    delegation = trace.get("delegation")
    on_gpu = delegation is not None and delegation.ops_delegated > 0
    output = trace.get("output")
    record = {
        "argv": args, "flags": flags, "exit": code,
        "backend": "gpu" if on_gpu else "cpu",
        "precision": delegation.precision if on_gpu else "fp32",
        "ops_total": delegation.ops_total if delegation is not None else _ops_total(flags.get("graph")),
        "ops_delegated": delegation.ops_delegated if delegation is not None else 0,
        "delegate_kernels": delegation.kernels if delegation is not None else 0,
        "inputs": [{**entry, "path": _device_path(entry["path"])} for entry in trace.get("inputs", [])],
        "output": {**output, "path": _device_path(output["path"])} if output else None,
    }
    path = Path(root) / RUNS_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:  # one write per line: runs never interleave mid-line
        fh.write(json.dumps(record) + "\n")


def _ops_total(graph: str | None) -> int | None:
    try:
        from device_bench.testing._fake_gpu import count_ops

        return count_ops(Path(graph).read_bytes()) if graph else None
    except (OSError, ValueError, IndexError):
        return None


def _run_with_proto(args: list[str], result_path: str, gpu, trace: dict, run_context) -> int:
    # host_benchmark writes one µs per line to its `--per_run_file_path` (not a LiteRT flag): a
    # private path here, outside the directories a client on the device sees.
    root = os.environ.get("LOOPBACK_ROOT")
    private = Path(root) / "proc/loopback" if root else None
    fd, samples_path = tempfile.mkstemp(prefix="benchmark_samples.", suffix=".txt", dir=private)
    os.close(fd)
    tee = _Tee(sys.stdout)
    try:
        code = host_benchmark.run([*args, f"--per_run_file_path={samples_path}"], out=tee, err=sys.stderr,
                                  run_context=run_context, gpu=gpu, trace=trace)
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
