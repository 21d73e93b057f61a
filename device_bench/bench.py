"""Run `benchmark_model` on a device for models × backends × threads; optionally measure energy.

Flow for one device: facts (`Device.info()`), the benchmark binary for its ABI (checked
against the ELF header, pushed once to `/data/local/tmp/mobile_opt/bin/`, skipped when the
device copy has the same sha256), each model pushed to `/data/local/tmp/mobile_opt/<sha16>/`,
then one run per (model, backend, threads): output parsed, raw samples pulled for
percentiles, delegate coverage read, energy from the battery fuel gauge when asked. Each
result is appended to a JSON-lines file as soon as it completes. Pushed models are removed
at the end; the binary stays for the next time.

On the host (`connect("host")`), the binary is `python -m device_bench.host_benchmark`.

Honesty rules: a backend whose delegate cannot be created or applied is "unsupported" with
the tool's own words, never a CPU number under its name; a run that breaks is "failed" with
the error; if the device disappears, completed results are kept and the remaining runs are
"failed" naming the device and the run that lost it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from android_harness import script_path
from device_bench import benchmark_output
from device_bench.device import Device, quote
from device_bench.energy import EnergyResult, compute_energy, parse_samples
from device_bench.results import (
    BenchmarkResult,
    Delegation,
    LatencyStats,
    Measurement,
    write_jsonl,
)
from mobile_opt.errors import (
    BenchmarkError,
    DeviceDisconnectedError,
    DeviceError,
    DeviceNotFoundError,
    DeviceOfflineError,
    DeviceStorageFullError,
    DeviceTimeoutError,
    InputError,
    ModelFormatError,
)

__all__ = ["BACKENDS", "benchmark", "default_cache_dir"]

logger = logging.getLogger(__name__)

BACKENDS = ("cpu", "gpu", "nnapi")
_BACKEND_FLAGS = {"cpu": (), "gpu": ("--use_gpu=true",), "nnapi": ("--use_nnapi=true",)}
_DELEGATE_NAME = {"gpu": "GPU", "nnapi": "NNAPI"}
REMOTE_ROOT = "/data/local/tmp/mobile_opt"
REMOTE_BIN = f"{REMOTE_ROOT}/bin"
DEFAULT_BATTERY_DIR = "/sys/class/power_supply/battery"
# ELF e_machine per Android ABI (EM_ARM, EM_AARCH64, EM_386, EM_X86_64, EM_RISCV).
_ABI_MACHINE = {
    "armeabi": 40,
    "armeabi-v7a": 40,
    "arm64-v8a": 183,
    "x86": 3,
    "x86_64": 62,
    "riscv64": 243,
}
_MACHINE_NAME = {40: "ARM (32-bit)", 183: "AArch64", 3: "x86", 62: "x86-64", 243: "RISC-V"}
_LOST = (DeviceDisconnectedError, DeviceNotFoundError, DeviceOfflineError)

Progress = Callable[[int, int], None]


def default_cache_dir() -> Path:
    """`~/.cache/mobile-opt/benchmark_model` (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mobile-opt" / "benchmark_model"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class _Binary:
    command: tuple[str, ...]  # argv prefix on the device
    description: str
    sha256: str | None


def _check_elf(binary: Path, abi: str) -> None:
    """Refuses a binary built for another CPU than the device's ABI (before pushing it)."""
    with open(binary, "rb") as fh:
        head = fh.read(20)
    if head.startswith(b"#!"):
        logger.info("benchmark binary %s is a script; no ELF ABI check", binary)
        return
    if not head.startswith(b"\x7fELF") or len(head) < 20:
        raise BenchmarkError(
            f"benchmark binary {binary} is not an executable (no ELF header). Pass the "
            "Android build of TFLite's benchmark_model (e.g. android_aarch64_benchmark_model)."
        )
    byteorder = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], byteorder)
    expected = _ABI_MACHINE.get(abi)
    if expected is None:
        logger.warning("unknown device ABI %r; cannot check %s against it", abi, binary)
        return
    if machine != expected:
        raise BenchmarkError(
            f"benchmark binary {binary} is built for {_MACHINE_NAME.get(machine, machine)}, "
            f"but the device ABI is {abi} ({_MACHINE_NAME[expected]}). Pass the {abi} build "
            f"with --benchmark-binary, or put it at {default_cache_dir()}/{abi}/benchmark_model."
        )


def _prepare_binary(
    device: Device, abi: str | None, benchmark_binary: Path | None, cache_dir: Path | None
) -> _Binary:
    if device.transport == "host" and benchmark_binary is None:
        package_root = str(Path(__file__).resolve().parents[1])
        pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        return _Binary(
            ("env", f"PYTHONPATH={pythonpath}", sys.executable, "-m", "device_bench.host_benchmark"),
            "python -m device_bench.host_benchmark",
            None,
        )
    if benchmark_binary is not None:
        binary = Path(benchmark_binary)
        if not binary.is_file():
            raise BenchmarkError(
                f"benchmark binary not found. Received: benchmark_binary={str(binary)!r}. "
                "Pass the path of TFLite's benchmark_model built for the device."
            )
    else:
        if not abi:
            raise BenchmarkError(
                f"{device.serial} reports no ro.product.cpu.abi, so no benchmark binary can be "
                "chosen. Pass one with --benchmark-binary."
            )
        from device_bench.tools import ensure_binary  # late: tools reuses this module's ELF check

        binary = ensure_binary(abi, device=device, cache_dir=cache_dir)
    if abi:
        _check_elf(binary, abi)
    sha = _sha256(binary)
    remote = f"{REMOTE_BIN}/benchmark_model"
    probe = device.shell(f"sha256sum {quote(remote)} 2>/dev/null", timeout_s=30)
    if probe.ok and probe.stdout.split()[:1] == [sha]:
        logger.info("benchmark binary already on %s (sha256 %s)", device.serial, sha[:16])
    else:
        device.shell(["mkdir", "-p", REMOTE_BIN], timeout_s=30).check(
            "create the binary directory", serial=device.serial
        )
        device.push(binary, remote)
        device.shell(["chmod", "755", remote], timeout_s=30).check(
            "make the benchmark binary executable", serial=device.serial
        )
    return _Binary((remote,), str(binary), sha)


def _push_harness(device: Device) -> str:
    device.shell(["mkdir", "-p", REMOTE_BIN], timeout_s=30).check(
        "create the binary directory", serial=device.serial
    )
    for name in ("sample_power.sh", "run_benchmark.sh"):
        device.push(script_path(name), f"{REMOTE_BIN}/{name}", timeout_s=60)
    return f"{REMOTE_BIN}/run_benchmark.sh"


def _validate_models(models: Sequence[Path]) -> list[Path]:
    if isinstance(models, (str, Path)) or not models:
        raise InputError(
            f"models must be a non-empty list of .tflite paths. Received: models={models!r}"
        )
    paths = []
    for model in models:
        path = Path(model)
        if not path.is_file():
            raise InputError(f"model file not found. Received: model={str(path)!r}")
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head[4:8] != b"TFL3":
            raise ModelFormatError(
                f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier). Convert the model "
                "first (`mobile-opt optimize`). Received: model={str(path)!r}"
            )
        paths.append(path)
    return paths


def _validate(backends, threads, runs, warmup_runs, baseline_s, cooldown_s, run_timeout_s):
    unknown = [b for b in backends if b not in BACKENDS]
    if not backends or unknown:
        raise InputError(
            f"backends must be some of {BACKENDS}. Received: backends={tuple(backends)!r}"
        )
    if not threads or any(not isinstance(t, int) or t < 1 for t in threads):
        raise InputError(
            f"threads must be positive integers. Received: threads={tuple(threads)!r}"
        )
    for name, value, low in (("runs", runs, 1), ("warmup_runs", warmup_runs, 0)):
        if not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer ≥ {low}. Received: {name}={value!r}")
    for name, value in (("baseline_s", baseline_s), ("cooldown_s", cooldown_s)):
        if not isinstance(value, (int, float)) or value < 0:
            raise InputError(f"{name} must be ≥ 0 seconds. Received: {name}={value!r}")
    if not isinstance(run_timeout_s, (int, float)) or run_timeout_s <= 0:
        raise InputError(
            f"run_timeout_s must be a positive number of seconds. "
            f"Received: run_timeout_s={run_timeout_s!r}"
        )


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


def _read_samples(path: Path) -> list[float] | None:
    try:
        values = [float(line) for line in path.read_text(encoding="ascii").split()]
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return values or None


def benchmark(
    device: Device,
    models: Sequence[Path],
    *,
    backends: Sequence[str] = ("cpu",),
    threads: Sequence[int] = (1,),
    runs: int = 50,
    warmup_runs: int = 1,
    min_secs: float = 1.0,
    warmup_min_secs: float = 0.5,
    energy: bool = False,
    baseline_s: float = 5.0,
    cooldown_s: float = 0.0,
    sample_interval_s: float = 0.01,
    battery_dir: str = DEFAULT_BATTERY_DIR,
    benchmark_binary: Path | None = None,
    cache_dir: Path | None = None,
    run_timeout_s: float = 300.0,
    op_profiling: bool = False,
    results_path: Path | None = None,
    progress: Progress | None = None,
) -> list[BenchmarkResult]:
    """Benchmarks every model with every backend and thread count on one device.

    Args:
        device: an open `Device` (from `device_bench.connect`).
        models: .tflite files on the host.
        backends: any of "cpu", "gpu", "nnapi" (default ("cpu",)).
        threads: CPU thread counts (default (1,)).
        runs: minimum timed runs (`--num_runs`, default 50).
        warmup_runs: minimum warm-up runs (`--warmup_runs`, default 1).
        min_secs: minimum seconds of timed runs (`--min_secs`, default 1.0).
        warmup_min_secs: minimum seconds of warm-up (`--warmup_min_secs`, default 0.5).
        energy: sample the battery and report energy per inference (default False).
        baseline_s: idle seconds measured right before each energy run (default 5.0).
        cooldown_s: seconds to rest between runs, against thermal carry-over (default 0).
        sample_interval_s: fuel-gauge sampling interval for energy (default 0.01).
        battery_dir: the device's battery in sysfs (default /sys/class/power_supply/battery).
        benchmark_binary: the device's `benchmark_model` (default: from `cache_dir` by ABI;
            on the host: `python -m device_bench.host_benchmark`).
        cache_dir: binaries as `<cache_dir>/<abi>/benchmark_model` (default
            `default_cache_dir()`).
        run_timeout_s: seconds one benchmark invocation may take (default 300).
        op_profiling: ask the tool for per-op timings (`--enable_op_profiling`) and keep the
            rows it prints (default False; it slows the runs, and the host tool has none).
        results_path: JSON-lines file each result is appended to as it completes.
        progress: called as progress(runs_done, runs_total).

    Returns:
        One `BenchmarkResult` per (model, backend, threads), in that order.

    Raises:
        InputError: bad arguments or a missing model file; ModelFormatError: not a .tflite.
        BenchmarkError: no usable benchmark binary (missing, wrong ABI).
        DeviceError: the device failed before any run started (e.g. pushing the binary).

    Example:
        with connect("auto") as phone:
            results = benchmark(phone, [Path("m.tflite")], backends=("cpu", "gpu"),
                                threads=(1, 4), results_path=Path("results.jsonl"))
    """
    backends, threads = tuple(backends), tuple(threads)
    _validate(backends, threads, runs, warmup_runs, baseline_s, cooldown_s, run_timeout_s)
    paths = _validate_models(models)
    if results_path is not None and not Path(results_path).parent.is_dir():
        raise InputError(
            "the directory for results_path does not exist. "
            f"Received: results_path={str(results_path)!r}"
        )

    info = device.info()
    facts = info.to_dict()
    binary = _prepare_binary(device, info.abi, benchmark_binary, cache_dir)
    runner, no_energy = None, None
    if energy:
        probe = device.shell(
            ["sh", "-c", 'test -r "$1/current_now" && test -r "$1/voltage_now"', "sh", battery_dir],
            timeout_s=30,
        )
        if probe.ok:
            runner = _push_harness(device)
        else:
            no_energy = EnergyResult.unavailable(
                f"battery not readable on {device.serial}: no {battery_dir}/current_now and "
                "voltage_now (latency is still measured)"
            )
            logger.warning("%s", no_energy.reason)

    plan = [(m, b, t) for m in paths for b in backends for t in threads]
    results: list[BenchmarkResult] = []
    pushed: dict[Path, tuple[str, str] | DeviceError] = {}
    lost: str | None = None
    with tempfile.TemporaryDirectory(prefix="mobile-opt-bench-") as tmp:
        local_tmp = Path(tmp)
        for index, (model, backend, n_threads) in enumerate(plan, start=1):
            label = f"run {index}/{len(plan)} ({model.name}, {backend}, {n_threads} threads)"
            base = dict(
                model_path=str(model),
                model_sha256=_sha256(model),
                model_size_bytes=model.stat().st_size,
                device=facts,
                backend=backend,
                threads=n_threads,
            )
            if lost is not None:
                result = BenchmarkResult(status="failed", reason=lost, **base)
            else:
                if model not in pushed:
                    pushed[model] = _push_model(device, model, base["model_sha256"])
                remote = pushed[model]
                if isinstance(remote, DeviceError):
                    result = BenchmarkResult(
                        status="failed", reason=f"pushing the model failed: {remote}", **base
                    )
                    if isinstance(remote, _LOST):
                        lost = f"skipped: {device.serial} was lost while pushing {model.name}"
                else:
                    if index > 1 and cooldown_s > 0:
                        time.sleep(cooldown_s)
                    try:
                        result = _run_one(
                            device, binary, runner, remote, local_tmp, base, label,
                            runs=runs, warmup_runs=warmup_runs, min_secs=min_secs,
                            warmup_min_secs=warmup_min_secs, energy=energy,
                            baseline_s=baseline_s, sample_interval_s=sample_interval_s,
                            battery_dir=battery_dir, run_timeout_s=run_timeout_s,
                            op_profiling=op_profiling,
                        )
                        if no_energy is not None and result.status == "ok":
                            result = dataclasses.replace(result, energy=no_energy)
                    except _LOST as exc:
                        lost = f"skipped: {device.serial} was lost during {label}: {exc}"
                        result = BenchmarkResult(
                            status="failed", reason=f"{device.serial} lost during {label}: {exc}",
                            **base,
                        )
                    except DeviceTimeoutError as exc:
                        result = BenchmarkResult(
                            status="failed",
                            reason=f"{label} on {device.serial} timed out after "
                            f"{run_timeout_s:g} s: {exc}",
                            **base,
                        )
                        if not _alive(device):
                            lost = f"skipped: {device.serial} stopped answering after {label}"
            results.append(result)
            if results_path is not None:
                write_jsonl(Path(results_path), [result])
            logger.info("%s: %s%s", label, result.status, f" ({result.reason})" if result.reason else "")
            if progress is not None:
                progress(index, len(plan))
    if lost is None:
        for remote in pushed.values():
            if isinstance(remote, tuple):
                _remove(device, remote[0])
    else:
        logger.warning("%s; pushed models were not removed", lost)
    return results


def _alive(device: Device) -> bool:
    try:
        return device.shell("echo ok", timeout_s=10).stdout.strip() == "ok"
    except DeviceError:
        return False


def _remove(device: Device, remote_dir: str) -> None:
    try:
        device.remove(remote_dir, recursive=True)
    except DeviceError as exc:
        logger.warning("could not remove %s from %s: %s", remote_dir, device.serial, exc)


def _push_model(device: Device, model: Path, sha: str) -> tuple[str, str] | DeviceError:
    """Pushes a model; returns (remote dir, remote model path) or the error that stopped it."""
    remote_dir = f"{REMOTE_ROOT}/{sha[:16]}"
    remote_model = f"{remote_dir}/model.tflite"
    try:
        device.shell(["mkdir", "-p", remote_dir], timeout_s=30).check(
            f"create {remote_dir}", serial=device.serial
        )
        device.push(model, remote_model)
    except DeviceStorageFullError as exc:
        _remove(device, remote_dir)
        return exc
    except DeviceError as exc:
        return exc
    return remote_dir, remote_model


def _run_one(
    device: Device,
    binary: _Binary,
    runner: str | None,
    remote: tuple[str, str],
    local_tmp: Path,
    base: dict,
    label: str,
    *,
    runs: int,
    warmup_runs: int,
    min_secs: float,
    warmup_min_secs: float,
    energy: bool,
    baseline_s: float,
    sample_interval_s: float,
    battery_dir: str,
    run_timeout_s: float,
    op_profiling: bool,
) -> BenchmarkResult:
    remote_dir, remote_model = remote
    tag = f"{base['backend']}-t{base['threads']}"
    remote_samples = f"{remote_dir}/latency-{tag}.txt"
    remote_power = f"{remote_dir}/power-{tag}.txt"
    args = [
        *binary.command,
        f"--graph={remote_model}",
        f"--num_threads={base['threads']}",
        f"--num_runs={runs}",
        f"--warmup_runs={warmup_runs}",
        f"--min_secs={min_secs:g}",
        f"--warmup_min_secs={warmup_min_secs:g}",
        f"--result_file_path={remote_samples}",
        *_BACKEND_FLAGS[base["backend"]],
        *(["--enable_op_profiling=true"] if op_profiling else []),
    ]
    timeout_s = run_timeout_s
    if runner is not None:
        args = ["sh", runner, remote_power, battery_dir, f"{sample_interval_s:g}", f"{baseline_s:g}", *args]
        timeout_s += baseline_s + 10
    device.shell(["rm", "-f", remote_samples, remote_power], timeout_s=30)
    command = " ".join(quote(a) for a in args)
    started, t0 = _now(), time.monotonic()
    shell = device.shell(args, timeout_s=timeout_s)
    duration = time.monotonic() - t0
    output = shell.stdout + ("\n" + shell.stderr if shell.stderr else "")
    parsed = benchmark_output.parse(output)
    status, reason, delegation = _classify(base["backend"], parsed, shell.exit_code, output)
    measurement = Measurement(
        requested_runs=runs,
        requested_warmup_runs=warmup_runs,
        min_secs=min_secs,
        warmup_runs_done=parsed.warmup.count if parsed.warmup else None,
        binary=binary.description,
        binary_sha256=binary.sha256,
        command=command,
        started_at=started,
        finished_at=_now(),
        duration_s=duration,
    )
    if status != "ok":
        return BenchmarkResult(
            status=status, reason=reason, delegation=delegation, measurement=measurement,
            init_ms=parsed.init_ms, **base,
        )

    warnings: list[str] = []
    local_samples = local_tmp / f"{base['model_sha256'][:16]}-{tag}.txt"
    samples = None
    try:
        device.pull(remote_samples, local_samples, timeout_s=60)
        samples = _read_samples(local_samples)
    except _LOST:
        raise
    except DeviceError as exc:
        warnings.append(f"per-run samples unavailable ({exc}); statistics from the summary line")
    if samples is None and not warnings:
        warnings.append("the result file is not one number per line; statistics from the summary line")
    if samples:
        latency = LatencyStats.from_samples(samples)
    else:
        stats = parsed.inference
        latency = LatencyStats(
            count=stats.count, mean_us=stats.avg_us, std_us=stats.std_us, min_us=stats.min_us,
            max_us=stats.max_us, p50_us=stats.median_us, p90_us=None, p99_us=None,
            source="summary",
        )

    if op_profiling and not parsed.op_profile:
        warnings.append("op profiling was requested but the tool printed no per-op table")
    energy_result = None
    if runner is not None:
        inferences = (parsed.warmup.count if parsed.warmup else 0) + parsed.inference.count
        energy_result = _energy(device, remote_power, local_tmp / f"power-{tag}.txt", inferences)
        warnings.extend(energy_result.warnings)

    return BenchmarkResult(
        status="ok",
        init_ms=parsed.init_ms,
        first_inference_us=parsed.first_inference_us,
        warmup_avg_us=parsed.warmup_avg_us,
        latency=latency,
        samples_us=tuple(samples or ()),
        memory_init_mb=parsed.memory_init_mb,
        memory_overall_mb=parsed.memory_overall_mb,
        memory_peak_mb=parsed.memory_peak_mb,
        delegation=delegation,
        energy=energy_result,
        measurement=measurement,
        op_profile=parsed.op_profile,
        warnings=tuple(warnings),
        **base,
    )


def _energy(device: Device, remote: str, local: Path, inferences: int) -> EnergyResult:
    try:
        device.pull(remote, local, timeout_s=120)
    except _LOST:
        raise
    except DeviceError as exc:
        return EnergyResult.unavailable(f"no power samples from the device: {exc}")
    # The measured window covers every inference the tool ran: warm-up and timed runs.
    return compute_energy(parse_samples(local.read_text(encoding="utf-8", errors="replace")), inferences)
