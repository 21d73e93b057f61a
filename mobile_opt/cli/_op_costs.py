"""`mobile-opt bench --op-profiling`: the per-op-type time vs MACs table, JSON and plot."""

from __future__ import annotations

from pathlib import Path

from device_bench.intervals import ms


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def op_costs(results) -> list[tuple[object, tuple, tuple]]:
    """`(result, per_op, per_type)` for each result that has op-profiling rows."""
    from device_bench.op_cost import op_costs_of

    joined = []
    for r in results:
        costs = op_costs_of(r)
        if costs is not None:
            joined.append((r, *costs))
    return joined


def to_json(joined) -> list[dict]:
    from device_bench.op_cost import RESOLUTION_MS

    return [{"model": r.model_path, "backend": r.backend, "threads": r.threads,
             "time_resolution_ms_per_op": RESOLUTION_MS,
             "per_type": [t.to_dict() for t in per_type], "per_op": [o.to_dict() for o in per_op]}
            for r, per_op, per_type in joined]


def render(joined, console) -> None:
    from rich import box

    from device_bench.op_cost import join_notes
    from rich.table import Table

    for r, per_op, per_type in joined:
        table = Table(box=box.SIMPLE_HEAD, title=f"Where time goes: {Path(r.model_path).name} "
                      f"{r.backend}×{r.threads} (the benchmark tool's op profiler)")
        for column in ("op type", "count", "ms", "time %", "MACs", "MACs %", "GMAC/s"):
            table.add_column(column, justify="left" if column == "op type" else "right", no_wrap=True)
        for t in per_type:
            table.add_row(t.node_type, str(t.count), ms(t.avg_ms, from_ms=True), _pct(t.time_share),
                          "-" if t.macs is None else f"{t.macs:,}", _pct(t.macs_share),
                          "-" if t.gmacs_per_s is None else f"{t.gmacs_per_s:.2f}")
        console.print(table)
        for note in join_notes(per_op):
            console.print(f"  • {note}", highlight=False)


def plot(joined, plot_path: Path) -> list[Path]:
    """One PNG per result beside `plot_path`: `<stem>_ops_<n>.png`."""
    from device_bench.op_cost import plot_op_costs

    paths = []
    for n, (r, _, per_type) in enumerate(joined):
        path = plot_path.with_name(f"{plot_path.stem}_ops_{n}{plot_path.suffix or '.png'}")
        paths.append(plot_op_costs(per_type, path, title=f"{Path(r.model_path).name}: MACs vs time per op type"))
    return paths
