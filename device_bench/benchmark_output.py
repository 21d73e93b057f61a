"""Parse the text printed by TFLite/LiteRT `benchmark_model` (pure: no I/O).

Accepts every output variant of the official binary that matters to us: stats lines with or
without ` p5= median= p95=`, the degenerate `count=0` and `count=N curr=C(all same)` forms,
numbers in C++ stream notation (`1.23457e+06`), the current `Inference timings in us:` and the
old `Average inference timings in us:` lines, memory footprint, delegate application lines,
the GPU delegate's unsupported-op list, NNAPI accelerator lists and op-profiling tables (tab
separated and CSV, with or without the `[start]` column). A field the output does not contain
is `None`, never 0.

Example:
    >>> out = parse("INFO: count=3 first=10 curr=12 min=10 max=12 avg=11 std=1")
    >>> out.inference.avg_us
    11.0
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BenchmarkOutput",
    "DelegateApplication",
    "OpProfileRow",
    "OpTypeSummaryRow",
    "TimingStats",
    "parse",
]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"
_PREFIX = re.compile(r"^(?:(?:INFO|WARN|WARNING|ERROR|VERBOSE|FATAL):\s*)+")
_STATS = re.compile(r"^count=(?P<count>\d+)(?P<rest>.*)$")
_KV = re.compile(rf"(\w+)=({_NUM})")
_RUNNING = re.compile(
    rf"Running benchmark for at least (?P<runs>\d+) iterations and at least (?P<secs>{_NUM}) "
    rf"seconds but terminate if exceeding (?P<max>{_NUM}) seconds"
)
_TIMINGS = re.compile(r"(?:Average )?[Ii]nference timings in us:(?P<pairs>.*)$")
_TIMING_KEYS = {
    "init": "init_us",
    "first inference": "first_inference_us",
    "warmup (avg)": "warmup_avg_us",
    "warmup": "warmup_avg_us",
    "inference (avg)": "inference_avg_us",
    "inference": "inference_avg_us",
    "no stats": "inference_avg_us",
}
_INIT_SESSION = re.compile(rf"Initialized session in (?P<ms>{_NUM})\s*ms")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): (?P<mb>{_NUM})")
_MEM_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\): init=(?P<init>{_NUM}) "
    rf"overall=(?P<overall>{_NUM})"
)
_MEM_PEAK = re.compile(
    rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{_NUM})"
)
_APPLIED_FULL = re.compile(
    r"Explicitly applied (?P<name>.+?) delegate, and the model graph will be completely"
    r"\s*executed by the delegate"
)
_APPLIED_PARTIAL = re.compile(
    r"Explicitly applied (?P<name>.+?) delegate, and the model graph will be partially"
    r"\s*executed by the delegate w/ (?P<k>\d+) delegate kernels"
)
_APPLIED_NONE = re.compile(
    r"Though (?P<name>.+?) delegate is explicitly applied, the model graph will not be"
    r"\s*executed by the delegate"
)
_APPLY_FAILED = re.compile(r"Failed to apply (?P<name>.+?) delegate\.")
_UNSUPPORTED_PLATFORM = re.compile(
    r"(?P<name>GPU|NNAPI|Hexagon|XNNPACK|CoreML)\S* acceleration is unsupported on this platform"
)
_GPU_OPS_HEADER = "Following operations are not supported by GPU delegate:"
_GPU_SPLIT = re.compile(
    r"(?P<gpu>\d+) operations will run on the GPU, and the remaining (?P<cpu>\d+) "
    r"operations? will run on the CPU"
)
_NNAPI_AVAILABLE = re.compile(r"NNAPI accelerators available: \[(?P<list>[^\]]*)\]")
_NNAPI_PARAM = re.compile(r"nnapi accelerator name: \[[^\]]*\] \(Available: (?P<list>[^)]*)\)")
_TABLE_TITLE = re.compile(r"^=+ (?P<title>.+?) =+$")
_SECTION_INIT = "Profiling Info for Benchmark Initialization"
_SECTION_RUN = "Operator-wise Profiling Info for Regular Benchmark Runs"


@dataclass(frozen=True)
class TimingStats:
    """One `count=… first=… …` stats line; times in microseconds, absent fields None.

    `all_same` is True for the `count=N curr=C(all same)` form (then every run took `curr`).
    """

    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None
    all_same: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DelegateApplication:
    """How an explicitly applied delegate took the graph: coverage "full", "partial" or "none"."""

    name: str
    coverage: str
    kernels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OpProfileRow:
    """One row of an op-profiling table (`section`: "init" or "run"; times in ms)."""

    section: str
    table: str
    node_type: str
    name: str
    start_ms: float | None
    first_ms: float | None
    avg_ms: float | None
    percent: float | None
    cdf_percent: float | None
    mem_kb: float | None
    times_called: int | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OpTypeSummaryRow:
    """One row of the `Summary by node type` table."""

    section: str
    node_type: str
    count: int | None
    avg_ms: float | None
    percent: float | None
    cdf_percent: float | None
    mem_kb: float | None
    times_called: int | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BenchmarkOutput:
    """Everything `parse` understood in one benchmark_model output; absent fields are None.

    `warmup` / `inference` are the stats lines that follow the warm-up and the regular
    "Running benchmark for at least …" lines. `unsupported_delegates` maps a delegate name to
    the line saying it cannot be created on this platform; `delegate_failures` lists the
    delegates that failed to apply. `errors` keeps every ERROR line verbatim.
    """

    model_size_mb: float | None = None
    init_ms: float | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    warmup: TimingStats | None = None
    inference: TimingStats | None = None
    requested_runs: int | None = None
    requested_min_secs: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    delegates: tuple[DelegateApplication, ...] = ()
    delegate_failures: tuple[str, ...] = ()
    unsupported_delegates: dict[str, str] = dataclasses.field(default_factory=dict)
    gpu_unsupported_ops: tuple[tuple[str, str], ...] = ()
    gpu_ops_on_gpu: int | None = None
    gpu_ops_on_cpu: int | None = None
    nnapi_accelerators: tuple[str, ...] | None = None
    cpu_fallback_disallowed: bool = False
    benchmark_failed: bool = False
    errors: tuple[str, ...] = ()
    op_profile: tuple[OpProfileRow, ...] = ()
    op_type_summary: tuple[OpTypeSummaryRow, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse(text: str) -> BenchmarkOutput:
    """Parses the stdout (+stderr) of a `benchmark_model` run.

    Args:
        text: the whole output; Windows line ends and logcat-less output are fine.

    Returns:
        A `BenchmarkOutput`; nothing found yields an object whose fields are all None/empty.

    Example:
        >>> parse("INFO: Initialized session in 3.2ms.").init_ms
        3.2
    """
    if not isinstance(text, str):
        raise TypeError(f"parse expects the output text as str. Received: text={type(text)!r}")
    fields: dict[str, Any] = {}
    stats_after_running: list[TimingStats] = []
    loose_stats: list[TimingStats] = []
    running_lines = 0
    delegates: list[DelegateApplication] = []
    failures: list[str] = []
    unsupported: dict[str, str] = {}
    gpu_ops: list[tuple[str, str]] = []
    errors: list[str] = []
    rows: list[OpProfileRow] = []
    summary_rows: list[OpTypeSummaryRow] = []

    section = "run"
    table: str | None = None
    columns: list[str] | None = None
    in_gpu_ops = False
    pending_stats_slot = False

    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        is_error = bool(re.match(r"^(?:ERROR|FATAL):", raw.strip()))
        line = _PREFIX.sub("", raw.strip())
        if is_error and line:
            errors.append(line)
        if not line:
            table, columns = None, None
            continue

        if in_gpu_ops:
            split = _GPU_SPLIT.search(line)
            if split:
                fields["gpu_ops_on_gpu"] = int(split["gpu"])
                fields["gpu_ops_on_cpu"] = int(split["cpu"])
                in_gpu_ops = False
            else:
                op, _, reason = line.partition(":")
                gpu_ops.append((op.strip(), reason.strip()))
            continue
        if _GPU_OPS_HEADER in line:
            in_gpu_ops = True
            continue
        split = _GPU_SPLIT.search(line)
        if split:
            fields["gpu_ops_on_gpu"] = int(split["gpu"])
            fields["gpu_ops_on_cpu"] = int(split["cpu"])
            continue

        if _SECTION_INIT in line:
            section, table, columns = "init", None, None
            continue
        if _SECTION_RUN in line:
            section, table, columns = "run", None, None
            continue
        title = _TABLE_TITLE.match(line)
        if title:
            table, columns = title["title"], None
            continue
        if table is not None:
            if columns is None and _looks_like_header(line):
                columns = _header_columns(line)
                continue
            if columns is not None:
                cells = _cells(raw, len(columns))
                if cells is not None:
                    _add_row(section, table, columns, cells, rows, summary_rows)
                    continue
            table, columns = None, None

        stats = _STATS.match(line)
        if stats:
            parsed = _parse_stats(stats)
            if pending_stats_slot:
                stats_after_running.append(parsed)
                pending_stats_slot = False
            else:
                loose_stats.append(parsed)
            continue
        running = _RUNNING.search(line)
        if running:
            running_lines += 1
            pending_stats_slot = True
            fields["requested_runs"] = int(running["runs"])
            fields["requested_min_secs"] = float(running["secs"])
            continue

        if m := _TIMINGS.search(line):
            # Current: "Init: i, First inference: f, Warmup (avg): w, Inference (avg): a";
            # older builds: "Warmup: w, Init: i, Inference: a" (or "no stats: a").
            for pair in m["pairs"].split(","):
                key, _, value = pair.partition(":")
                name = _TIMING_KEYS.get(key.strip().lower())
                if name and re.fullmatch(_NUM, value.strip()):
                    fields[name] = float(value)
        elif m := _INIT_SESSION.search(line):
            fields["init_ms"] = float(m["ms"])
        elif m := _MODEL_SIZE.search(line):
            fields["model_size_mb"] = float(m["mb"])
        elif m := _MEM_DELTA.search(line):
            fields["memory_init_mb"] = float(m["init"])
            fields["memory_overall_mb"] = float(m["overall"])
        elif m := _MEM_PEAK.search(line):
            fields["memory_peak_mb"] = float(m["peak"])
        elif m := _APPLIED_PARTIAL.search(line):
            delegates.append(DelegateApplication(m["name"], "partial", int(m["k"])))
        elif m := _APPLIED_FULL.search(line):
            delegates.append(DelegateApplication(m["name"], "full", 1))
        elif m := _APPLIED_NONE.search(line):
            delegates.append(DelegateApplication(m["name"], "none", 0))
        elif m := _APPLY_FAILED.search(line):
            failures.append(m["name"])
        elif m := _UNSUPPORTED_PLATFORM.search(line):
            unsupported[m["name"]] = line
        elif m := (_NNAPI_AVAILABLE.search(line) or _NNAPI_PARAM.search(line)):
            fields["nnapi_accelerators"] = tuple(
                name.strip() for name in m["list"].split(",") if name.strip()
            )
        elif "Disallowed CPU fallback detected" in line:
            fields["cpu_fallback_disallowed"] = True
        elif "Benchmarking failed" in line:
            fields["benchmark_failed"] = True

    # The warm-up and regular phases each announce themselves with a "Running benchmark"
    # line; output without those lines (old builds, truncated logs) is taken in order.
    ordered = stats_after_running if stats_after_running else loose_stats
    if running_lines >= 2 or len(ordered) >= 2:
        fields["warmup"], fields["inference"] = ordered[0], ordered[1]
    elif ordered:
        fields["inference"] = ordered[0]
    return BenchmarkOutput(
        delegates=tuple(delegates),
        delegate_failures=tuple(failures),
        unsupported_delegates=unsupported,
        gpu_unsupported_ops=tuple(gpu_ops),
        errors=tuple(errors),
        op_profile=tuple(rows),
        op_type_summary=tuple(summary_rows),
        **fields,
    )


def _parse_stats(match: re.Match[str]) -> TimingStats:
    count = int(match["count"])
    rest = match["rest"]
    values = {key: float(value) for key, value in _KV.findall(rest)}
    all_same = "(all same)" in rest
    curr = values.get("curr")
    if all_same or (count == 1 and "first" not in values and curr is not None):
        # "count=N curr=C(all same)" (and "count=1 curr=C"): every run took C microseconds.
        return TimingStats(count, curr, curr, curr, curr, curr, 0.0, curr, curr, curr, True)
    return TimingStats(
        count=count,
        first_us=values.get("first"),
        curr_us=curr,
        min_us=values.get("min"),
        max_us=values.get("max"),
        avg_us=values.get("avg"),
        std_us=values.get("std"),
        p5_us=values.get("p5"),
        median_us=values.get("median"),
        p95_us=values.get("p95"),
    )


_HEADER_ALIASES = {
    "node type": "node_type",
    "start": "start",
    "first": "first",
    "avg ms": "avg_ms",
    "avg_ms": "avg_ms",
    "%": "percent",
    "avg %": "percent",
    "cdf%": "cdf",
    "cdf %": "cdf",
    "mem kb": "mem_kb",
    "times called": "times_called",
    "name": "name",
    "count": "count",
}


def _looks_like_header(line: str) -> bool:
    lowered = line.lower()
    return "node type" in lowered and ("avg" in lowered or "times called" in lowered)


def _header_columns(line: str) -> list[str]:
    if "[" in line:
        names = re.findall(r"\[([^\]]+)\]", line)
    else:
        names = [cell.strip() for cell in line.split(",")]
    return [_HEADER_ALIASES.get(name.strip().lower(), name.strip().lower()) for name in names]


def _cells(raw: str, n_columns: int) -> list[str] | None:
    text = raw.strip("\n")
    text = _PREFIX.sub("", text.strip()) if not text.startswith("\t") else text
    if "\t" in text:
        cells = [cell.strip() for cell in text.strip("\n").split("\t")]
        if cells and cells[0] == "":
            cells = cells[1:]
    else:
        # CSV: the last column (name) may itself contain ", ", so split at most n-1 times.
        cells = [cell.strip() for cell in text.split(",", n_columns - 1)]
    if len(cells) != n_columns:
        return None
    return cells


def _number(cell: str) -> float | None:
    cell = cell.strip().rstrip("%")
    try:
        return float(cell)
    except ValueError:
        return None


def _integer(cell: str) -> int | None:
    value = _number(cell)
    return None if value is None else int(value)


def _add_row(
    section: str,
    table: str,
    columns: list[str],
    cells: list[str],
    rows: list[OpProfileRow],
    summary_rows: list[OpTypeSummaryRow],
) -> None:
    values = dict(zip(columns, cells))
    if table.lower().startswith("summary by node type"):
        summary_rows.append(
            OpTypeSummaryRow(
                section=section,
                node_type=values.get("node_type", ""),
                count=_integer(values.get("count", "")),
                avg_ms=_number(values.get("avg_ms", "")),
                percent=_number(values.get("percent", "")),
                cdf_percent=_number(values.get("cdf", "")),
                mem_kb=_number(values.get("mem_kb", "")),
                times_called=_integer(values.get("times_called", "")),
            )
        )
        return
    rows.append(
        OpProfileRow(
            section=section,
            table=table,
            node_type=values.get("node_type", ""),
            name=values.get("name", ""),
            start_ms=_number(values["start"]) if "start" in values else None,
            first_ms=_number(values.get("first", "")),
            avg_ms=_number(values.get("avg_ms", "")),
            percent=_number(values.get("percent", "")),
            cdf_percent=_number(values.get("cdf", "")),
            mem_kb=_number(values.get("mem_kb", "")),
            times_called=_integer(values.get("times_called", "")),
        )
    )
