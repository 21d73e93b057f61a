"""Run `benchmark_model` on a device for models × backends × threads; optionally measure energy.

Flow for one device: facts (`Device.info()`), the benchmark binary for its ABI
(`device_bench.binary`), each model pushed to `/data/local/tmp/mobile_opt/<sha16>/`, then one
run per (model, backend, threads) (`device_bench._run`): output parsed, the tool's result file
read for latency statistics, delegate coverage read, thermal state before and after, energy
from the battery fuel gauge and, where the phone has them, its power rails (ODPM) when asked. Pushed
models are removed at the end; the binary stays for the next time. (`run_benchmarks` appends each
model's results to a JSON-lines file as they complete.)

On the host (`connect("host")`), the binary is `python -m device_bench.host_benchmark`.

Honesty rules: a backend whose delegate cannot be created or applied is "unsupported" with
the tool's own words, never a CPU number under its name; a run that breaks is "failed" with
the error; if the device disappears, completed results are kept and the remaining runs are
"failed" naming the device and the run that lost it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from android_harness import script_path
from device_bench import _run, device_state
from device_bench.binary import REMOTE_BIN, REMOTE_ROOT, default_cache_dir, prepare_binary, sha256
from device_bench.device import Device
from device_bench.energy import EnergyResult
from device_bench.results import BenchmarkResult
from device_bench.settings import EnergySettings, RunSettings, ToolSettings
from mobile_opt.errors import (
    DeviceError,
    DeviceStorageFullError,
    DeviceTimeoutError,
    InputError,
    ModelFormatError,
    UnsupportedModelError,
)

__all__ = ["BACKENDS", "benchmark", "default_cache_dir"]

logger = logging.getLogger(__name__)

BACKENDS = ("cpu", "gpu", "nnapi")
_LOST = _run.LOST

Progress = Callable[[int, int], None]


def _push_harness(device: Device) -> str:
    device.shell(["mkdir", "-p", REMOTE_BIN], timeout_s=30).check(
        "create the binary directory", serial=device.serial
    )
    for name in ("sample_power.sh", "run_benchmark.sh"):
        device.push(script_path(name), f"{REMOTE_BIN}/{name}", timeout_s=60)
    return f"{REMOTE_BIN}/run_benchmark.sh"


def validate_models(models: Sequence[Path]) -> list[Path]:
    """The models as Paths, each a whole, runnable .tflite; raises before any device work.

    Raises:
        InputError / ModelFormatError / UnsupportedModelError: naming the file and what is wrong.
    """
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
                f"first (`mobile-opt optimize`). Received: model={str(path)!r}"
            )
        _check_readable(path)
        paths.append(path)
    return paths


# LiteRT's kernels and delegates count a tensor's elements in 32-bit ints: past this the count
# wraps, and the tool fails with an unrelated word ("failed to delegate RESHAPE node").
_MAX_ELEMENTS = 2**31 - 1


def _check_readable(path: Path) -> None:
    """Parses the whole flatbuffer, so a damaged file or an impossible tensor fails before any run.

    Raises:
        ModelFormatError: the file is truncated or corrupt (named, with what is wrong).
        UnsupportedModelError: a tensor's shape has more elements than LiteRT can count.
    """
    from converters.tflite_model import load_tflite

    model = load_tflite(path)
    for index, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            elements = math.prod(1 if d < 0 else int(d) for d in tensor.shape)  # -1: a dynamic axis
            if elements > _MAX_ELEMENTS:
                where = f" in subgraph {index}" if index else ""
                raise UnsupportedModelError(
                    f"{path}: tensor {tensor.index} {tensor.name!r}{where} has shape {list(tensor.shape)}: "
                    f"{elements:,} elements, more than LiteRT's 32-bit element counts hold "
                    f"({_MAX_ELEMENTS:,}), so no backend can run it. Make that tensor smaller (a smaller input or "
                    f"layer) and convert again. Received: model={str(path)!r}"
                )


def check_matrix(backends: Sequence[str], threads: Sequence[int]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The backends and thread counts to run, as tuples; refuses an empty or unknown one.

    Raises:
        InputError: a backend outside BACKENDS, or a thread count that is not a positive int.
    """
    backends, threads = tuple(backends), tuple(threads)
    if not backends or any(b not in BACKENDS for b in backends):
        raise InputError(f"backends must be some of {BACKENDS}. Received: backends={backends!r}")
    if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
        raise InputError(f"threads must be positive integers. Received: threads={threads!r}")
    return backends, threads


def _validate(backends: tuple, threads: tuple, run: object, energy: object, tool: object) -> None:
    check_matrix(backends, threads)
    if not isinstance(run, RunSettings):
        raise InputError(f"run must be a RunSettings. Received: run={run!r}")
    if not isinstance(tool, ToolSettings):
        raise InputError(f"tool must be a ToolSettings. Received: tool={tool!r}")
    if energy is not None and not isinstance(energy, EnergySettings):
        raise InputError(
            f"energy must be an EnergySettings or None. Received: energy={energy!r}. "
            "Pass energy=EnergySettings() to measure energy."
        )


def benchmark(
    device: Device,
    models: Sequence[Path],
    *,
    backends: Sequence[str] = ("cpu",),
    threads: Sequence[int] = (1,),
    run: RunSettings = RunSettings(),
    energy: EnergySettings | None = None,
    tool: ToolSettings = ToolSettings(),
    progress: Progress | None = None,
) -> list[BenchmarkResult]:
    """Benchmarks every model with every backend and thread count on one device.

    Args:
        device: an open `Device` (from `device_bench.connect`).
        models: .tflite files on the host.
        backends: any of "cpu", "gpu", "nnapi" (default ("cpu",)).
        threads: CPU thread counts (default (1,)).
        run: runs, warm-up, minimum seconds, cooldown, timeout, op profiling, samples kept
            (default `RunSettings()`: ≥ 50 runs and ≥ 1 s of them, as benchmark_model does).
        energy: measure energy per inference from the battery (default None: no energy).
        tool: the device's `benchmark_model`, or the cache it is found in by ABI (default
            `ToolSettings()`: the cached one; on the host `python -m device_bench.host_benchmark`).
        progress: called as progress(runs_done, runs_total) after each run (default None).

    Returns:
        One `BenchmarkResult` per (model, backend, threads), in that order.

    Raises:
        InputError: bad arguments or a missing model file; ModelFormatError: not a .tflite, or
            a damaged one; UnsupportedModelError: a tensor's shape overflows LiteRT's element count.
        BenchmarkError: no usable benchmark binary (missing, wrong ABI).
        DeviceError: the device failed before any run started (e.g. pushing the binary).

    Example:
        with connect("auto") as phone:
            results = benchmark(phone, [Path("m.tflite")], backends=("cpu", "gpu"),
                                threads=(1, 4), energy=EnergySettings(),
                                tool=ToolSettings(cache_dir=Path("bins")))
        write_jsonl(Path("results.jsonl"), results)
    """
    backends, threads = tuple(backends), tuple(threads)
    _validate(backends, threads, run, energy, tool)
    paths = validate_models(models)

    info = device.info()
    facts = info.to_dict()
    binary = prepare_binary(device, info.abi, tool)
    runner, no_energy = None, None
    # The battery is found even without energy: its `temp` is part of the thermal state.
    found = device_state.find_battery(
        device, name=energy.battery if energy else None, directory=energy.battery_dir if energy else None
    )
    battery = found if isinstance(found, device_state.Battery) else None
    found_rails = None
    if energy is not None:
        found_rails = device_state.find_rails(device)
        if isinstance(found_rails, str):
            logger.info("%s", found_rails)
        if battery is not None:
            runner = _push_harness(device)
        else:
            no_energy = EnergyResult.unavailable(f"battery not readable: {found} (latency is still measured)")
            logger.warning("%s", no_energy.reason)

    plan = [(m, b, t) for m in paths for b in backends for t in threads]
    results: list[BenchmarkResult] = []
    pushed: dict[Path, tuple[str, str] | DeviceError] = {}
    lost: str | None = None
    with tempfile.TemporaryDirectory(prefix="mobile-opt-bench-") as tmp:
        ctx = _run.Context(device, binary, run, energy, runner, battery, Path(tmp), found_rails)
        for index, (model, backend, n_threads) in enumerate(plan, start=1):
            label = f"run {index}/{len(plan)} ({model.name}, {backend}, {n_threads} threads)"
            base = dict(
                model_path=str(model),
                model_sha256=sha256(model),
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
                    if index > 1 and run.cooldown_s > 0:
                        time.sleep(run.cooldown_s)
                    try:
                        result = _run.run_one(ctx, remote, base, label)
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
                            f"{run.run_timeout_s:g} s: {exc}",
                            **base,
                        )
                        if not _alive(device):
                            lost = f"skipped: {device.serial} stopped answering after {label}"
            results.append(result)
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
