"""`benchmark_model` for the host: same flags, same output, run with LiteRT's Python interpreter.

This is the host backend's benchmark program and the loopback device's `benchmark_model`.
It mirrors the official C++ tool closely enough that one parser (`benchmark_output.parse`)
and one orchestration serve both: `INFO:`-prefixed lines, a warm-up phase and a regular phase
each bounded by runs, minimum and maximum seconds, the stats line, `Inference timings in us`,
the memory footprint lines, and `--result_file_path` as current LiteRT writes it (a binary
`BenchmarkResult` proto, `device_bench.result_proto`), so one reader serves both. Our own
`--per_run_file_path` (not a LiteRT flag) also writes every timed run (µs, one per line), so
percentiles on the host come from raw samples, not from a summary.

The host has no GPU or NNAPI delegate: `--use_gpu` / `--use_nnapi` print the line the official
tool prints when such a delegate cannot be created ("… acceleration is unsupported on this
platform.") and exit non-zero instead of silently measuring the CPU.

Usage:
    python -m device_bench.host_benchmark --graph=model.tflite --num_runs=50 --num_threads=1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Callable, ContextManager, Sequence, TextIO

from device_bench import _tool_io, result_proto

__all__ = ["main", "run"]

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}
_PROFILED_RUNS = 100  # at most; enough for a mean per op, and the pass is short


def _flag_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, received {value!r}")


def _parser(android: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark_model",
        description="Benchmark a .tflite model on this host (flags of TFLite's benchmark_model).",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--graph", default="", help="path to the .tflite model")
    add("--num_runs", type=int, default=50, help="minimum number of timed runs")
    add("--min_secs", type=float, default=1.0, help="minimum seconds of timed runs")
    add("--max_secs", type=float, default=150.0, help="stop timed runs after this many seconds")
    add("--warmup_runs", type=int, default=1, help="minimum number of warm-up runs")
    add("--warmup_min_secs", type=float, default=0.5, help="minimum seconds of warm-up")
    add("--run_delay", type=float, default=-1.0, help="seconds to sleep between runs")
    add("--num_threads", type=int, default=-1, help="CPU threads (-1: runtime default)")
    for name in (
        "use_gpu",
        "use_nnapi",
        "enable_op_profiling",
        "report_peak_memory_footprint",
        "require_full_delegation",
        "verbose",
    ):
        add(f"--{name}", type=_flag_bool, nargs="?", const=True, default=False)
    add("--use_xnnpack", type=_flag_bool, nargs="?", const=True, default=None)
    add("--nnapi_accelerator_name", default="")
    add("--memory_footprint_check_interval_ms", type=int, default=50)
    add("--result_file_path", default="", help="write LiteRT's binary BenchmarkResult proto here")
    add("--per_run_file_path", default="", help="write each timed run (µs) here, one per line")
    # benchmark_tflite_model.cc's I/O flags (`device_bench._tool_io` says what they mean).
    for name in ("input_layer", "input_layer_shape", "input_layer_value_range", "input_layer_value_files",
                 "output_filepath"):
        add(f"--{name}", default="")
    if android:
        # Flags an Android build knows (gpu_delegate_provider.cc, nnapi_delegate_provider.cc,
        # default_execution_provider.cc); a host build leaves the GPU ones unconsumed.
        for name, default in (("gpu_precision_loss_allowed", True), ("gpu_experimental_enable_quant", True),
                              ("gpu_inference_for_sustained_speed", False), ("disable_nnapi_cpu", True),
                              ("nnapi_allow_fp16", False), ("allow_fp16", False)):
            add(f"--{name}", type=_flag_bool, nargs="?", const=True, default=default)
        for name in ("gpu_backend", "nnapi_execution_preference", "nnapi_execution_priority"):
            add(f"--{name}", default="")
        add("--max_delegated_partitions", type=int, default=0)
    return parser


def _log(out: TextIO, level: str, message: str) -> None:
    out.write(f"{level}: {message}\n")


def _fmt(value: float) -> str:
    # The C++ tool streams doubles with the default 6 significant digits ("1653.9",
    # "1.23457e+06"); do the same so the two outputs are interchangeable.
    return f"{value:.6g}"


def _stats_line(samples_us: Sequence[float]) -> str:
    count = len(samples_us)
    if count == 0:
        return "count=0"
    rounded = [int(round(s)) for s in samples_us]
    if min(rounded) == max(rounded):
        return f"count={count} curr={rounded[-1]}" + ("(all same)" if count > 1 else "")
    avg = sum(samples_us) / count
    var = max(sum(s * s for s in samples_us) / count - avg * avg, 0.0)
    ordered = sorted(samples_us)

    def pct(p: float) -> int:
        return int(round(ordered[min(count - 1, int(p / 100.0 * count))]))

    return (
        f"count={count} first={rounded[0]} curr={rounded[-1]} min={min(rounded)} "
        f"max={max(rounded)} avg={_fmt(avg)} std={int(var**0.5)} "
        f"p5={pct(5)} median={pct(50)} p95={pct(95)}"
    )


def _rss_mb() -> float:
    # Current resident set size; /proc exists on Linux and Android, ru_maxrss is the fallback.
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _PeakMonitor:
    """Samples RSS every interval on a thread, like the C++ tool's peak-footprint monitor."""

    def __init__(self, interval_ms: int):
        self._interval_s = max(interval_ms, 1) / 1000
        self._stop = threading.Event()
        self.peak_mb = _rss_mb()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self) -> "_PeakMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak_mb = max(self.peak_mb, _rss_mb())


def _interpreter_class():
    """LiteRT first, then tflite_runtime, then TensorFlow's bundled interpreter."""
    try:
        from ai_edge_litert import interpreter as module

        return module.Interpreter, module.OpResolverType
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as module  # type: ignore[import-not-found]

        return module.Interpreter, module.OpResolverType
    except ImportError:
        pass
    from mobile_opt import _tf

    lite = _tf.tf().lite
    return lite.Interpreter, lite.experimental.OpResolverType


def _random_input(detail: dict, rng, low: int | None = None, high: int | None = None):
    """Random data in the ranges the C++ tool uses for each dtype (or `--input_layer_value_range`'s)."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail["shape"])
    if low is not None:  # utils::CreateRandomTensorData with the flag's inclusive bounds
        if dtype.kind == "f":
            return rng.uniform(low, high, shape).astype(dtype)
        return rng.integers(low, high + 1, shape).astype(dtype)
    if dtype.kind == "f":
        return rng.uniform(-0.5, 0.5, shape).astype(dtype)
    if dtype == np.int8:
        return rng.integers(-127, 128, shape).astype(dtype)
    if dtype == np.uint8:
        return rng.integers(0, 255, shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 100, shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)


def _timed_phase(
    invoke: Callable[[], None],
    min_runs: int,
    min_secs: float,
    max_secs: float,
    run_delay: float,
) -> list[float]:
    """Runs like the C++ tool: ≥ min_runs and ≥ min_secs, stopping once max_secs is passed.

    The loop body is kept to two clock reads and the call (the overhead budget is ~1%).
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    start = clock()
    min_finish = start + int(min_secs * 1e9)
    max_finish = start + int(max_secs * 1e9)
    now = start
    runs = 0
    if run_delay > 0:
        while (runs < min_runs or now < min_finish) and now <= max_finish:
            t0 = clock()
            invoke()
            t1 = clock()
            append(t1 - t0)
            runs += 1
            time.sleep(run_delay)
            now = clock()
    else:
        while (runs < min_runs or now < min_finish) and now <= max_finish:
            t0 = clock()
            invoke()
            now = clock()
            append(now - t0)
            runs += 1
    return [ns / 1000.0 for ns in samples]


def _tool_result(graph: Path, init_us: float, warmup: Sequence[float], timed: Sequence[float],
                 init_mb: float, overall_mb: float, peak_mb: float | None) -> result_proto.ToolResult:
    """The BenchmarkResult LiteRT's ProtoBenchmarkReporter fills (ms; footprint in KB)."""
    ordered = sorted(timed)
    count = len(ordered)
    avg = sum(ordered) / count if count else 0.0
    std = (max(sum(s * s for s in ordered) / count - avg * avg, 0.0) ** 0.5) if count else 0.0

    def pct(p: float) -> float:
        return ordered[min(count - 1, int(p / 100.0 * count))] / 1000 if count else 0.0

    return result_proto.ToolResult(
        init_ms=init_us / 1000,
        first_inference_ms=warmup[0] / 1000 if warmup else 0.0,
        average_warm_up_ms=sum(warmup) / len(warmup) / 1000 if warmup else 0.0,
        min_ms=ordered[0] / 1000 if count else 0.0,
        max_ms=ordered[-1] / 1000 if count else 0.0,
        stddev_ms=std / 1000, avg_ms=avg / 1000,
        median_ms=pct(50), p5_ms=pct(5), p95_ms=pct(95),
        init_footprint_kb=int(init_mb * 1024), overall_footprint_kb=int(overall_mb * 1024),
        peak_mem_mb=peak_mb,
        model_size_mb=graph.stat().st_size / 1e6,
        num_runs=count, num_warmup_runs=len(warmup),
    )


def run(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    run_context: Callable[[], ContextManager] | None = None,
    gpu: Callable[[bytes, argparse.Namespace], object] | None = None,
    trace: dict | None = None,
    err: TextIO | None = None,
) -> int:
    """Runs the benchmark with `benchmark_model` flags; returns the process exit code.

    Args:
        argv: flags (default: `sys.argv[1:]`).
        out: where the `INFO:` lines go (default: stdout).
        run_context: a context manager factory entered around the warm-up and timed runs
            (the loopback device uses it to switch its simulated battery load on).
        gpu: a GPU delegate (`(model bytes, flags) -> device_bench.testing._fake_gpu.Delegation`);
            given, the Android build's GPU/NNAPI flags are known (default None: a host build).
        trace: filled with what really happened: "inputs" (one dict per input: name, shape,
            dtype, source, path, sha256), "output" (path, sha256) and "delegation".
        err: where ERROR/FATAL lines go (default: `out`; the C++ tool uses stderr).

    Returns:
        0 on success, 1 when the model or a requested delegate cannot be used.

    Raises:
        ToolFatal: where the C++ tool aborts (`FATAL: …` already printed on `err`).

    Example:
        >>> run(["--graph=missing.tflite"])  # doctest: +SKIP
        1
    """
    out = out or sys.stdout
    err = err or out
    trace = {} if trace is None else trace
    trace.update(inputs=[], output=None, delegation=None)
    start_rss = _rss_mb()
    args, unknown = _parser(android=gpu is not None).parse_known_args(argv)
    _log(out, "INFO", "STARTING!")
    if unknown:
        _log(out, "WARN", f"Unconsumed cmdline flags: {' '.join(unknown)}")
    try:
        return _run(args, out, err, start_rss, run_context, gpu, trace)
    except _tool_io.ToolError as exc:
        for line in exc.args:
            _log(err, "ERROR", line)
        _log(err, "ERROR", "Benchmarking failed.")
        return 1
    except _tool_io.ToolFatal as exc:
        out.flush()
        _log(err, "FATAL", str(exc))
        err.flush()
        raise


def _run(args, out: TextIO, err: TextIO, start_rss: float, run_context, gpu, trace: dict) -> int:
    import numpy as np

    # ValidateParams parses the input-layer flags before any parameter is logged.
    layers = _tool_io.parse_input_layers(args.input_layer, args.input_layer_shape, args.input_layer_value_range,
                                         args.input_layer_value_files, lambda m: _log(out, "WARN", m))
    _log(out, "INFO", f"Log parameter values verbosely: [{int(args.verbose)}]")
    _log(out, "INFO", f"Min num runs: [{args.num_runs}]")
    _log(out, "INFO", f"Num threads: [{args.num_threads}]")
    _log(out, "INFO", f"Graph: [{args.graph}]")
    if args.enable_op_profiling:
        _log(out, "INFO", "Enable op profiling: [1]")
    _log(out, "INFO", f"#threads used for CPU inference: [{args.num_threads}]")
    if args.use_gpu:
        _log(out, "INFO", "Use gpu: [1]")
    if args.use_xnnpack is not None:
        _log(out, "INFO", f"Use xnnpack: [{int(args.use_xnnpack)}]")

    graph = Path(args.graph)
    if not args.graph or not graph.is_file():
        _log(out, "ERROR", f"Failed to mmap model {args.graph}")
        _log(out, "ERROR", "Benchmarking failed.")
        return 1
    _log(out, "INFO", f"Loaded model {args.graph}")
    _log(out, "INFO", f"The input model file size (MB): {_fmt(graph.stat().st_size / 1e6)}")

    # The host has neither delegate. The official tool prints this line and would go on to
    # measure the CPU under the delegate's name; we stop, so nobody reports a CPU number as GPU.
    if args.use_gpu and gpu is None:
        _log(out, "WARN", "GPU acceleration is unsupported on this platform.")
        _log(out, "ERROR", "Benchmarking failed.")
        return 1
    if args.use_nnapi:
        _log(out, "WARN", "NNAPI acceleration is unsupported on this platform.")
        _log(out, "ERROR", "Benchmarking failed.")
        return 1
    if args.nnapi_accelerator_name:
        _log(
            out,
            "WARN",
            "`--use_nnapi=true` must be set for the provided NNAPI accelerator "
            f"({args.nnapi_accelerator_name}) to be used.",
        )

    interpreter_cls, resolver_type = _interpreter_class()
    kwargs = {}
    if args.use_xnnpack is False:
        kwargs["experimental_op_resolver_type"] = resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    init_start = time.perf_counter_ns()
    try:
        interpreter = interpreter_cls(
            model_path=str(graph),
            num_threads=args.num_threads if args.num_threads > 0 else None,
            **kwargs,
        )
        details = interpreter.get_input_details()
        _tool_io.check_against_model(layers, details, lambda m: _log(out, "WARN", m))
        if args.use_gpu:
            # Init applies the delegates after the resize, before AllocateTensors.
            delegation = gpu(graph.read_bytes(), args)
            for stream, line in delegation.lines:
                (out if stream == "stdout" else err).write(line + "\n")
            trace["delegation"] = delegation
            if args.require_full_delegation and not delegation.fully_delegated:
                raise _tool_io.ToolError("Disallowed CPU fallback detected.")
            interpreter = interpreter_cls(
                model_content=delegation.model,
                num_threads=args.num_threads if args.num_threads > 0 else None,
                **kwargs,
            )
        for layer, detail in zip(layers, interpreter.get_input_details()):
            if np.dtype(detail["dtype"]) != np.object_:  # string inputs are not resized
                interpreter.resize_tensor_input(detail["index"], list(layer.shape))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        for line in str(exc).strip().splitlines():
            _log(out, "ERROR", line)
        _log(out, "ERROR", "Failed to initialize the interpreter")
        _log(out, "ERROR", "Benchmarking failed.")
        return 1
    init_us = (time.perf_counter_ns() - init_start) / 1000

    _log(out, "INFO", f"Initialized session in {_fmt(init_us / 1000)}ms.")
    init_rss = _rss_mb()

    if args.require_full_delegation and not args.use_gpu:
        # Without an explicit delegate nothing is delegated: the C++ tool's check fails too.
        _log(out, "ERROR", "Disallowed CPU fallback detected.")
        _log(out, "ERROR", "Benchmarking failed.")
        return 1
    _set_inputs(interpreter, layers, out, trace)
    invoke = interpreter.invoke

    monitor = (
        _PeakMonitor(args.memory_footprint_check_interval_ms)
        if args.report_peak_memory_footprint
        else contextlib.nullcontext()
    )
    context = run_context() if run_context is not None else contextlib.nullcontext()
    try:
        with monitor, context:
            _log(
                out,
                "INFO",
                f"Running benchmark for at least {args.warmup_runs} iterations and at least "
                f"{_fmt(args.warmup_min_secs)} seconds but terminate if exceeding "
                f"{_fmt(args.max_secs)} seconds.",
            )
            warmup = _timed_phase(
                invoke, args.warmup_runs, args.warmup_min_secs, args.max_secs, args.run_delay
            )
            _log(out, "INFO", _stats_line(warmup))
            out.flush()
            _log(
                out,
                "INFO",
                f"Running benchmark for at least {args.num_runs} iterations and at least "
                f"{_fmt(args.min_secs)} seconds but terminate if exceeding "
                f"{_fmt(args.max_secs)} seconds.",
            )
            timed = _timed_phase(
                invoke, args.num_runs, args.min_secs, args.max_secs, args.run_delay
            )
    except (ValueError, RuntimeError) as exc:
        _log(out, "ERROR", f"Invoke failed: {str(exc).strip()}")
        _log(out, "ERROR", "Benchmarking failed.")
        return 1
    _log(out, "INFO", _stats_line(timed))
    warmup_avg = sum(warmup) / len(warmup) if warmup else float("nan")
    timed_avg = sum(timed) / len(timed) if timed else float("nan")
    first = int(round(warmup[0])) if warmup else -1
    _log(
        out,
        "INFO",
        f"Inference timings in us: Init: {int(round(init_us))}, First inference: {first}, "
        f"Warmup (avg): {_fmt(warmup_avg)}, Inference (avg): {_fmt(timed_avg)}",
    )
    _log(
        out,
        "INFO",
        "Note: as the benchmark tool itself affects memory footprint, the following is only "
        "APPROXIMATE to the actual memory footprint of the model at runtime. Take the "
        "information at your discretion.",
    )
    _log(
        out,
        "INFO",
        "Memory footprint delta from the start of the tool (MB): "
        f"init={_fmt(init_rss - start_rss)} overall={_fmt(_rss_mb() - start_rss)}",
    )
    if args.report_peak_memory_footprint:
        _log(
            out,
            "INFO",
            f"Overall peak memory footprint (MB) via periodic monitoring: {_fmt(monitor.peak_mb)}",
        )
    if args.enable_op_profiling:
        out.flush()  # the timed results stand even if the native profiler brings the process down
        _op_profile(out, args, graph, interpreter, min(len(timed), _PROFILED_RUNS))
    files = []
    if args.result_file_path:
        files.append((args.result_file_path, result_proto.encode(_tool_result(
            graph, init_us, warmup, timed, init_rss - start_rss, _rss_mb() - start_rss,
            monitor.peak_mb if args.report_peak_memory_footprint else None,
        ))))
    if args.per_run_file_path:
        files.append((args.per_run_file_path, "".join(f"{s:.3f}\n" for s in timed).encode()))
    for path, data in files:
        try:
            Path(path).write_bytes(data)
        except OSError as exc:
            _log(out, "ERROR", f"Failed to save benchmark result to: {path}: {exc}")
            return 1
        _log(out, "INFO", f"Saved benchmark result to: {path}")
    if args.output_filepath:
        # OutputSaver::OnBenchmarkEnd: the last timed run's outputs, silently skipped on failure.
        data = _tool_io.output_bytes(interpreter)
        try:
            Path(args.output_filepath).write_bytes(data)
        except OSError:
            pass
        else:
            trace["output"] = {"path": args.output_filepath, "bytes": len(data), "sha256": _tool_io.sha256(data)}
    out.flush()
    return 0


def _set_inputs(interpreter, layers: list, out: TextIO, trace: dict) -> None:
    """PrepareInputData: a value file where one is named, else random data (in its range)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for i, detail in enumerate(interpreter.get_input_details()):
        layer = layers[i] if layers else None
        shape = tuple(int(d) for d in detail["shape"])
        if layer is not None and layer.file:
            value = _tool_io.load_value_file(layer.file, detail["dtype"], shape, lambda m: _log(out, "INFO", m))
        elif layer is not None and layer.low is not None and np.dtype(detail["dtype"]) != np.object_:
            value = _random_input(detail, rng, layer.low, layer.high)
        else:
            value = _random_input(detail, rng)
        interpreter.set_tensor(detail["index"], value)
        raw = b"\0".join(value.ravel()) if value.dtype == np.object_ else np.ascontiguousarray(value).tobytes()
        trace["inputs"].append({
            "name": detail["name"], "shape": list(value.shape), "dtype": np.dtype(detail["dtype"]).name,
            "source": "file" if layer is not None and layer.file else "random",
            "path": layer.file if layer is not None and layer.file else None, "sha256": _tool_io.sha256(raw),
        })


def _op_profile(out: TextIO, args: argparse.Namespace, graph: Path, interpreter, runs: int) -> None:
    """Op profiling from LiteRT's own profiler, in a profiled pass after the timed runs.

    The C++ tool profiles its timed runs; LiteRT's Python interpreter has no profiler, so the
    timed runs stay unprofiled and a CompiledModel with the same threads and kernels is
    profiled separately (`device_bench.litert_profiler`) on the same inputs; the log line says so.
    """
    from device_bench.litert_profiler import profile_ops, run_order_table
    from mobile_opt.errors import BenchmarkError

    use_xnnpack = args.use_xnnpack is not False
    inputs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_input_details()}
    try:
        profiled = profile_ops(graph, inputs, runs=max(runs, 1), threads=args.num_threads, use_xnnpack=use_xnnpack)
    except BenchmarkError as exc:
        _log(out, "WARN", f"Op profiling failed: {exc}; continuing without it.")
        return
    _log(out, "INFO", f"Op profiling: LiteRT's CompiledModel profiler, {len(profiled.invoke_us)} runs after the "
         f"timed ones ({'XNNPACK' if use_xnnpack else 'builtin'} kernels); Invoke avg "
         f"{_fmt(sum(profiled.invoke_us) / len(profiled.invoke_us))} us.")
    tensors = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    # `_get_ops_details` is private, but it is the interpreter's only list of each node's outputs.
    outputs = {op["index"]: ", ".join(tensors.get(i, "") for i in op["outputs"])
               for op in interpreter._get_ops_details()}
    out.write("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
              + run_order_table(profiled, outputs) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: `python -m device_bench.host_benchmark --graph=…`."""
    try:
        code = run(argv, err=sys.stderr)
    except _tool_io.ToolFatal:
        _abort()
    sys.exit(code)


def _abort() -> None:
    """std::abort() as the C++ tool's FATAL does (SIGABRT: 134 in sh), without a core file."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.abort()


if __name__ == "__main__":
    main()
