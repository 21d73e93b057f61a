"""Where time goes: measured per-op milliseconds joined with each op's MACs.

FLOPs do not predict run time: a depthwise convolution has ~9x fewer MACs than the
1x1 convolution next to it and is nowhere near 9x faster; pads and reshapes cost time
for zero MACs. `join_op_costs` puts `benchmark_model --enable_op_profiling` rows (the
"Run Order" table of the regular runs) beside `converters.count_flops` of the same
.tflite, so the achieved GMAC/s of each op shows which ops are slow for their work.

Rows are matched to operators by the node index the tool prints after the name
(`[output_tensor]:12`) and checked against the op type; a row that names a delegate
partition (e.g. `TfLiteXNNPackDelegate`, which hides the ops inside it) keeps its time
but has no MACs (`matched=False`): run with `--use_xnnpack=false` for per-op rows.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["OpCost", "OpTypeCost", "join_op_costs", "op_costs_of", "plot_op_costs"]

_NODE_INDEX = re.compile(r":(\d+)$")


@dataclass(frozen=True)
class OpCost:
    """One profiled op: its measured time, its MACs, and how fast it did them."""

    node_type: str
    name: str
    node_index: int | None
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


def join_op_costs(rows: Sequence[Any], flops: Any) -> tuple[tuple[OpCost, ...], tuple[OpTypeCost, ...]]:
    """Joins op-profiling rows with a .tflite `FlopsReport`, per op and per op type.

    Args:
        rows: `OpProfileRow`s (from `BenchmarkResult.op_profile`); only the regular runs'
            "Run Order" table is used (init rows and the "Top by ..." tables repeat it).
        flops: `converters.count_flops(<the same .tflite>)`.

    Returns:
        `(per_op, per_type)`: per-op costs in run order, and per-type sums sorted by time.
    """
    layers = flops.layers
    run = [r for r in rows if r.section == "run" and r.table == "Run Order"]
    total_ms = sum(r.avg_ms or 0.0 for r in run)
    total_macs = flops.total_macs
    per_op = []
    for row in run:
        found = _NODE_INDEX.search(row.name or "")
        index = int(found.group(1)) if found else None
        layer = layers[index] if index is not None and index < len(layers) else None
        matched = layer is not None and layer.op == row.node_type
        macs = layer.macs if matched else None
        per_op.append(OpCost(
            node_type=row.node_type,
            name=row.name,
            node_index=index,
            avg_ms=row.avg_ms,
            time_share=(row.avg_ms or 0.0) / total_ms if total_ms else None,
            macs=macs,
            macs_share=macs / total_macs if macs is not None and total_macs else None,
            gmacs_per_s=_rate(macs, row.avg_ms),
            matched=matched,
        ))
    by_type: dict[str, list[OpCost]] = {}
    for op in per_op:
        by_type.setdefault(op.node_type, []).append(op)
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


def op_costs_of(result: Any) -> tuple[tuple[OpCost, ...], tuple[OpTypeCost, ...]] | None:
    """The join for one `BenchmarkResult` (its model's MACs counted from its .tflite); None without rows."""
    import converters

    if not result.op_profile or not Path(result.model_path).is_file():
        return None
    return join_op_costs(result.op_profile, converters.count_flops(result.model_path))


def plot_op_costs(per_type: Sequence[OpTypeCost], path: Path, *, title: str | None = None) -> Path:
    """Share of MACs vs share of measured time per op type (PNG); off the diagonal = slow or fast for its work."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
