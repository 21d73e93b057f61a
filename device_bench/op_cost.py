"""Where time goes: measured per-op milliseconds joined with each op's MACs.

FLOPs do not predict run time: a depthwise convolution has ~9x fewer MACs than the
1x1 convolution next to it and is nowhere near 9x faster; pads and reshapes cost time
for zero MACs. `join_op_costs` puts `benchmark_model --enable_op_profiling` rows (the
"Run Order" table of the regular runs) beside `converters.count_flops` of the same
.tflite, so the achieved GMAC/s of each op shows which ops are slow for their work.

Rows are joined to .tflite operators in two ways:
- a builtin-kernel row names its node (`[output_tensor]:12`): joined by that index, checked
  against the op type;
- a delegate's own operator (`Delegate/Convolution (NHWC, F32) IGEMM:3`, as XNNPACK reports
  them; the index counts within the delegate) is joined by order and type: the rows and the
  .tflite operators both run in execution order, so the longest order-preserving pairing of
  compatible types (`_XNNPACK_RUNS`) is taken. XNNPACK runs a 1x1 CONV_2D as a "Fully
  Connected" GEMM and may fuse a PAD into the next convolution (that PAD has no row).
A row that joins nothing (a delegate partition such as `TfLiteXNNPackDelegate`, which hides the
ops inside it, or an XNNPACK reshape with no .tflite counterpart) keeps its time but has no
MACs (`matched=False`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from device_bench.intervals import ms
from mobile_opt._lazy import pyplot

__all__ = ["RESOLUTION_MS", "OpCost", "OpTypeCost", "join_notes", "join_op_costs", "op_costs_json", "op_costs_of",
           "op_costs_of_all", "plot_op_costs", "plot_op_costs_beside"]

# TFLite's and LiteRT's profilers keep whole microseconds per op and run (ProfileEvent: a
# NowMicros difference, or XNNPACK's own µs timing), so each is within this of the true time.
RESOLUTION_MS = 0.001


_NODE_INDEX = re.compile(r":(\d+)$")
_DELEGATE_OP = re.compile(r"^Delegate/(?P<op>.+):\d+$")

# XNNPACK operator names (the words before " (") and the .tflite ops each can run.
_XNNPACK_RUNS = {
    "Convolution": {"CONV_2D", "DEPTHWISE_CONV_2D"},  # "... DWConv": DEPTHWISE_CONV_2D only
    "Deconvolution": {"TRANSPOSE_CONV"},
    "Fully Connected": {"FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL"},
    "Batch Matrix Multiply": {"BATCH_MATMUL"},
    "Add": {"ADD"}, "Multiply": {"MUL"}, "Subtract": {"SUB"}, "Divide": {"DIV"},
    "Maximum": {"MAXIMUM"}, "Minimum": {"MINIMUM"}, "Squared Difference": {"SQUARED_DIFFERENCE"},
    "Convert": {"QUANTIZE", "DEQUANTIZE"},
    "Mean": {"MEAN"}, "Sum": {"SUM"}, "Global Average Pooling": {"MEAN"},
    "Average Pooling": {"AVERAGE_POOL_2D"}, "Max Pooling": {"MAX_POOL_2D"},
    "Softmax": {"SOFTMAX"}, "Constant Pad": {"PAD", "PADV2"},
    "Clamp": {"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1"},
    "HardSwish": {"HARD_SWISH"}, "Sigmoid": {"LOGISTIC"}, "Tanh": {"TANH"},
    "Leaky ReLU": {"LEAKY_RELU"}, "ELU": {"ELU"},
    "Static Reshape": {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}, "Copy": {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"},
    "Transpose": {"TRANSPOSE"}, "Static Transpose": {"TRANSPOSE"},
    "Resize Bilinear": {"RESIZE_BILINEAR"}, "Depth To Space": {"DEPTH_TO_SPACE"},
}


@dataclass(frozen=True)
class OpCost:
    """One profiled op: its measured time, its MACs, and how fast it did them."""

    node_type: str
    name: str
    node_index: int | None  # the .tflite operator joined (else the index a builtin row names)
    tflite_op: str | None  # that operator's type, when joined
    joined_by: str | None  # "node index" or "order and type" (a delegate's operator); None: not joined
    avg_ms: float | None
    time_share: float | None  # of the summed avg_ms of all rows
    macs: int | None
    macs_share: float | None  # of the model's total MACs
    gmacs_per_s: float | None  # macs / avg time; None without both
    matched: bool  # joined to a .tflite operator of the same type

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpTypeCost:
    """All ops of one type together (the plot's unit: MACs share vs time share)."""

    node_type: str
    count: int
    avg_ms: float
    time_share: float | None
    macs: int | None
    macs_share: float | None
    gmacs_per_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(macs: int | None, ms: float | None) -> float | None:
    return macs / (ms * 1e-3) / 1e9 if macs is not None and ms else None


def _named_index(row) -> int | None:
    """The .tflite node index a builtin row names (`[outputs]:12`); None for a delegate's op."""
    found = _NODE_INDEX.search(row.name or "")
    return int(found.group(1)) if found and not _DELEGATE_OP.match(row.name or "") else None


def _candidates(row, layers) -> tuple[str, object]:
    """How a row may join: ("index", k) for a builtin row, ("types", {...}) for a delegate's op."""
    delegate = _DELEGATE_OP.match(row.name or "")
    if delegate:
        op = delegate["op"]
        kind = op.split(" (")[0]
        return "types", ({"DEPTHWISE_CONV_2D"} if kind == "Convolution" and op.endswith("DWConv")
                         else _XNNPACK_RUNS.get(kind, set()))
    index = _named_index(row)
    ok = index is not None and index < len(layers) and layers[index].op == row.node_type
    return "index", index if ok else None


def _align(rows, layers) -> list[tuple[int | None, str | None]]:
    """For each row, the .tflite operator it joins and how: the longest order-preserving pairing."""
    wants = [_candidates(r, layers) for r in rows]

    def fits(i: int, j: int) -> bool:
        kind, value = wants[i]
        return value == j if kind == "index" else layers[j].op in value

    n, m = len(rows), len(layers)
    best = [[0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: pairs within rows[i:], layers[j:]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = max(best[i + 1][j], best[i][j + 1], best[i + 1][j + 1] + 1 if fits(i, j) else 0)
    joined: list[tuple[int | None, str | None]] = [(None, None)] * n
    i = j = 0
    while i < n and j < m:
        if fits(i, j) and best[i][j] == best[i + 1][j + 1] + 1:
            joined[i] = (j, "node index" if wants[i][0] == "index" else "order and type")
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return joined


def join_op_costs(rows: Sequence[Any], flops: Any) -> tuple[tuple[OpCost, ...], tuple[OpTypeCost, ...]]:
    """Joins op-profiling rows with a .tflite `FlopsReport`, per op and per op type.

    Args:
        rows: `OpProfileRow`s (from `BenchmarkResult.op_profile`); only the regular runs'
            "Run Order" table is used (init rows and the "Top by ..." tables repeat it).
        flops: `converters.count_flops(<the same .tflite>)`.

    Returns:
        `(per_op, per_type)`: per-op costs in run order, and per-type sums sorted by time; a
        joined row counts under its .tflite op type (an XNNPACK GEMM that runs a 1x1
        convolution is a CONV_2D), any other under its own node type.
    """
    layers = flops.layers
    run = [r for r in rows if r.section == "run" and r.table == "Run Order"]
    total_ms = sum(r.avg_ms or 0.0 for r in run)
    total_macs = flops.total_macs
    per_op = []
    for row, (index, how) in zip(run, _align(run, layers)):
        layer = layers[index] if index is not None else None
        macs = layer.macs if layer is not None else None
        per_op.append(OpCost(
            node_type=row.node_type,
            name=row.name,
            node_index=index if index is not None else _named_index(row),
            tflite_op=layer.op if layer is not None else None,
            joined_by=how,
            avg_ms=row.avg_ms,
            time_share=(row.avg_ms or 0.0) / total_ms if total_ms else None,
            macs=macs,
            macs_share=macs / total_macs if macs is not None and total_macs else None,
            gmacs_per_s=_rate(macs, row.avg_ms),
            matched=layer is not None,
        ))
    by_type: dict[str, list[OpCost]] = {}
    for op in per_op:
        by_type.setdefault(op.tflite_op or op.node_type, []).append(op)
    per_type = []
    for node_type, ops in by_type.items():
        ms = sum(o.avg_ms or 0.0 for o in ops)
        macs = sum(o.macs for o in ops) if all(o.macs is not None for o in ops) else None
        per_type.append(OpTypeCost(
            node_type=node_type,
            count=len(ops),
            avg_ms=ms,
            time_share=ms / total_ms if total_ms else None,
            macs=macs,
            macs_share=macs / total_macs if macs is not None and total_macs else None,
            gmacs_per_s=_rate(macs, ms),
        ))
    per_type.sort(key=lambda t: -t.avg_ms)
    return tuple(per_op), tuple(per_type)


def join_notes(per_op: Sequence[OpCost]) -> list[str]:
    """What a reader of the joined figures must know: their resolution, and how rows were joined."""
    notes = [f"times are the profiler's whole µs per op and run: a type's ms is within ± count × "
             f"{ms(RESOLUTION_MS, from_ms=True)} ms (an op under 1 µs may show 0)"]
    by_order = sum(o.joined_by == "order and type" for o in per_op)
    if by_order:
        notes.append(f"{by_order} delegate rows (e.g. XNNPACK's, which carry no .tflite index) joined to "
                     "their .tflite ops by execution order and op type; a .tflite op without a row was "
                     "fused into a neighbour (e.g. a PAD into its convolution)")
    loose = sorted({o.node_type for o in per_op if not o.matched})
    if loose:
        notes.append(f"no MACs for {', '.join(loose)}: a delegate partition row hides the ops inside it "
                     "(run with the delegate off for per-op rows), and a delegate's own reshapes or "
                     "copies have no .tflite op")
    return notes


def op_costs_of(result: Any) -> tuple[tuple[OpCost, ...], tuple[OpTypeCost, ...]] | None:
    """The join for one `BenchmarkResult` (its model's MACs counted from its .tflite); None without rows."""
    import converters

    if not result.op_profile or not Path(result.model_path).is_file():
        return None
    return join_op_costs(result.op_profile, converters.count_flops(result.model_path))


def op_costs_of_all(results: Sequence[Any]) -> list[tuple[Any, tuple, tuple]]:
    """`(result, per_op, per_type)` for each result that has op-profiling rows."""
    return [(r, *costs) for r in results if (costs := op_costs_of(r)) is not None]


def op_costs_json(joined: Sequence[tuple[Any, tuple, tuple]]) -> list[dict]:
    """`op_costs_of_all`'s joins as JSON-safe dicts (model, backend, threads, per_type, per_op)."""
    return [{"model": r.model_path, "backend": r.backend, "threads": r.threads,
             "time_resolution_ms_per_op": RESOLUTION_MS,
             "per_type": [t.to_dict() for t in per_type], "per_op": [o.to_dict() for o in per_op]}
            for r, per_op, per_type in joined]


def plot_op_costs_beside(joined: Sequence[tuple[Any, tuple, tuple]], plot_path: Path) -> list[Path]:
    """One PNG per joined result beside `plot_path`: `<stem>_ops_<n>.png`."""
    paths = []
    for n, (r, _, per_type) in enumerate(joined):
        path = plot_path.with_name(f"{plot_path.stem}_ops_{n}{plot_path.suffix or '.png'}")
        paths.append(plot_op_costs(per_type, path, title=f"{Path(r.model_path).name}: MACs vs time per op type"))
    return paths


def plot_op_costs(per_type: Sequence[OpTypeCost], path: Path, *, title: str | None = None) -> Path:
    """Share of MACs vs share of measured time per op type (PNG); off the diagonal = slow or fast for its work."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    try:
        for t in per_type:
            x = 100 * (t.macs_share or 0.0)
            ax.scatter([x], [100 * (t.time_share or 0.0)], marker="o" if t.macs is not None else "x")
            label = t.node_type + ("" if t.macs is not None else " (MACs unknown)")
            ax.annotate(label, (x, 100 * (t.time_share or 0.0)), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.plot([0, 100], [0, 100], linestyle="--", linewidth=0.8, color="grey")
        ax.set_xlabel("share of MACs (%)")
        ax.set_ylabel("share of measured time (%)")
        ax.set_title(title or "Where time goes, per op type")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
