"""Benchmark results: one frozen record per (model, device, backend, threads) run.

A result says how it was measured (runs, warm-up, timestamps, binary), keeps the raw
per-run samples, and never passes off a number it did not measure: a backend that could
not be used is `status="unsupported"` with the reason, a run that broke is
`status="failed"`, and their latency fields are None.

Results are stored as JSON lines (`write_jsonl` / `read_jsonl`, one result per line,
appended as each run completes) and compared with `compare(old, new)`.

Example:
    >>> stats = LatencyStats.from_samples([1000.0, 1100.0, 1200.0])
    >>> stats.p50_us
    1100.0
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from device_bench.benchmark_output import OpProfileRow, TimingStats
from device_bench.energy import EnergyResult
from device_bench.intervals import mean_interval, quantile_interval
from mobile_opt._files import check_not_special
from mobile_opt.errors import InputError

__all__ = [
    "BenchmarkResult",
    "Comparison",
    "Delegation",
    "LatencyStats",
    "Measurement",
    "compare",
    "jsonl_line",
    "read_jsonl",
    "write_jsonl",
]

STATUSES = ("ok", "unsupported", "failed")
# Benchmarks of several devices run on threads and may append to one file.
_WRITE_LOCK = threading.Lock()


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted data."""
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


# Histogram bins lie on nested log grids (G bins per decade, edges 10**(k/G)); the finest
# grid giving at most _MAX_BINS bins is used, so histograms of two runs can always be
# brought to a common grid by merging bins (every coarser grid's edges are a finer one's).
_GRIDS = (320, 160, 80, 40, 20, 10, 5, 2, 1)
_MAX_BINS = 60
_SOURCE_NAMES = {"result_proto": "binary result proto", "summary": "stats line"}


def _histogram(ordered: Sequence[float]) -> dict[str, list]:
    low, high = math.log10(max(ordered[0], 1e-3)), math.log10(max(ordered[-1], 1e-3))
    for grid in _GRIDS:
        first, last = math.floor(low * grid), math.floor(high * grid) + 1
        if last - first <= _MAX_BINS:
            break
    edges = [10 ** (k / grid) for k in range(first, last + 1)]
    counts = [0] * (len(edges) - 1)
    for value in ordered:
        index = bisect.bisect_right(edges, max(value, 1e-3)) - 1
        counts[min(max(index, 0), len(counts) - 1)] += 1
    return {"edges_us": edges, "counts": counts}


@dataclass(frozen=True)
class LatencyStats:
    """Latency of the timed runs in microseconds.

    `source` says where the numbers come from: "samples" (computed here from every run's
    time), "result_proto" (the tool's binary result file: mean, std, min, max, p5, median,
    p95) or "summary" (the tool's stats line). A percentile the source does not hold is None
    and `unavailable` says why — never estimated.

    `histogram` ({"edges_us": [...], "counts": [...]}, log-spaced, ≤ 60 bins on a nested
    grid) summarises every run when raw samples were read; None otherwise.

    `intervals_us` holds 95 % intervals (`device_bench.intervals`) as `[low, high]` for "p50",
    "p90", "p99" (order statistics of the runs) and "mean" (Student's t); an end that these
    runs cannot bound is None, and a figure without per-run times has no entry.
    """

    count: int
    mean_us: float | None
    std_us: float | None
    min_us: float | None
    max_us: float | None
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    source: str
    p5_us: float | None = None
    p95_us: float | None = None
    histogram: dict[str, list] | None = None
    unavailable: str | None = None
    intervals_us: dict[str, list] | None = None

    @classmethod
    def from_samples(cls, samples_us: Sequence[float]) -> "LatencyStats":
        """Statistics of raw samples (sample standard deviation; percentiles interpolated).

        Raises:
            ValueError: no samples.
        """
        if not samples_us:
            raise ValueError("LatencyStats.from_samples needs at least one sample.")
        ordered = sorted(float(s) for s in samples_us)
        n = len(ordered)
        mean = sum(ordered) / n
        std = math.sqrt(sum((s - mean) ** 2 for s in ordered) / (n - 1)) if n > 1 else 0.0
        return cls(
            count=n,
            mean_us=mean,
            std_us=std,
            min_us=ordered[0],
            max_us=ordered[-1],
            p5_us=_percentile(ordered, 5),
            p50_us=_percentile(ordered, 50),
            p90_us=_percentile(ordered, 90),
            p95_us=_percentile(ordered, 95),
            p99_us=_percentile(ordered, 99),
            source="samples",
            histogram=_histogram(ordered),
            intervals_us={
                **{f"p{q}": list(quantile_interval(ordered, q / 100)) for q in (50, 90, 99)},
                "mean": list(mean_interval(mean, std, n)),
            },
        )

    @classmethod
    def from_tool(cls, stats: TimingStats, *, source: str) -> "LatencyStats":
        """What the tool itself reports (result proto or stats line): no p90/p99 exist there."""
        mean_us, std_us = stats.avg_us, stats.std_us
        return cls(
            count=stats.count, mean_us=mean_us, std_us=std_us, min_us=stats.min_us, max_us=stats.max_us,
            p5_us=stats.p5_us, p50_us=stats.median_us, p95_us=stats.p95_us, p90_us=None, p99_us=None,
            source=source,
            unavailable=f"p90/p99 and the median's interval: the tool's {_SOURCE_NAMES.get(source, source)} "
            "holds only mean, std, min, max, p5, median and p95, and no per-run times",
            intervals_us=({"mean": list(mean_interval(mean_us, std_us, stats.count))}
                          if mean_us is not None and std_us is not None else None),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Delegation:
    """How much of the graph the requested delegate took.

    coverage: "full", "partial", "none", or "cpu" (no delegate requested).
    """

    delegate: str | None
    coverage: str
    kernels: int | None = None
    ops_on_delegate: int | None = None
    ops_on_cpu: int | None = None
    unsupported_ops: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["unsupported_ops"] = [list(op) for op in self.unsupported_ops]
        return data


@dataclass(frozen=True)
class Measurement:
    """How a run was measured: requested runs/warm-up, what ran, when (UTC ISO 8601).

    `min_secs` is the value the run used (raised by itself when an energy run needed it).
    """

    requested_runs: int
    requested_warmup_runs: int
    min_secs: float
    warmup_runs_done: int | None
    binary: str
    binary_sha256: str | None
    command: str
    started_at: str
    finished_at: str
    duration_s: float
    runs_limited_by: str | None = None  # how many timed runs were made, and which flag decided

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark run of one model on one device with one backend and thread count.

    Attributes:
        model_path, model_sha256, model_size_bytes: the model as given on the host.
        device: facts about the device (`DeviceInfo.to_dict()`: serial, transport, model,
            abi, android_version, sdk, battery).
        backend: "cpu", "gpu" or "nnapi"; threads: CPU threads asked for.
        status: "ok", "unsupported" (the backend cannot run here; `reason` says why) or
            "failed" (the run broke; `reason` has the error).
        init_ms, first_inference_us, warmup_avg_us: from the benchmark output.
        latency: statistics of the timed runs (with a histogram when every run's time was
            read); samples_us: every timed run (µs), only when asked for (`RunSettings.keep_samples`).
        memory_*: the tool's footprint lines (MB).
        delegation: delegate coverage; energy: the energy block (None when not requested).
        measurement: runs, warm-up, binary, command, timestamps.
        op_profile: per-op rows when op profiling was asked for and the tool printed them.
        thermal: {"before": {sensor: °C}, "after": {...}}: battery `temp` and thermal zones.
        warnings: anything that weakens the number (e.g. charging during energy runs).
    """

    model_path: str
    model_sha256: str
    model_size_bytes: int
    device: dict[str, Any]
    backend: str
    threads: int
    status: str
    reason: str | None = None
    init_ms: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    latency: LatencyStats | None = None
    samples_us: tuple[float, ...] = ()
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    delegation: Delegation | None = None
    energy: EnergyResult | None = None
    measurement: Measurement | None = None
    op_profile: tuple[OpProfileRow, ...] = ()
    thermal: dict[str, dict[str, float]] | None = None
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise InputError(
                f"status must be one of {STATUSES}. Received: status={self.status!r}"
            )

    @property
    def key(self) -> tuple[str, str, str, int]:
        """(model file name, device serial, backend, threads): what `compare` matches on."""
        return (Path(self.model_path).name, str(self.device.get("serial")), self.backend, self.threads)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists; nested records become dicts)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("latency", "delegation", "energy", "measurement"):
            value = data[name]
            data[name] = value.to_dict() if value is not None else None
        data["samples_us"] = list(self.samples_us)
        data["warnings"] = list(self.warnings)
        data["op_profile"] = [row.to_dict() for row in self.op_profile]
        return _json_safe(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkResult":
        """Inverse of `to_dict` (unknown keys are ignored, so newer files still load).

        Raises:
            InputError: a required field is missing or has the wrong type.
        """
        try:
            fields = {f.name for f in dataclasses.fields(cls)}
            values = {k: v for k, v in data.items() if k in fields}
            if values.get("latency") is not None:
                values["latency"] = LatencyStats(**values["latency"])
            if values.get("delegation") is not None:
                delegation = dict(values["delegation"])
                delegation["unsupported_ops"] = tuple(
                    tuple(op) for op in delegation.get("unsupported_ops", ())
                )
                values["delegation"] = Delegation(**delegation)
            if values.get("energy") is not None:
                values["energy"] = EnergyResult.from_dict(values["energy"])
            if values.get("measurement") is not None:
                values["measurement"] = Measurement(**values["measurement"])
            values["samples_us"] = tuple(float(s) for s in values.get("samples_us", ()))
            values["op_profile"] = tuple(OpProfileRow(**row) for row in values.get("op_profile", ()))
            values["warnings"] = tuple(values.get("warnings", ()))
            return cls(**values)
        except (TypeError, KeyError, ValueError) as exc:
            raise InputError(
                f"not a benchmark result record: {exc}. Received keys: {sorted(data)[:12]}"
            ) from exc


def jsonl_line(result: BenchmarkResult) -> str:
    """One result as a line of JSON (strict: no NaN), newline included."""
    return json.dumps(result.to_dict(), allow_nan=False, default=_json_default) + "\n"


def write_jsonl(path: Path, results: Iterable[BenchmarkResult], *, append: bool = True) -> None:
    """Writes results as JSON lines (appending by default), flushed per line.

    Args:
        path: the .jsonl file (parent directory must exist).
        results: results to write.
        append: add to the file (default True) or replace it.
    """
    lines = [jsonl_line(r) for r in results]
    with _WRITE_LOCK, open(path, "a" if append else "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            fh.flush()


def _json_safe(value: Any) -> Any:
    """Tuples → lists, NaN/inf → None (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_jsonl(path: Path) -> list[BenchmarkResult]:
    """Reads a results file written by `write_jsonl` (blank lines skipped).

    Raises:
        InputError: the file is missing, a named pipe (or socket, device: reading one would block),
            or a line is not a result (the line number is named).
    """
    path = check_not_special(path, what="Results file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read results file {str(path)!r} as JSON lines text: {exc}. "
            "Pass a file written by `mobile-opt bench --out`."
        ) from exc
    results = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise InputError(f"expected a JSON object, found {type(data).__name__}")
            results.append(BenchmarkResult.from_dict(data))
        except (json.JSONDecodeError, InputError, TypeError, ValueError, KeyError) as exc:
            raise InputError(
                f"{path}:{number} is not a benchmark result line ({exc}). "
                "Pass a file written by `mobile-opt bench --out`."
            ) from exc
    if not results:
        raise InputError(f"results file {str(path)!r} holds no result. Pass a file written by `mobile-opt bench --out`.")
    return results


@dataclass(frozen=True)
class Comparison:
    """Old vs new for one (model, device, backend, threads); deltas are new − old.

    `*_change_pct` is relative to old; None when either side has no value.
    """

    model: str
    device: str
    backend: str
    threads: int
    old_status: str | None
    new_status: str | None
    old_p50_us: float | None
    new_p50_us: float | None
    p50_change_pct: float | None
    old_p90_us: float | None
    new_p90_us: float | None
    p90_change_pct: float | None
    old_mean_us: float | None
    new_mean_us: float | None
    mean_change_pct: float | None
    old_energy_j: float | None
    new_energy_j: float | None
    energy_change_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _change(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or old == 0:
        return None
    return (new - old) / old * 100.0


def _metric(result: BenchmarkResult | None, name: str) -> float | None:
    if result is None or result.status != "ok" or result.latency is None:
        return None
    return getattr(result.latency, name)


def _energy(result: BenchmarkResult | None) -> float | None:
    if result is None or result.energy is None:
        return None
    return result.energy.energy_per_inference_j


def compare(old: Sequence[BenchmarkResult], new: Sequence[BenchmarkResult]) -> list[Comparison]:
    """Pairs old and new results by (model file name, device serial, backend, threads).

    When a key occurs more than once on one side, the last result wins (the latest run).
    Keys present on one side only appear with the other side None.

    Example:
        rows = compare(read_jsonl(Path("before.jsonl")), read_jsonl(Path("after.jsonl")))
    """
    old_by_key = {r.key: r for r in old}
    new_by_key = {r.key: r for r in new}
    keys = list(dict.fromkeys([*old_by_key, *new_by_key]))
    rows = []
    for key in keys:
        a, b = old_by_key.get(key), new_by_key.get(key)
        row = {}
        for metric in ("p50", "p90", "mean"):
            o, n = _metric(a, f"{metric}_us"), _metric(b, f"{metric}_us")
            row.update({f"old_{metric}_us": o, f"new_{metric}_us": n,
                        f"{metric}_change_pct": _change(o, n)})
        rows.append(
            Comparison(
                model=key[0],
                device=key[1],
                backend=key[2],
                threads=key[3],
                old_status=a.status if a else None,
                new_status=b.status if b else None,
                old_energy_j=_energy(a),
                new_energy_j=_energy(b),
                energy_change_pct=_change(_energy(a), _energy(b)),
                **row,
            )
        )
    return rows
