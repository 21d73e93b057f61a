"""One benchmark run on a device: invoke the tool (inside the power harness for energy), read
its result file, classify the outcome, and turn fuel-gauge samples into energy.

`benchmark()` (bench.py) plans the runs; `run_one` does one (model, backend, threads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from device_bench import benchmark_output, device_state, rails, result_proto
from device_bench.benchmark_output import TimingStats
from device_bench.binary import Binary
from device_bench.device import Device, ShellResult, quote
from device_bench.energy import EnergyResult, compute_energy, parse_samples
from device_bench.results import BenchmarkResult, Delegation, LatencyStats, Measurement
from device_bench.settings import EnergySettings, RunSettings
from mobile_opt.errors import DeviceDisconnectedError, DeviceError, DeviceNotFoundError, DeviceOfflineError

logger = logging.getLogger(__name__)

_BACKEND_FLAGS = {"cpu": (), "gpu": ("--use_gpu=true",), "nnapi": ("--use_nnapi=true",)}
_DELEGATE_NAME = {"gpu": "GPU", "nnapi": "NNAPI"}
LOST = (DeviceDisconnectedError, DeviceNotFoundError, DeviceOfflineError)
TAIL_S = {"current_now": 3.0, "current_avg": 12.0}
MAX_TAIL_S = 60.0


@dataclass(frozen=True)
class Context:
    """What every run on one device shares."""

    device: Device
    binary: Binary
    run: RunSettings
    energy: EnergySettings | None
    runner: str | None  # the power harness on the device, when energy is measured
    battery: device_state.Battery | None
    local_tmp: Path
    rails: device_state.Rails | str | None = None  # the rail counters, or why there are none


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _error_tail(parsed: benchmark_output.BenchmarkOutput, output: str) -> str:
    errors = [e for e in parsed.errors if "Benchmarking failed" not in e]
    if errors:
        return "; ".join(errors[-4:])
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return " | ".join(lines[-3:]) or "(no output)"


def _classify(
    backend: str, parsed: benchmark_output.BenchmarkOutput, exit_code: int, output: str
) -> tuple[str, str | None, Delegation]:
    """(status, reason, delegation) of one run from the tool's output and exit code."""
    if backend == "cpu":
        delegation = Delegation(delegate=None, coverage="cpu")
        if exit_code != 0 or parsed.benchmark_failed or parsed.inference is None:
            return "failed", f"benchmark exited {exit_code}: {_error_tail(parsed, output)}", delegation
        return "ok", None, delegation

    name = _DELEGATE_NAME[backend]
    applied = [d for d in parsed.delegates if d.name.upper() == name]
    delegation = Delegation(
        delegate=name,
        coverage=applied[-1].coverage if applied else "none",
        kernels=applied[-1].kernels if applied else None,
        ops_on_delegate=parsed.gpu_ops_on_gpu if backend == "gpu" else None,
        ops_on_cpu=parsed.gpu_ops_on_cpu if backend == "gpu" else None,
        unsupported_ops=parsed.gpu_unsupported_ops if backend == "gpu" else (),
    )
    if name in parsed.unsupported_delegates:
        return "unsupported", parsed.unsupported_delegates[name], delegation
    if any(f.upper() == name for f in parsed.delegate_failures):
        return "unsupported", f"{name} delegate failed to apply: {_error_tail(parsed, output)}", delegation
    if parsed.cpu_fallback_disallowed:
        return "unsupported", "Disallowed CPU fallback detected (not fully delegated).", delegation
    if exit_code != 0 or parsed.benchmark_failed or parsed.inference is None:
        return "failed", f"benchmark exited {exit_code}: {_error_tail(parsed, output)}", delegation
    if not applied:
        return (
            "unsupported",
            f"the {name} delegate was requested but the output shows it was never applied; "
            "the numbers would be the CPU's, so none are reported",
            delegation,
        )
    if applied[-1].coverage == "none":
        return (
            "unsupported",
            f"the {name} delegate was applied but executes none of the graph (everything "
            "ran on the CPU)",
            delegation,
        )
    return "ok", None, delegation



@dataclass(frozen=True)
class _Invocation:
    shell: ShellResult
    output: str
    parsed: benchmark_output.BenchmarkOutput
    command: str
    started: str
    duration_s: float


def _invoke(ctx: Context, args: list[str], timeout_s: float) -> _Invocation:
    started, t0 = _now(), time.monotonic()
    shell = ctx.device.shell(args, timeout_s=timeout_s)
    output = shell.stdout + ("\n" + shell.stderr if shell.stderr else "")
    return _Invocation(shell, output, benchmark_output.parse(output), " ".join(quote(a) for a in args),
                       started, time.monotonic() - t0)


def _tool_args(ctx: Context, remote_model: str, threads: int, backend: str, run: RunSettings,
               result_file: str, per_run_file: str) -> list[str]:
    return [
        *ctx.binary.command,
        f"--graph={remote_model}",
        f"--num_threads={threads}",
        f"--num_runs={run.runs}",
        f"--warmup_runs={run.warmup_runs}",
        f"--min_secs={run.min_secs:g}",
        f"--warmup_min_secs={run.warmup_min_secs:g}",
        f"--result_file_path={result_file}",
        *([f"--per_run_file_path={per_run_file}"] if ctx.binary.per_run_file else []),
        *_BACKEND_FLAGS[backend],
        *(["--enable_op_profiling=true"] if run.op_profiling else []),
    ]


def _pull(ctx: Context, remote: str, local: Path) -> bytes | None:
    try:
        ctx.device.pull(remote, local, timeout_s=120)
        return local.read_bytes()
    except LOST:
        raise
    except (DeviceError, OSError) as exc:
        logger.info("could not pull %s: %s", remote, exc)
        return None


def _latency(ctx: Context, parsed, remote_result: str, remote_per_run: str, tag: str
             ) -> tuple[LatencyStats, list[float] | None, list[str]]:
    """Latency from every run's time where the tool gives them, else its result proto, else
    its stats line (older tools); the warning says which."""
    warnings: list[str] = []
    samples = None
    if ctx.binary.per_run_file:
        data = _pull(ctx, remote_per_run, ctx.local_tmp / f"per-run-{tag}.txt")
        _, samples = result_proto.read_result_file(data or b"")
    if samples:
        return LatencyStats.from_samples(samples), samples, warnings
    data = _pull(ctx, remote_result, ctx.local_tmp / f"result-{tag}.pb")
    proto, text_samples = result_proto.read_result_file(data or b"")
    if text_samples:
        warnings.append("the result file is one latency per line (an older tool's format); "
                        "percentiles computed from those")
        return LatencyStats.from_samples(text_samples), text_samples, warnings
    if proto is not None and proto.num_runs:
        ms = lambda v: None if v is None else v * 1000.0  # noqa: E731
        return LatencyStats.from_tool(TimingStats(
            proto.num_runs, avg_us=ms(proto.avg_ms), std_us=ms(proto.stddev_ms),
            min_us=ms(proto.min_ms), max_us=ms(proto.max_ms), p5_us=ms(proto.p5_ms),
            median_us=ms(proto.median_ms), p95_us=ms(proto.p95_ms)), source="result_proto",
        ), None, warnings
    warnings.append("no readable result file (" + ("empty or missing" if not data else
                    "neither a BenchmarkResult proto nor text") + "); statistics from the "
                    "tool's stats line")
    return LatencyStats.from_tool(parsed.inference, source="summary"), None, warnings


def _limited_by(run: RunSettings, count: int) -> str:
    if count <= run.runs:
        return f"{count} timed runs: --num_runs {run.runs} (the {run.min_secs:g} s minimum was reached first)"
    return (f"{count} timed runs: --min_secs {run.min_secs:g} s of runs took more than "
            f"--num_runs {run.runs}")


def run_one(ctx: Context, remote: tuple[str, str], base: dict, label: str) -> BenchmarkResult:
    """Runs one (model, backend, threads) and returns its result (never raises for the tool's
    failures; raises `LOST` / `DeviceTimeoutError` when the device goes away)."""
    remote_dir, remote_model = remote
    backend, threads = base["backend"], base["threads"]
    tag = f"{backend}-t{threads}"
    result_file, per_run_file = f"{remote_dir}/result-{tag}.pb", f"{remote_dir}/latency-{tag}.txt"
    power_file = f"{remote_dir}/power-{tag}.txt"
    battery_dir = ctx.battery.directory if ctx.battery else None
    warnings: list[str] = []
    run = ctx.run
    if run.cooldown_to_c is not None:
        warnings.extend(_cool_down(ctx, battery_dir))
    thermal_before = device_state.read_thermal(ctx.device, battery_dir)
    if ctx.runner is not None:
        # A quick run first: a delegate that fails at init is found before the baseline.
        probe = _invoke(ctx, _tool_args(ctx, remote_model, threads, backend, replace(
            run, runs=1, warmup_runs=0, min_secs=0, warmup_min_secs=0, op_profiling=False),
            result_file, per_run_file), run.run_timeout_s)
        status, reason, delegation = _classify(backend, probe.parsed, probe.shell.exit_code, probe.output)
        if status != "ok":
            return BenchmarkResult(status=status, reason=reason, delegation=delegation,
                                   init_ms=probe.parsed.init_ms, **base)

    tail_s = None
    extended = None
    energy_result = None
    for attempt in range(2):
        args = _tool_args(ctx, remote_model, threads, backend, run, result_file, per_run_file)
        timeout_s = run.run_timeout_s
        if ctx.runner is not None:
            energy = ctx.energy
            tail_s = tail_s if tail_s is not None else (
                energy.tail_s if energy.tail_s is not None else TAIL_S[ctx.battery.current_file])
            if not device_state.wait_idle(ctx.device, ctx.battery, window_s=2.0,
                                          timeout_s=energy.settle_timeout_s):
                warnings.append(f"the battery reading had not settled after "
                                f"{energy.settle_timeout_s:g} s; the baseline may carry load")
            env = ["env", f"MOBILE_OPT_RAILS={' '.join(ctx.rails.sources)}"] \
                if isinstance(ctx.rails, device_state.Rails) else []
            args = [*env, "sh", ctx.runner, power_file, ctx.battery.directory, ctx.battery.current_file,
                    f"{energy.sample_interval_s:g}", f"{energy.baseline_s:g}", f"{tail_s:g}", *args]
            timeout_s += energy.baseline_s + tail_s + 10
        ctx.device.shell(["rm", "-f", result_file, per_run_file, power_file, f"{power_file}.rails"],
                         timeout_s=30)
        inv = _invoke(ctx, args, timeout_s)
        status, reason, delegation = _classify(backend, inv.parsed, inv.shell.exit_code, inv.output)
        if status != "ok" or ctx.runner is None:
            break
        inferences = (inv.parsed.warmup.count if inv.parsed.warmup else 0) + inv.parsed.inference.count
        energy_result = replace(_energy(ctx, power_file, tag, inferences),
                                rails=_rails(ctx, power_file, tag, inferences, tail_s))
        needs = energy_result.needs
        if attempt == 0 and needs and ctx.energy.auto_extend:
            new_min = max(run.min_secs, needs.get("min_secs", 0.0))
            tail_s = min(MAX_TAIL_S, max(tail_s, needs.get("tail_s", 0.0)))
            why = energy_result.reason or (
                "the gauge's refresh period alone made the first figure uncertain by more than 2%")
            extended = (f"rerun by itself ({why}): --min_secs {run.min_secs:g} → "
                        f"{new_min:g} s, tail {tail_s:g} s")
            logger.info("%s: %s", label, extended)
            run = replace(run, min_secs=new_min)
            continue
        break
    measurement = Measurement(
        requested_runs=ctx.run.runs,
        requested_warmup_runs=run.warmup_runs,
        min_secs=run.min_secs,
        warmup_runs_done=inv.parsed.warmup.count if inv.parsed.warmup else None,
        binary=ctx.binary.description,
        binary_sha256=ctx.binary.sha256,
        command=inv.command,
        started_at=inv.started,
        finished_at=_now(),
        duration_s=inv.duration_s,
        runs_limited_by=_limited_by(run, inv.parsed.inference.count)
        if inv.parsed.inference else None,
    )
    thermal = {"before": thermal_before, "after": device_state.read_thermal(ctx.device, battery_dir)}
    if status != "ok":
        return BenchmarkResult(status=status, reason=reason, delegation=delegation,
                               measurement=measurement, init_ms=inv.parsed.init_ms,
                               thermal=thermal, **base)
    parsed = inv.parsed
    latency, samples, latency_warnings = _latency(ctx, parsed, result_file, per_run_file, tag)
    warnings.extend(latency_warnings)
    hot = device_state.hot_warning(thermal["after"])
    if hot:
        warnings.append(hot)
    if run.op_profiling and not parsed.op_profile:
        warnings.append("op profiling was requested but the tool printed no per-op table")
    if energy_result is not None:
        energy_result = replace(energy_result, extended=extended)
        warnings.extend(energy_result.warnings)
    return BenchmarkResult(
        status="ok",
        init_ms=parsed.init_ms,
        first_inference_us=parsed.first_inference_us,
        warmup_avg_us=parsed.warmup_avg_us,
        latency=latency,
        samples_us=tuple(samples or ()) if ctx.run.keep_samples else (),
        memory_init_mb=parsed.memory_init_mb,
        memory_overall_mb=parsed.memory_overall_mb,
        memory_peak_mb=parsed.memory_peak_mb,
        delegation=delegation,
        energy=energy_result,
        measurement=measurement,
        op_profile=parsed.op_profile,
        thermal=thermal,
        warnings=tuple(warnings),
        **base,
    )


def _cool_down(ctx: Context, battery_dir: str | None) -> list[str]:
    target, timeout_s = ctx.run.cooldown_to_c, ctx.run.cooldown_timeout_s
    last: list[float | None] = [None]

    def cool() -> bool:
        last[0] = device_state.device_temperature(device_state.read_thermal(ctx.device, battery_dir))
        return last[0] is None or last[0] < target

    if device_state.wait_until(cool, timeout_s, 5.0):
        return [] if last[0] is not None else [f"no temperature sensor readable; --cooldown-to {target:g} ignored"]
    return [f"the device stayed at {last[0]:.1f} °C, above --cooldown-to {target:g} °C, for "
            f"{timeout_s:g} s; measured anyway"]


def _energy(ctx: Context, remote: str, tag: str, inferences: int) -> EnergyResult:
    local = ctx.local_tmp / f"power-{tag}.txt"
    try:
        ctx.device.pull(remote, local, timeout_s=120)
    except LOST:
        raise
    except DeviceError as exc:
        return EnergyResult.unavailable(f"no power samples from the device: {exc}")
    # The measured window covers every inference the tool ran: warm-up and timed runs.
    result = compute_energy(parse_samples(local.read_text(encoding="utf-8", errors="replace")), inferences)
    battery = ctx.battery
    return replace(result, battery_dir=battery.directory, files_read=(
        f"{battery.directory}/{battery.current_file}", f"{battery.directory}/voltage_now"))


def _rails(ctx: Context, power_file: str, tag: str, inferences: int, tail_s: float) -> rails.RailsEnergy:
    if not isinstance(ctx.rails, device_state.Rails):
        return rails.RailsEnergy(reason=f"{ctx.rails}; the battery's figure is the only one")
    local = ctx.local_tmp / f"rails-{tag}.txt"
    try:
        ctx.device.pull(f"{power_file}.rails", local, timeout_s=120)
    except LOST:
        raise
    except DeviceError as exc:
        return rails.RailsEnergy(reason=f"no rail snapshots from the device: {exc}",
                                 sources=tuple(ctx.rails.sources))
    log = rails.parse_rails(local.read_text(encoding="utf-8", errors="replace"))
    # The device's shell may print a directory otherwise (a symlinked /sys): name it as asked.
    asked = {source.rsplit("/", 1)[-1]: source for source in ctx.rails.sources}
    log = rails.RailsLog({mark: {asked.get(src.rsplit("/", 1)[-1], src): replace(snap, source=asked.get(
        src.rsplit("/", 1)[-1], src)) for src, snap in snaps.items()} for mark, snaps in log.snapshots.items()})
    measured = rails.compute_rails(log, inferences, tail_s=tail_s)
    # `sources` says the phone has rails, measured or not: the gates tell it from a phone without.
    return measured if measured.sources else replace(measured, sources=tuple(ctx.rails.sources))
