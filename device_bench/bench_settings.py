"""What `run_benchmarks` does besides measuring: gates, output checks, files (`BenchSettings`).

All frozen and validated on construction, so a bad value fails before any device is opened.
How each benchmark runs is `RunSettings`, which tool runs it `ToolSettings`, energy is
`EnergySettings` (`device_bench.settings`).

Example:
    >>> s = BenchSettings(backends=("cpu", "gpu"), gates=GateSettings(baseline="old.jsonl", max_regression="5%"))
    >>> s.gates.max_regression
    0.05
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from device_bench.bench import check_matrix
from device_bench.settings import EnergySettings, RunSettings, ToolSettings, _path, _set
from mobile_opt._checks import check_number
from mobile_opt.errors import InputError

__all__ = ["BenchSettings", "GateSettings", "OutputCheckSettings", "ReportFiles"]


@dataclass(frozen=True)
class GateSettings:
    """Comparison with old results and the CI gates on the new ones.

    Args:
        baseline: old results (.jsonl, e.g. an earlier `ReportFiles.jsonl`) to compare with
            (default None: no comparison).
        max_regression: fail a (model, device model, backend, threads) whose median latency or
            energy per inference got slower than `baseline` by more than this, significantly
            (`device_bench.regression`): a fraction (0.05) or a percentage ("5%") (default None).
        latency_budgets: `converters.budget.Budget`s whose `max_p50_ms` the results must hold
            (e.g. `load_budgets("pyproject.toml")`; default none).
        budget_root: the directory the budgets' globs are relative to (default ".").

    Raises:
        InputError: `max_regression` without `baseline`, or unreadable; a budget without `max_p50_ms`.
    """

    baseline: Path | None = None
    max_regression: float | None = None
    latency_budgets: tuple = ()
    budget_root: Path = Path(".")

    def __post_init__(self) -> None:
        from device_bench.regression import parse_threshold

        _set(self, "baseline", _path(self.baseline, "baseline"))
        _set(self, "budget_root", _path(self.budget_root, "budget_root"))
        if self.max_regression is not None:
            if self.baseline is None:
                raise InputError("max_regression compares with old results; give baseline= too "
                                 f"(bench --compare). Received: max_regression={self.max_regression!r}")
            _set(self, "max_regression", parse_threshold(self.max_regression, "max_regression"))
        budgets = tuple(self.latency_budgets)
        if any(not getattr(b, "max_p50_ms", None) for b in budgets):
            raise InputError("latency_budgets take budgets with max_p50_ms (converters.budget.Budget). "
                             f"Received: {[getattr(b, 'pattern', b) for b in budgets]!r}")
        _set(self, "latency_budgets", budgets)

    @property
    def any(self) -> bool:
        return self.max_regression is not None or bool(self.latency_budgets)


@dataclass(frozen=True)
class OutputCheckSettings:
    """Run inputs through each backend on each device and compare with LiteRT on the host.

    Args:
        data: {model path: (inputs, labels)} (labels may be None; `check_outputs` says what
            fits); None: random inputs for every model (agreement only, no accuracy) (default).
        samples: inputs checked per model (default 100).
        max_output_diff: gate on each backend's max |output - host| (default None: no gate).
        max_accuracy_drop_pp: gate on the accuracy lost against the host, in percentage points
            (needs labels; default None).
        require_full_delegation: fail a delegate that leaves any op to the CPU (default False).

    Raises:
        InputError: a negative or non-finite limit, samples < 1.
    """

    data: Mapping[Any, tuple] | None = None
    samples: int = 100
    max_output_diff: float | None = None
    max_accuracy_drop_pp: float | None = None
    require_full_delegation: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise InputError(f"samples must be an integer >= 1. Received: samples={self.samples!r}")
        for name in ("max_output_diff", "max_accuracy_drop_pp"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a finite number >= 0 or None. Received: {name}={value!r}")
        if self.data is not None:
            _set(self, "data", {Path(k): tuple(v) for k, v in dict(self.data).items()})

    @property
    def gated(self) -> bool:
        return self.max_output_diff is not None or self.max_accuracy_drop_pp is not None or \
            self.require_full_delegation

    def data_for(self, model: Path) -> tuple:
        """(inputs, labels) for `model`; (None, None) for random inputs.

        Raises:
            InputError: `data` is given and has nothing for `model`.
        """
        if self.data is None:
            return None, None
        for key, value in self.data.items():
            if key == model or key.resolve() == model.resolve():
                return value
        raise InputError(f"OutputCheckSettings.data has no (inputs, labels) for {str(model)!r}; give them for "
                         f"every model, or data=None for random inputs. Received keys: {[str(k) for k in self.data]}")


@dataclass(frozen=True)
class ReportFiles:
    """Files `run_benchmarks` writes; each is checked writable before any benchmark runs.

    Args:
        jsonl: results are appended here as JSON lines as each completes (default None).
        plot: a latency box plot (PNG); with op profiling also `<stem>_ops_<n>.png` beside it
            (default None).
        junit: the gates as JUnit XML (default None; needs a gate).
    """

    jsonl: Path | None = None
    plot: Path | None = None
    junit: Path | None = None

    def __post_init__(self) -> None:
        for name in ("jsonl", "plot", "junit"):
            _set(self, name, _path(getattr(self, name), name))


@dataclass(frozen=True)
class BenchSettings:
    """Everything `run_benchmarks` does, validated before it opens a device.

    Args:
        devices: "host" (default), "auto" (the one attached), "all" (every attached device),
            a serial, "direct:HOST[:PORT]", or several of these (a sequence or comma-separated);
            several run concurrently.
        backends: any of "cpu", "gpu", "nnapi" (default ("cpu",)).
        threads: CPU thread counts (default (1,)).
        run: how each benchmark runs (default `RunSettings()`; a plot keeps every run's latency
            whatever its `keep_samples`).
        energy: measure energy per inference (default None: no).
        shard: spread the models over devices of the same model and ABI (default False).
        retries: times a run may move to another such device when its device is lost (default 0).
        tool: the device's `benchmark_model` and the binary cache (default `ToolSettings()`).
        adb_port: the adb server's port (default $ANDROID_ADB_SERVER_PORT or 5037).
        gates: comparison and gates (default `GateSettings()`: none).
        outputs: output checks (default None: none).
        files: files to write (default `ReportFiles()`: none).

    Raises:
        InputError: any value out of range (named), or a JUnit file with no gate to report.
    """

    devices: str | Sequence[str] = "host"
    backends: tuple[str, ...] = ("cpu",)
    threads: tuple[int, ...] = (1,)
    run: RunSettings = field(default_factory=RunSettings)
    energy: EnergySettings | None = None
    shard: bool = False
    retries: int = 0
    tool: ToolSettings = field(default_factory=ToolSettings)
    adb_port: int | None = None
    gates: GateSettings = field(default_factory=GateSettings)
    outputs: OutputCheckSettings | None = None
    files: ReportFiles = field(default_factory=ReportFiles)

    def __post_init__(self) -> None:
        specs = self.devices.split(",") if isinstance(self.devices, str) else list(self.devices)
        specs = tuple(dict.fromkeys(s.strip() for s in specs if isinstance(s, str) and s.strip()))
        if not specs:
            raise InputError(f"devices must name at least one device ('host', 'auto', 'all', a serial). "
                             f"Received: devices={self.devices!r}")
        _set(self, "devices", specs)
        backends, threads = check_matrix(self.backends, self.threads)
        _set(self, "backends", backends)
        _set(self, "threads", threads)
        for name, kind in (("run", RunSettings), ("tool", ToolSettings), ("gates", GateSettings),
                           ("files", ReportFiles)):
            if not isinstance(getattr(self, name), kind):
                raise InputError(f"{name} must be a {kind.__name__}. Received: {name}={getattr(self, name)!r}")
        for name, kind in (("energy", EnergySettings), ("outputs", OutputCheckSettings)):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), kind):
                raise InputError(f"{name} must be a {kind.__name__} or None. Received: {name}={getattr(self, name)!r}")
        check_number("retries", self.retries, at_least=0, integer=True)
        check_number("adb_port", self.adb_port, at_least=1, at_most=65535, integer=True, optional=True,
                     hint="(a port number, or None)")
        if self.files.junit is not None and not (self.gates.any or (self.outputs is not None and self.outputs.gated)):
            raise InputError("files.junit reports the gates, and none is set: give gates.max_regression, "
                             "gates.latency_budgets or an output gate (bench --fail-on-regression). "
                             f"Received: junit={str(self.files.junit)!r}")

