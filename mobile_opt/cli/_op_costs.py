"""`mobile-opt bench --op-profiling`: the per-op-type time vs MACs table, JSON and plot."""

from __future__ import annotations

from pathlib import Path


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


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


# TFLite's and LiteRT's profilers keep whole microseconds per op and run (ProfileEvent), so
# an op's mean is low by less than this, and a type's sum by less than count times this.
RESOLUTION_MS = 0.001


def to_json(joined) -> list[dict]:
    return [{"model": r.model_path, "backend": r.backend, "threads": r.threads,
             "time_resolution_ms_per_op": RESOLUTION_MS,
             "per_type": [t.to_dict() for t in per_type], "per_op": [o.to_dict() for o in per_op]}
            for r, per_op, per_type in joined]


def _notes(per_op) -> list[str]:
    notes = [f"times are the profiler's whole µs per op and run: a type's ms is low by less than "
             f"count × {RESOLUTION_MS:.3f} ms (an op under 1 µs shows 0)"]
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


def render(joined, console) -> None:
    from rich import box
    from rich.table import Table

    for r, per_op, per_type in joined:
        table = Table(box=box.SIMPLE_HEAD, title=f"Where time goes: {Path(r.model_path).name} "
                      f"{r.backend}×{r.threads} (the benchmark tool's op profiler)")
        for column in ("op type", "count", "ms", "time %", "MACs", "MACs %", "GMAC/s"):
            table.add_column(column, justify="left" if column == "op type" else "right", no_wrap=True)
        for t in per_type:
            table.add_row(t.node_type, str(t.count), _ms(t.avg_ms), _pct(t.time_share),
                          "-" if t.macs is None else f"{t.macs:,}", _pct(t.macs_share),
                          "-" if t.gmacs_per_s is None else f"{t.gmacs_per_s:.2f}")
        console.print(table)
        for note in _notes(per_op):
            console.print(f"  • {note}", highlight=False)


def plot(joined, plot_path: Path) -> list[Path]:
    """One PNG per result beside `plot_path`: `<stem>_ops_<n>.png`."""
    from device_bench.op_cost import plot_op_costs

    paths = []
    for n, (r, _, per_type) in enumerate(joined):
        path = plot_path.with_name(f"{plot_path.stem}_ops_{n}{plot_path.suffix or '.png'}")
        paths.append(plot_op_costs(per_type, path, title=f"{Path(r.model_path).name}: MACs vs time per op type"))
    return paths
