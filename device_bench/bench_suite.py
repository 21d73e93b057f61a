"""`run_benchmarks`: what `mobile-opt bench` does, as one library call.

Models are validated (the whole flatbuffer parsed, tensor shapes checked) and every output
file is proved writable before any device is opened; then the devices measure the models
concurrently (`device_bench.farm`), outputs are checked (`device_bench.outputs`), the results
are compared with a baseline and gated (`device_bench.regression`, `device_bench.latency_budget`),
and the plots and the JUnit report are written. Results are appended to `files.jsonl` as each
completes, so a crash keeps what was measured.

Example:
    Gate a CI build on a 5 % latency regression against last week's results:

    >>> report = run_benchmarks(["model.tflite"], BenchSettings(                  # doctest: +SKIP
    ...     devices="auto", gates=GateSettings(baseline="base.jsonl", max_regression="5%"),
    ...     files=ReportFiles(jsonl="new.jsonl", junit="gates.xml")))
    >>> report.ok, report.gates.summary                                           # doctest: +SKIP
    (True, 'no significant regression')
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Callable, Sequence

from device_bench.bench_report import BenchReport
from device_bench.bench_settings import BenchSettings
from mobile_opt._files import OutputFiles, check_appendable
from mobile_opt.errors import InputError

__all__ = ["run_benchmarks"]

logger = logging.getLogger(__name__)

# BenchSettings.backends -> the output-check variants: the GPU with and without fp16.
_VARIANTS = {"cpu": ("cpu",), "gpu": ("gpu", "gpu_fp32"), "nnapi": ("nnapi",)}


def run_benchmarks(models: Sequence[str | Path], settings: BenchSettings | None = None, *,
                   progress: Callable[[int, int], None] | None = None) -> BenchReport:
    """Benchmarks `models` on the devices of `settings`, then compares, gates and writes reports.

    Args:
        models: .tflite files.
        settings: devices, backends, runs, gates, output checks, files (default `BenchSettings()`:
            the host's CPU, one thread).
        progress: called as progress(jobs_done, jobs_total) while the devices measure.

    Returns:
        BenchReport (`ok` is False when a run, an output check or a gate failed).

    Raises:
        InputError: no models, a missing file, an output that cannot be written, a baseline
            that is not results; ModelFormatError: a file that is not a readable .tflite;
            UnsupportedModelError: a tensor whose shape overflows LiteRT's element count.
            All before any device is opened.
        DeviceError, BenchmarkError: a device or the benchmark binary failed.
    """
    from device_bench.bench import validate_models
    from device_bench.results import read_jsonl

    settings = BenchSettings() if settings is None else settings
    if not isinstance(settings, BenchSettings):
        raise InputError(f"settings must be a BenchSettings. Received: settings={settings!r}")
    paths = validate_models(models)
    check_data = None if settings.outputs is None else {m: settings.outputs.data_for(m) for m in paths}
    baseline = None if settings.gates.baseline is None else read_jsonl(settings.gates.baseline)
    files = settings.files
    with contextlib.ExitStack() as stack:
        # One OutputFiles per file: each is published on its own (a plot with nothing to draw is not).
        staged = {name: stack.enter_context(OutputFiles()) for name in ("plot", "junit")}
        _reserve(files, staged)
        devices = _connect(settings.devices, settings.adb_port)
        try:
            farm = _measure(devices, paths, settings, progress)
            checks = None if check_data is None else _check_outputs(devices, check_data, settings)
        finally:
            for device in devices:
                device.close()
        report = _judge(farm, checks, baseline, settings)
        if files.plot is not None:
            report = _plot(report, files.plot, staged["plot"])
        if files.junit is not None:
            staged["junit"].write_bytes(files.junit, (report.to_junit() + "\n").encode("utf-8"))
            staged["junit"].commit()
    return report


def _reserve(files, staged) -> None:
    if files.jsonl is not None:
        if not files.jsonl.parent.is_dir():
            raise InputError(f"The directory for the results file does not exist. Received: jsonl={str(files.jsonl)!r}")
        check_appendable(files.jsonl, what="jsonl")
    for name in ("plot", "junit"):
        path = getattr(files, name)
        if path is not None:
            if files.jsonl is not None and Path(path).resolve() == files.jsonl.resolve():
                raise InputError(f"{name} and jsonl name the same file; give each its own. Received: {name}={str(path)!r}")
            staged[name].reserve(path, what=name)
    if files.plot is not None and files.junit is not None and files.plot.resolve() == files.junit.resolve():
        raise InputError(f"plot and junit name the same file; give each its own. Received: junit={str(files.junit)!r}")


def _connect(specs: tuple[str, ...], adb_port: int | None) -> list:
    """Opens every device (closed again if one fails)."""
    from device_bench._connect import connect, connect_all

    if specs == ("all",):
        return connect_all(adb_port=adb_port)
    devices = []
    try:
        for spec in specs:
            devices.append(connect(spec, adb_port=adb_port))
    except BaseException:
        for device in devices:
            device.close()
        raise
    return devices


def _measure(devices, paths, settings: BenchSettings, progress):
    from device_bench.bench import benchmark
    from device_bench.farm import run_farm
    from device_bench.results import write_jsonl

    # The box plot draws every run's time.
    runs = settings.run if settings.files.plot is None else dataclasses.replace(settings.run, keep_samples=True)

    def run(device, some_models):
        return benchmark(device, some_models, backends=settings.backends, threads=settings.threads,
                         run=runs, energy=settings.energy, tool=settings.tool)

    jsonl = settings.files.jsonl
    return run_farm(devices, paths, run, shard=settings.shard, retries=settings.retries, progress=progress,
                    on_results=None if jsonl is None else (lambda rows: write_jsonl(jsonl, rows)))


def _check_outputs(devices, data: dict, settings: BenchSettings) -> tuple:
    from device_bench.outputs import check_outputs

    variants = tuple(v for b in settings.backends for v in _VARIANTS[b])
    return tuple(check_outputs(device, model, x, y, backends=variants, tool=settings.tool,
                               samples=settings.outputs.samples)
                 for device in devices for model, (x, y) in data.items())


def _judge(farm, checks, baseline, settings: BenchSettings) -> BenchReport:
    from device_bench.latency_budget import check_latency_budgets
    from device_bench.op_cost import op_costs_of_all
    from device_bench.outputs import gate_outputs
    from device_bench.regression import check_regressions
    from device_bench.results import compare

    results, gates, outputs = list(farm.results), settings.gates, settings.outputs
    return BenchReport(
        results=tuple(results), lost=dict(farm.lost), unrun=tuple(farm.unrun),
        comparisons=None if baseline is None else tuple(compare(baseline, results)),
        regression=None if gates.max_regression is None else check_regressions(
            baseline, results, threshold=gates.max_regression),
        latency_budgets=tuple(check_latency_budgets(gates.latency_budgets, results, root=gates.budget_root))
        if gates.latency_budgets else None,
        output_checks=checks,
        output_gates=gate_outputs(checks, max_output_diff=outputs.max_output_diff,
                                  max_accuracy_drop_pp=outputs.max_accuracy_drop_pp,
                                  require_full_delegation=outputs.require_full_delegation)
        if checks and outputs.gated else None,
        op_costs=tuple(op_costs_of_all(results)) if settings.run.op_profiling else (),
    )


def _plot(report: BenchReport, path: Path, staged: OutputFiles) -> BenchReport:
    from device_bench.op_cost import plot_op_costs_beside
    from device_bench.plot import plot_latency

    plot = None
    if any(r.status == "ok" and r.samples_us for r in report.results):
        staged.write_with(path, lambda target: plot_latency(report.results, target))
        staged.commit()
        plot = path
    else:
        logger.info("no measured run to plot; %s not written", path)
    return dataclasses.replace(report, plot=plot, op_cost_plots=tuple(plot_op_costs_beside(report.op_costs, path)))
