"""What each backend computes: a batch of inputs run on the device, outputs compared with the host.

The official tool does it: LiteRT's `benchmark_model` reads an input tensor's raw bytes from
`--input_layer_value_files=name:path` (exactly the tensor's bytes; a `:` in a name is written
`::`, as `SplitInputLayerNameAndValueFile` reads it, not `\\:` as the flag's help says),
and `--output_filepath=path` writes every output tensor's raw bytes, in the model's output order,
after the benchmark ends (`tflite/tools/benchmark/benchmark_tflite_model.cc`: `LoadInputTensorData`,
`OutputSaver`). The batch is one tensor: the input is resized to
`n` samples (`--input_layer`, `--input_layer_shape`), so one invocation checks them all.

Each backend variant runs once: "cpu"; "gpu" (the tool's default, precision loss allowed:
fp16); "gpu_fp32" (`--gpu_precision_loss_allowed=false`); "nnapi"; "nnapi_fp16"
(`--nnapi_allow_fp16=true`). The reference is LiteRT's CPU on the host, on the same bytes.
A backend the device cannot run is "unsupported" with the tool's words, and has no figures.

Example:
    >>> with device_bench.connect("emulator-5554") as dev:                  # doctest: +SKIP
    ...     check = check_outputs(dev, "model.tflite", x_val[:100], y_val[:100])
    >>> [(b.backend, b.top1_agreement) for b in check.backends]               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from device_bench import _run, benchmark_output
from device_bench.binary import REMOTE_ROOT, prepare_binary, sha256
from device_bench.device import Device
from device_bench.settings import ToolSettings
from mobile_opt.errors import DeviceError, InputError

__all__ = ["BackendOutputs", "OutputCheck", "OutputGateReport", "OutputGateResult", "VARIANTS", "check_outputs", "gate_outputs"]

logger = logging.getLogger(__name__)

# variant -> (backend, extra flags), from tflite/tools/delegates/{gpu,nnapi}_delegate_provider.cc
VARIANTS = {
    "cpu": ("cpu", ()),
    "gpu": ("gpu", ()),
    "gpu_fp32": ("gpu", ("--gpu_precision_loss_allowed=false",)),
    "nnapi": ("nnapi", ()),
    "nnapi_fp16": ("nnapi", ("--nnapi_allow_fp16=true",)),
}
_NUMERIC = (np.float32, np.float16, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_)


@dataclass(frozen=True)
class BackendOutputs:
    """One backend's outputs against the host reference; figures are None unless it ran."""

    backend: str
    status: str  # "ok", "unsupported" or "failed"
    reason: str | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    bit_exact: bool | None = None
    top1_agreement: float | None = None
    accuracy: float | None = None
    delegation: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OutputCheck:
    """Per-backend agreement with LiteRT's CPU on the host, on `samples` inputs."""

    model: str
    device: dict
    inputs: str  # "user data" or why random inputs were used
    samples: int
    reference: str
    reference_accuracy: float | None
    backends: tuple[BackendOutputs, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "inputs": self.inputs, "samples": self.samples,
                "reference": self.reference, "reference_accuracy": self.reference_accuracy,
                "backends": [b.to_dict() for b in self.backends]}


def check_outputs(device: Device, model: str | Path, inputs: Any = None, labels: Any = None, *,
                  backends: Sequence[str] = ("cpu", "gpu", "gpu_fp32", "nnapi"),
                  tool: ToolSettings = ToolSettings(), samples: int = 100) -> OutputCheck:
    """Runs `inputs` through every backend variant on `device` and compares with the host.

    Args:
        device: from `device_bench.connect`.
        model: a .tflite with one numeric input.
        inputs: samples on axis 0, shaped like the model's input without its batch axis
            (float data for an int8-input model is quantized with the input's scale); None:
            random inputs, and the result says so.
        labels: class indices for `inputs` (optional): accuracy per backend.
        backends: names from `VARIANTS`.
        tool: the device's `benchmark_model` (default `ToolSettings()`: as for `benchmark`).
        samples: at most this many inputs (default 100).

    Raises:
        InputError: an unknown backend, a model with several or string inputs, inputs or
            labels that do not fit the model (the input is named).
    """
    from converters.interpreter import make_interpreter

    unknown = [b for b in backends if b not in VARIANTS]
    if unknown or not backends:
        raise InputError(f"backends must be some of {tuple(VARIANTS)}. Received: {list(backends)!r}")
    if not isinstance(tool, ToolSettings):
        raise InputError(f"tool must be a ToolSettings. Received: tool={tool!r}")
    path = Path(model)
    interpreter = make_interpreter(path.read_bytes())
    detail = _single_input(interpreter, path)
    batch, source = _batch(detail, inputs, samples)
    truth = _labels(labels, len(batch))
    expected = _Expected(detail, batch.shape, _run_host(interpreter, detail, batch), truth)
    ref_accuracy = _accuracy(expected.outputs[0], truth)
    info = device.info()
    binary = prepare_binary(device, info.abi, tool)
    remote_dir = f"{REMOTE_ROOT}/outputs-{sha256(path)[:16]}"
    results = []
    with tempfile.TemporaryDirectory(prefix="mobile-opt-outputs-") as tmp:
        local_in = Path(tmp) / "input.bin"
        local_in.write_bytes(np.ascontiguousarray(batch).tobytes())
        device.shell(["mkdir", "-p", remote_dir], timeout_s=30).check(f"create {remote_dir}", serial=device.serial)
        try:
            device.push(path, f"{remote_dir}/model.tflite")
            device.push(local_in, f"{remote_dir}/input.bin")
            for name in backends:
                results.append(_run_variant(device, binary, remote_dir, Path(tmp), name, expected))
        finally:
            device.shell(["rm", "-rf", remote_dir], timeout_s=30)
    return OutputCheck(str(path), info.to_dict(), source, len(batch), "LiteRT CPU on the host (same input bytes)",
                       ref_accuracy, tuple(results))


@dataclass(frozen=True)
class _Expected:
    """The host's side of a check: the input tensor, the batch's shape, LiteRT's outputs, the labels."""

    detail: dict
    shape: tuple
    outputs: list[np.ndarray]
    truth: np.ndarray | None


def _single_input(interpreter, path: Path) -> dict:
    details = interpreter.get_input_details()
    if len(details) != 1:
        raise InputError(f"{path}: output checks take models with one input; this one has {len(details)}: "
                         f"{[d['name'] for d in details]}.")
    detail = details[0]
    if detail["dtype"] not in _NUMERIC:
        raise InputError(f"{path}: input {detail['name']!r} is of type {np.dtype(detail['dtype']).name}; output "
                         "checks need a numeric input tensor.")
    return detail


def _batch(detail: dict, inputs: Any, samples: int) -> tuple[np.ndarray, str]:
    shape, dtype = tuple(int(d) for d in detail["shape"][1:]), np.dtype(detail["dtype"])
    if inputs is None:
        rng = np.random.default_rng(0)
        if dtype.kind == "f":
            data = rng.random((samples, *shape)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, (samples, *shape), endpoint=True).astype(dtype)
        return data, "random inputs (no data given): agreement only, no accuracy"
    data = np.asarray(inputs)[:samples]
    if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != shape or len(data) == 0:
        raise InputError(f"Inputs for {detail['name']!r} must be samples of shape {shape} on axis 0. "
                         f"Received: an array of shape {data.shape}.")
    if data.dtype.kind == "f" and dtype.kind in "iu":
        scale, zero = detail["quantization"]
        if not scale:
            raise InputError(f"Input {detail['name']!r} is {dtype.name} without quantization: give {dtype.name} data.")
        info = np.iinfo(dtype)
        data = np.clip(np.round(data / scale + zero), info.min, info.max)
    elif data.dtype.kind not in "fiub":
        raise InputError(f"Inputs for {detail['name']!r} must be numbers. Received: dtype {data.dtype}.")
    return data.astype(dtype), "user data"


def _labels(labels: Any, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    y = np.asarray(labels)[:n]
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise InputError(f"labels must be {n} class indices, one per input. Received: shape {y.shape}, {y.dtype}.")
    return y


def _run_host(interpreter, detail: dict, batch: np.ndarray) -> list[np.ndarray]:
    interpreter.resize_tensor_input(detail["index"], batch.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], batch)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def _accuracy(first_output: np.ndarray, truth: np.ndarray | None) -> float | None:
    if truth is None or first_output.ndim < 2 or first_output.shape[-1] < 2:
        return None
    return float(np.mean(first_output.reshape(len(truth), -1).argmax(-1) == truth))


def _run_variant(device: Device, binary, remote_dir: str, tmp: Path, name: str,
                 expected: _Expected) -> BackendOutputs:
    backend, flags = VARIANTS[name]
    remote_out = f"{remote_dir}/{name}.out"
    layer, shape, reference = expected.detail["name"], expected.shape, expected.outputs
    args = [*binary.command, f"--graph={remote_dir}/model.tflite", "--num_threads=1", "--num_runs=1",
            "--warmup_runs=0", "--min_secs=0", "--warmup_min_secs=0", f"--input_layer={layer}",
            "--input_layer_shape=" + ",".join(str(d) for d in shape),
            f"--input_layer_value_files={layer.replace(':', '::')}:{remote_dir}/input.bin",
            f"--output_filepath={remote_out}", *_run._BACKEND_FLAGS[backend], *flags]  # noqa: SLF001
    shell = device.shell(args, timeout_s=300)
    output = shell.stdout + ("\n" + shell.stderr if shell.stderr else "")
    parsed = benchmark_output.parse(output)
    status, reason, delegation = _run._classify(backend, parsed, shell.exit_code, output)  # noqa: SLF001
    coverage = None if backend == "cpu" else delegation.to_dict()
    if status != "ok":
        return BackendOutputs(name, status, reason, delegation=coverage)
    local = tmp / f"{name}.out"
    try:
        device.pull(remote_out, local, timeout_s=120)
    except DeviceError as exc:
        return BackendOutputs(name, "failed", f"the tool wrote no output file ({exc})", delegation=coverage)
    got = _split(local.read_bytes(), reference)
    if got is None:
        size = sum(r.nbytes for r in reference)
        return BackendOutputs(name, "failed", f"the output file has {local.stat().st_size} bytes, expected "
                              f"{size} (the outputs of {shape[0]} samples)", delegation=coverage)
    diffs = [np.abs(g.astype(np.float64) - r.astype(np.float64)) for g, r in zip(got, reference)]
    agreement = None
    if reference[0].ndim >= 2 and reference[0].shape[-1] >= 2:
        flat = (len(reference[0]), -1)
        agreement = float(np.mean(got[0].reshape(flat).argmax(-1) == reference[0].reshape(flat).argmax(-1)))
    return BackendOutputs(
        name, "ok", max_abs_diff=float(max(d.max() for d in diffs)),
        mean_abs_diff=float(np.mean(np.concatenate([d.ravel() for d in diffs]))),
        bit_exact=all(g.tobytes() == r.tobytes() for g, r in zip(got, reference)),
        top1_agreement=agreement, accuracy=_accuracy(got[0], expected.truth), delegation=coverage)


def _split(data: bytes, reference: list[np.ndarray]) -> list[np.ndarray] | None:
    """The tool's output file: each output tensor's raw bytes, one after another."""
    if len(data) != sum(r.nbytes for r in reference):
        return None
    out, offset = [], 0
    for r in reference:
        out.append(np.frombuffer(data, dtype=r.dtype, count=r.size, offset=offset).reshape(r.shape))
        offset += r.nbytes
    return out


@dataclass(frozen=True)
class OutputGateResult:
    """One gate on one backend's outputs (the shape `mobile-opt check`'s reporters read)."""

    path: str
    pattern: str  # "<backend> on <device>"
    metric: str  # "output_diff", "accuracy_drop" or "delegation"
    limit: float | None
    actual: float | None
    ok: bool
    note: str = ""
    status: str | None = None  # "over", "not testable" or None (held)

    def describe(self) -> str:
        what = {"output_diff": "max |output - host|", "accuracy_drop": "accuracy drop vs host (pp)",
                "delegation": "ops on the CPU"}[self.metric]
        if self.status == "not testable":
            return f"{self.path} {self.pattern}: {what} not measured ({self.note})"
        relation = "<=" if self.ok else ">"
        return f"{self.path} {self.pattern}: {what} {self.actual:g} {relation} {self.limit:g}" + (
            f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OutputGateReport:
    results: tuple[OutputGateResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> tuple[OutputGateResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "results": [r.to_dict() for r in self.results]}


def gate_outputs(checks: Sequence[OutputCheck], *, max_output_diff: float | None = None,
                 max_accuracy_drop_pp: float | None = None, require_full_delegation: bool = False) -> OutputGateReport:
    """Gates per backend: output difference, accuracy drop against the host, full delegation.

    A backend that did not run is "not testable" and holds (it is reported as unsupported or
    failed by the check itself); a gate that needs labels when none were given is "not testable".
    """
    out = []
    for check in checks:
        for b in check.backends:
            where = f"{b.backend} on {check.device.get('model') or check.device.get('serial')}"

            def add(metric, limit, actual, note=""):
                if actual is None:
                    out.append(OutputGateResult(check.model, where, metric, limit, None, True,
                                                note or f"backend {b.status}", "not testable"))
                else:
                    ok = actual <= limit
                    out.append(OutputGateResult(check.model, where, metric, limit, actual, ok, note,
                                                None if ok else "over"))

            ran = b.status == "ok"
            if max_output_diff is not None:
                add("output_diff", max_output_diff, b.max_abs_diff if ran else None)
            if max_accuracy_drop_pp is not None:
                drop = None
                if ran and b.accuracy is not None and check.reference_accuracy is not None:
                    drop = round((check.reference_accuracy - b.accuracy) * 100, 6)
                add("accuracy_drop", max_accuracy_drop_pp, drop, "" if ran and b.accuracy is not None or not ran
                    else "no labels given")
            if require_full_delegation and b.delegation is not None:
                on_cpu = None if not ran else (0 if b.delegation.get("coverage") == "full"
                                               else b.delegation.get("ops_on_cpu") or 1)
                add("delegation", 0, on_cpu, "" if on_cpu is None or on_cpu == 0
                    else f"coverage {b.delegation.get('coverage')}")
    return OutputGateReport(tuple(out))
